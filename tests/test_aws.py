"""The AWS Secrets Manager source, in process, against moto's HTTP server and the real boto3."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError, TransientError, UnavailableError
from launcher.model.config import Binding, Manifest, RetryConfig
from launcher.model.refs import Reference, parse_reference
from launcher.resolve.resolver import Resolver
from launcher.resolve.retry import call_with_retry
from launcher.sources.aws import AwsSource, AwsSourceConfig, reference_problem
from tests.helpers import HELPERS_DIR, LAUNCHER, run_launcher, wait_for
from tests.openbao import OpenBao, write_kv2

if TYPE_CHECKING:  # imported by pytest as a plugin, so that its asserts are rewritten
    from tests.moto_server import Forwarder, MotoServer

pytest_plugins = ["tests.moto_server"]

CANARY = "value-CANARY-3a9e"
UUID = "0f3c9a6e-1d2b-4c5f-8a7e-6d5c4b3a2910"
FAST_RETRY = RetryConfig(attempts=3, initial_delay=0.01, max_delay=0.05, deadline=30)
ROOT = Path(__file__).resolve().parent.parent
# The registry makes ``aws`` a built-in source and ``type: aws`` a manifest type; until then
# the CLI tests below wait for it.



def open_source(endpoint: str, name: str = "prod", read_timeout: float = 2, **overrides: Any) -> AwsSource:
    config = AwsSourceConfig(name=name, region=overrides.pop("region", "us-east-1"), endpoint_url=endpoint, **overrides)
    return AwsSource(config, connect_timeout=2, read_timeout=read_timeout)


@pytest.fixture
def source(aws_env: dict[str, str], moto_server: MotoServer) -> Any:
    src = open_source(moto_server.url)
    yield src
    src.close()


@pytest.fixture
def forwarded(aws_env: dict[str, str], aws_forwarder: Forwarder) -> Any:
    src = open_source(aws_forwarder.url)
    yield src
    src.close()


def assert_no_value(err: BaseException, *values: str) -> None:
    text = str(err) + repr(err) + "".join(traceback.format_exception(err))
    for value in (CANARY, *values):
        assert value not in text


# -- reading -----------------------------------------------------------------------


def test_string_value_version_and_older_version(moto_server: MotoServer, source: AwsSource) -> None:
    name = moto_server.unique("prod/app/db")  # slashes are part of the name
    v1 = moto_server.client.create_secret(Name=name, SecretString="first-" + CANARY)["VersionId"]
    first = source.fetch(name, None)
    assert (first.value, first.version) == ("first-" + CANARY, v1)
    assert CANARY not in repr(first)
    v2 = moto_server.client.put_secret_value(SecretId=name, SecretString="second")["VersionId"]
    latest = source.fetch(name, None)
    assert (latest.value, latest.version) == ("second", v2)
    pinned = source.fetch(name, v1)
    assert (pinned.value, pinned.version) == ("first-" + CANARY, v1)


def test_builtin_source_from_environment(moto_server: MotoServer, aws_env: dict[str, str]) -> None:
    name = moto_server.unique("prod/app/db")
    version = moto_server.client.create_secret(Name=name, SecretString=CANARY)["VersionId"]
    src = AwsSource(AwsSourceConfig(name="aws"))  # region, endpoint and credentials from AWS_* variables
    try:
        assert (src.region, src.endpoint_url) == ("us-east-1", moto_server.url)
        assert src.fetch(name, None).value == CANARY
        assert src.current_version(name) == version
        with pytest.raises(NotFoundError, match=r"^aws://prod/app/db-.*: secret not found in us-east-1$"):
            src.fetch(name + "-nope", None)
    finally:
        src.close()


def test_arn_is_read_in_its_own_region(moto_server: MotoServer, source: AwsSource) -> None:
    name = moto_server.unique()
    created = moto_server.client_for("eu-west-1").create_secret(Name=name, SecretString=CANARY)
    secret = source.fetch(created["ARN"], None)  # the source's region is us-east-1
    assert (secret.value, secret.version) == (CANARY, created["VersionId"])
    assert source.current_version(created["ARN"]) == created["VersionId"]
    with pytest.raises(NotFoundError, match="in us-east-1"):
        source.fetch(name, None)  # by name, the source's own region


def test_binary_values(moto_server: MotoServer, source: AwsSource) -> None:
    text, raw = moto_server.unique(), moto_server.unique()
    moto_server.client.create_secret(Name=text, SecretBinary="héllo wörld".encode())
    moto_server.client.create_secret(Name=raw, SecretBinary=b"\xff\xfe" + CANARY.encode())
    assert source.fetch(text, None).value == "héllo wörld"
    with pytest.raises(ManifestError, match="not UTF-8 text") as info:
        source.fetch(raw, None)
    assert "file: true" in str(info.value) and info.value.exit_code == 78
    assert info.value.__suppress_context__
    assert_no_value(info.value)


def test_json_keys_through_the_resolver_read_once(moto_server: MotoServer, aws_env: dict[str, str],
                                                  aws_forwarder: Forwarder) -> None:
    name = moto_server.unique("prod/app/db")
    moto_server.client.create_secret(Name=name, SecretString='{"user": "app", "password": "' + CANARY + '", "port": 5432}')
    plain = moto_server.unique("api")
    moto_server.client.create_secret(Name=plain, SecretString="token-1")
    manifest = Manifest(sources={"prod": AwsSourceConfig(name="prod", endpoint_url=aws_forwarder.url)}, retry=FAST_RETRY)

    def binding(var: str, text: str) -> Binding:
        return Binding(var, (parse_reference(text, manifest.known_sources),))

    manifest = Manifest(
        sources=manifest.sources, retry=FAST_RETRY,
        env=(binding("DB_USER", f"prod://{name}#user"), binding("DB_PASSWORD", f"prod://{name}#password"),
             binding("DB_PORT", f"prod://{name}#port"), binding("API", f"prod://{plain}"),
             binding("NOPE", f"prod://{name}#nope")),
    )
    resolver = Resolver(manifest, source_factory=lambda config: AwsSource(config))  # type: ignore[arg-type]
    try:
        resolution = resolver.resolve({}, inline=False)
    finally:
        resolver.close()
    assert resolution.values == {"DB_USER": "app", "DB_PASSWORD": CANARY, "DB_PORT": "5432", "API": "token-1"}
    assert [type(e) for e in resolution.errors] == [NotFoundError]
    assert "no key 'nope'" in str(resolution.errors[0])
    assert_no_value(resolution.errors[0])
    assert aws_forwarder.count("GetSecretValue") == 2  # one read per secret, for all its keys


def test_concurrent_fetches_share_one_client(moto_server: MotoServer, source: AwsSource) -> None:
    names = [moto_server.unique("many") for _ in range(12)]
    for name in names:
        moto_server.client.create_secret(Name=name, SecretString=name + "-value")
    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(lambda n: source.fetch(n, None).value, names))
    assert values == [n + "-value" for n in names]
    assert len(source._clients) == 1


# -- rotation checks ------------------------------------------------------------------


def test_current_version_reads_only_metadata(moto_server: MotoServer, aws_forwarder: Forwarder, forwarded: AwsSource) -> None:
    name = moto_server.unique("rotating")
    v1 = moto_server.client.create_secret(Name=name, SecretString=CANARY)["VersionId"]
    assert forwarded.current_version(name) == v1
    v2 = moto_server.client.put_secret_value(SecretId=name, SecretString="rotated")["VersionId"]
    assert forwarded.current_version(name) == v2 != v1
    assert aws_forwarder.operations == ["DescribeSecret", "DescribeSecret"]


def test_deleted_and_valueless_secrets_are_not_found(moto_server: MotoServer, source: AwsSource) -> None:
    deleted, empty = moto_server.unique(), moto_server.unique()
    moto_server.client.create_secret(Name=deleted, SecretString=CANARY)
    moto_server.client.delete_secret(SecretId=deleted, RecoveryWindowInDays=7)
    moto_server.client.create_secret(Name=empty)
    for path in (deleted, empty):
        for call in (lambda p=path: source.fetch(p, None), lambda p=path: source.current_version(p)):
            with pytest.raises(NotFoundError) as info:
                call()
            assert_no_value(info.value)
    with pytest.raises(NotFoundError, match="scheduled for deletion"):
        source.current_version(deleted)


# -- errors ---------------------------------------------------------------------------


def test_missing_secret_and_version(moto_server: MotoServer, source: AwsSource) -> None:
    name = moto_server.unique("prod/app/db")
    with pytest.raises(NotFoundError, match=r"prod://prod/app/db-.*: secret not found in us-east-1") as info:
        source.fetch(name, None)
    assert info.value.exit_code == 66
    moto_server.client.create_secret(Name=name, SecretString=CANARY)
    with pytest.raises(NotFoundError, match="version not found"):
        source.fetch(name, UUID)


ANSWERS = [
    # status, AWS error code, error, words in the message
    (400, "AccessDeniedException", AuthError, "access denied in us-east-1 (needs secretsmanager:GetSecretValue)"),
    (400, "UnrecognizedClientException", AuthError, "access key is not recognised"),
    (400, "InvalidSignatureException", AuthError, "signature is wrong"),
    (400, "ExpiredTokenException", AuthError, "credentials have expired"),
    (400, "DecryptionFailure", AuthError, "kms:Decrypt"),
    (403, "", AuthError, "permission denied (HTTP 403)"),
    (400, "InvalidParameterException", ManifestError, "rejected as invalid"),
    (400, "InvalidRequestException", ManifestError, "rejected as invalid"),
    (400, "ValidationException", ManifestError, "rejected as invalid"),
    (400, "ThrottlingException", TransientError, "throttled"),
    (429, "", TransientError, "throttled"),
    (500, "InternalServiceError", TransientError, "HTTP 500"),
    (503, "", TransientError, "HTTP 503"),
    (404, "ResourceNotFoundException", NotFoundError, "secret not found"),
    (418, "Teapot", UnavailableError, "unexpected answer HTTP 418"),
]


@pytest.mark.parametrize(("status", "code", "error", "words"), ANSWERS, ids=[f"{a[0]}-{a[1] or 'none'}" for a in ANSWERS])
def test_error_answers_are_mapped_once(aws_forwarder: Forwarder, forwarded: AwsSource, status: int, code: str,
                                       error: type[LauncherError], words: str) -> None:
    message = "User: arn:aws:iam::123456789012:user/app is not authorized" if code == "AccessDeniedException" else "nope"
    aws_forwarder.fail_next(1, status, code, message=message)
    with pytest.raises(error) as info:
        forwarded.fetch("prod/app/db", None)
    assert type(info.value) is error
    assert str(info.value).startswith("prod://prod/app/db: ")
    assert words in str(info.value)
    assert "Exception" not in str(info.value).replace(code, "")  # plain words, no class names
    assert_no_value(info.value)
    assert aws_forwarder.count("GetSecretValue") == 1  # botocore did not retry on its own


def test_denied_names_the_principal_and_is_not_retried(aws_forwarder: Forwarder, forwarded: AwsSource) -> None:
    aws_forwarder.fail_next(3, 400, "AccessDeniedException", message="User: arn:aws:iam::123456789012:user/app is not authorized")
    with pytest.raises(AuthError, match="user/app is not authorized") as info:
        call_with_retry(lambda: forwarded.fetch("prod/app/db", None), FAST_RETRY)
    assert info.value.exit_code == 77
    assert aws_forwarder.count() == 1


@pytest.mark.parametrize(
    ("status", "code"), [(400, "ThrottlingException"), (500, "InternalServiceError"), (503, "")], ids=["throttled", "500", "503"]
)
def test_transient_answers_end_in_69_after_the_policys_attempts(aws_forwarder: Forwarder, forwarded: AwsSource, status: int,
                                                                code: str) -> None:
    aws_forwarder.fail_next(5, status, code, body=None if code else b"<html>Service Unavailable</html>")
    with pytest.raises(UnavailableError, match="gave up after 3 attempts") as info:
        call_with_retry(lambda: forwarded.fetch("prod/app/db", None), FAST_RETRY)
    assert type(info.value) is UnavailableError and info.value.exit_code == 69
    assert aws_forwarder.count("GetSecretValue") == 3


def test_retry_after_is_passed_on(aws_forwarder: Forwarder, forwarded: AwsSource) -> None:
    aws_forwarder.fail_next(1, 503, "ServiceUnavailable", headers={"Retry-After": "7"})
    with pytest.raises(TransientError) as info:
        forwarded.fetch("prod/app/db", None)
    assert info.value.retry_after == 7


def test_recovers_after_a_transient_answer(moto_server: MotoServer, aws_forwarder: Forwarder, forwarded: AwsSource) -> None:
    name = moto_server.unique()
    moto_server.client.create_secret(Name=name, SecretString=CANARY)
    aws_forwarder.fail_next(2, 400, "ThrottlingException")
    assert call_with_retry(lambda: forwarded.fetch(name, None), FAST_RETRY).value == CANARY
    assert aws_forwarder.count("GetSecretValue") == 3


def test_unreadable_answer_is_transient(aws_forwarder: Forwarder, forwarded: AwsSource) -> None:
    aws_forwarder.fail_next(1, 200, body=b"<html>captive portal</html>")
    with pytest.raises(TransientError, match="unreadable answer"):
        forwarded.fetch("prod/app/db", None)


def test_stalled_server_times_out(aws_env: dict[str, str], aws_forwarder: Forwarder) -> None:
    aws_forwarder.fail_next(1, 0)
    src = open_source(aws_forwarder.url, read_timeout=0.3)
    try:
        with pytest.raises(TransientError, match=r"timed out after 0\.3s"):
            src.fetch("prod/app/db", None)
    finally:
        src.close()


def test_connection_refused_is_transient(aws_env: dict[str, str], aws_forwarder: Forwarder) -> None:
    url = aws_forwarder.url
    aws_forwarder.stop()
    src = open_source(url)
    try:
        with pytest.raises(TransientError, match=r"cannot reach http://127\.0\.0\.1:\d+/ in us-east-1 \(connection refused\)"):
            src.fetch("prod/app/db", None)
    finally:
        src.close()


def test_no_region_is_78(aws_env: dict[str, str], moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    src = AwsSource(AwsSourceConfig(name="aws"))
    with pytest.raises(ManifestError, match=r"no AWS region.*AWS_REGION") as info:
        src.fetch("prod/app/db", None)
    assert info.value.exit_code == 78


def test_region_and_endpoint_defaults() -> None:
    env = {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_SECRETSMANAGER": "http://b:2"}
    src = AwsSource(AwsSourceConfig(name="aws"), environ=env)
    assert (src.region, src.endpoint_url) == ("eu-west-1", "http://b:2")
    src = AwsSource(AwsSourceConfig(name="aws"), environ={**env, "AWS_REGION": "us-west-2", "AWS_ENDPOINT_URL_SECRETSMANAGER": ""})
    assert (src.region, src.endpoint_url) == ("us-west-2", "http://a:1")
    src = AwsSource(AwsSourceConfig(name="x", region="ap-south-1", endpoint_url="https://c"), environ=env)
    assert (src.region, src.endpoint_url) == ("ap-south-1", "https://c")
    with pytest.raises(ManifestError, match="must start with http"):
        AwsSource(AwsSourceConfig(name="x", endpoint_url="localhost:4566"), environ={})


def test_no_credentials_is_77(aws_env: dict[str, str], moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    src = open_source(moto_server.url)
    with pytest.raises(AuthError, match="no AWS credentials found"):
        src.fetch("prod/app/db", None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    src = open_source(moto_server.url)
    with pytest.raises(AuthError, match="AWS_SECRET_ACCESS_KEY"):
        src.fetch("prod/app/db", None)


def test_unknown_profile_is_78(aws_env: dict[str, str], moto_server: MotoServer) -> None:
    src = open_source(moto_server.url, profile="nonexistent")
    with pytest.raises(ManifestError, match="AWS profile 'nonexistent' not found"):
        src.fetch("prod/app/db", None)


# -- references ---------------------------------------------------------------------------

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/app/db-AbCdEf"


@pytest.mark.parametrize(
    ("path", "version", "words"),
    [
        ("prod/app/db", None, None),
        ("a", None, None),
        ("x" * 512, None, None),
        ("name_with+=.@-chars", UUID, None),
        (ARN, None, None),
        ("arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:db", None, None),
        ("prod/db", "a" * 64, None),
        ("bad name!", None, "not a Secrets Manager secret name"),
        ("x" * 513, None, "not a Secrets Manager secret name"),
        ("arn:aws:s3:::bucket/key", None, "not a Secrets Manager secret ARN"),
        ("prod/db", "AWSPREVIOUS", "?version=AWSPREVIOUS is a staging label, which is not supported"),
        ("prod/db", "v1", "not a version id"),
        ("prod/db", "a" * 65, "not a version id"),
        ("prod/db", UUID[:-1] + "/", "not a version id"),
    ],
)
def test_reference_problem(path: str, version: str | None, words: str | None) -> None:
    problem = reference_problem(AwsSourceConfig(name="aws"), Reference("aws", path, "key", version))
    if words is None:
        assert problem is None
    else:
        assert problem is not None and words in problem


def test_references_parse_with_slashes_arns_versions_and_keys() -> None:
    ref = parse_reference(f"aws://prod/app/db?version={UUID}#password", {"aws"})
    assert (ref.path, ref.version, ref.key) == ("prod/app/db", UUID, "password")
    assert parse_reference(f"aws://{ARN}#password", {"aws"}).path == ARN


def test_bad_name_is_refused_before_any_request(aws_forwarder: Forwarder, forwarded: AwsSource) -> None:
    for path, version in (("bad name!", None), ("prod/db", "AWSPREVIOUS")):
        with pytest.raises(ManifestError) as info:
            forwarded.fetch(path, version)
        assert info.value.exit_code == 78
    with pytest.raises(ManifestError):
        forwarded.current_version("bad name!")
    assert aws_forwarder.count() == 0


# -- packaging ------------------------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


def test_importing_the_module_imports_no_sdk() -> None:
    result = _python(
        "import sys\n"
        "from launcher.model.refs import Reference\n"
        "from launcher.sources import aws\n"
        "assert aws.reference_problem(aws.AwsSourceConfig(name='aws'), Reference('aws', 'a/b')) is None\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', 's3transfer'}))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_missing_boto3_is_78_naming_the_extra() -> None:
    result = _python(
        "import sys\n"
        "sys.modules['boto3'] = None\n"
        "from launcher.sources.aws import AwsSource, AwsSourceConfig\n"
        "try:\n"
        "    AwsSource(AwsSourceConfig(name='x'))\n"
        "except Exception as exc:\n"
        "    print(exc.exit_code, exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "78 source 'x': type aws needs the AWS extra: pip install 'secret-launcher[aws]'"


# -- the real CLI (once the registry knows the aws type) ------------------------------------


def cli_env(moto_server: MotoServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAUNCHER_", "VAULT_", "AZURE_", "BAO_"))}
    return {**env, **moto_server.env(), **extra}


def test_example_manifest_is_valid(moto_server: MotoServer) -> None:
    result = run_launcher(["check", "--offline", "-m", str(ROOT / "examples" / "aws" / "launcher.yaml")], env=cli_env(moto_server))
    assert result.returncode == 0, result.stderr


def test_cli_reads_declared_builtin_and_inline_references(moto_server: MotoServer, aws_forwarder: Forwarder,
                                                          tmp_path: Path) -> None:
    db, api = moto_server.unique("prod/app/db"), moto_server.unique("api")
    moto_server.client.create_secret(Name=db, SecretString=json.dumps({"user": "app", "password": CANARY}))
    version = moto_server.client.create_secret(Name=api, SecretString="api-" + CANARY)["VersionId"]
    manifest = {
        "version": 1,
        "sources": {"prod": {"type": "aws", "region": "us-east-1", "endpoint_url": aws_forwarder.url}},
        "env": {"DB_USER": f"prod://{db}#user", "DB_PASSWORD": f"prod://{db}#password", "API": f"aws://{api}"},
    }
    (tmp_path / "launcher.yaml").write_text(yaml.safe_dump(manifest))
    env = cli_env(moto_server, INLINE=f"aws://{db}#password")
    result = run_launcher(["env", "--format", "json"], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"DB_USER": "app", "DB_PASSWORD": CANARY, "API": "api-" + CANARY, "INLINE": CANARY}
    assert aws_forwarder.count("GetSecretValue") == 1  # the declared source's one read of db
    check = run_launcher(["check"], env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert version in check.stdout
    assert CANARY not in check.stdout + check.stderr + result.stderr


@pytest.mark.parametrize(
    ("prepare", "code"),
    [("missing", 66), ("denied", 77), ("throttled", 69), ("no-region", 78), ("bad-name", 78)],
)
def test_cli_exit_codes(moto_server: MotoServer, aws_forwarder: Forwarder, tmp_path: Path, prepare: str, code: int) -> None:
    name = moto_server.unique()
    moto_server.client.create_secret(Name=name, SecretString=CANARY)
    env = cli_env(moto_server, AWS_ENDPOINT_URL=aws_forwarder.url)
    ref = f"aws://{name}"
    if prepare == "missing":
        ref += "-nope"
    elif prepare == "denied":
        aws_forwarder.fail_next(5, 400, "AccessDeniedException")
    elif prepare == "throttled":
        aws_forwarder.fail_next(5, 400, "ThrottlingException")
    elif prepare == "no-region":
        del env["AWS_REGION"]
    else:
        ref = "aws://bad name!"
    manifest = {"version": 1, "env": {"SECRET": ref}, "retry": {"attempts": 2, "initial_delay": "10ms", "deadline": "5s"}}
    (tmp_path / "launcher.yaml").write_text(yaml.safe_dump(manifest))
    result = run_launcher(["env"], env=env, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert CANARY not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_check_shows_the_new_version_and_run_watch_restarts_on_it(moto_server: MotoServer, aws_forwarder: Forwarder,
                                                                  tmp_path: Path) -> None:
    """A rotation (put_secret_value) is seen by `check`'s VERSION and by `run --watch`, through DescribeSecret alone."""
    name = moto_server.unique("rotating")
    first = moto_server.client.create_secret(Name=name, SecretString="v1-" + CANARY)["VersionId"]
    manifest = {"version": 1, "env": {"TOKEN": f"aws://{name}"}, "watch": {"interval": "1s", "debounce": "0s"}}
    (tmp_path / "launcher.yaml").write_text(yaml.safe_dump(manifest))
    env = cli_env(moto_server, AWS_ENDPOINT_URL=aws_forwarder.url)
    assert first in run_launcher(["check"], env=env, cwd=tmp_path).stdout
    out = tmp_path / "events.jsonl"
    proc = subprocess.Popen([LAUNCHER, "run", "--watch", "--", sys.executable, str(HELPERS_DIR / "record_env.py"), str(out), "TOKEN"],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        events = lambda: [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []  # noqa: E731
        wait_for(lambda: events(), what="the child's first start")
        reads = aws_forwarder.count("GetSecretValue")
        wait_for(lambda: aws_forwarder.count("DescribeSecret") >= 2, what="version checks")
        assert aws_forwarder.count("GetSecretValue") == reads, "checks read no value while nothing changes"
        second = moto_server.client.put_secret_value(SecretId=name, SecretString="v2-" + CANARY)["VersionId"]
        started = time.monotonic()
        wait_for(lambda: [e for e in events() if e["event"] == "start" and e["env"]["TOKEN"] == "v2-" + CANARY],
                 timeout=10, what="the restart with the new value")
        assert time.monotonic() - started < 3.0
        assert second in run_launcher(["check"], env=env, cwd=tmp_path).stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    assert CANARY not in stderr


def test_aws_vault_and_file_in_one_manifest(moto_server: MotoServer, openbao: OpenBao, tmp_path: Path) -> None:
    name = moto_server.unique("mixed")
    moto_server.client.create_secret(Name=name, SecretString=json.dumps({"key": "aws-" + CANARY}))
    base = openbao.unique("mixed-aws")
    write_kv2(openbao, f"{base}/db", {"password": "bao-" + CANARY})
    (tmp_path / "secrets.yaml").write_text("flag: on-" + CANARY + "\n")
    manifest = {
        "version": 1,
        "sources": {"dev": {"type": "file", "path": "./secrets.yaml"}},
        "env": {"A": f"aws://{name}#key", "B": f"vault://secret/{base}/db#password", "C": "dev://flag",
                "URL": f"x://{{{{ aws://{name}#key }}}}:{{{{ vault://secret/{base}/db#password }}}}"},
    }
    (tmp_path / "launcher.yaml").write_text(yaml.safe_dump(manifest))
    result = run_launcher(["env", "--format", "json"], env=cli_env(moto_server, **openbao.env()), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"A": "aws-" + CANARY, "B": "bao-" + CANARY, "C": "on-" + CANARY,
                                         "URL": f"x://aws-{CANARY}:bao-{CANARY}"}


def test_a_stalled_server_ends_in_69_within_the_deadline(moto_server: MotoServer, aws_forwarder: Forwarder,
                                                        tmp_path: Path) -> None:
    """botocore's sockets cannot be shut down by the deadline's watchdog, and its timeouts bound each
    recv: the request is given up on at the bound instead (``deadline.within``), so a stalled server
    costs ``retry.deadline`` plus teardown, not 10 s per attempt."""
    aws_forwarder.fail_next(50, 0)  # every request stalls
    (tmp_path / "launcher.yaml").write_text(yaml.safe_dump(
        {"version": 1, "env": {"A": "aws://stalled-a", "B": "aws://stalled-b"},
         "retry": {"attempts": 5, "initial_delay": "100ms", "deadline": "2s"}}))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAUNCHER_"))}, **moto_server.env(),
           "AWS_ENDPOINT_URL": aws_forwarder.url}
    result = run_launcher(["env"], env=env, cwd=tmp_path)
    assert result.returncode == 69, result.stderr
    spent = [float(s) for s in re.findall(r"gave up after \d+ attempts? in ([\d.]+)s", result.stderr)]
    assert len(spent) == 2 and max(spent) <= 2 + 1, result.stderr  # the deadline plus 1 s, for both secrets together
