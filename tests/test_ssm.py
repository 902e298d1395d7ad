"""The SSM Parameter Store source, in process, against moto's HTTP server and the real boto3.

Requests go through ``tests.moto_server.Forwarder``, which counts them by operation
and can answer in the server's place (errors, throttling, crafted answers).
The command-line tests are in tests/test_ssm_cli.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import traceback
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError, TransientError, UnavailableError
from launcher.manifest import parse_manifest
from launcher.model.config import RetryConfig
from launcher.model.refs import Reference, parse_reference
from launcher.resolve.resolver import Resolver
from launcher.resolve.retry import call_with_retry
from launcher.sources.ssm import SsmSource, SsmSourceConfig, reference_problem, tree_version, wanted

if TYPE_CHECKING:  # imported by pytest as a plugin, so that its asserts are rewritten
    from tests.moto_server import Forwarder, MotoServer

pytest_plugins = ["tests.moto_server"]

CANARY = "ssm-CANARY-71c4"
FAST_RETRY = RetryConfig(attempts=3, initial_delay=0.01, max_delay=0.05, deadline=30)


def open_source(endpoint: str, name: str = "prod", read_timeout: float = 2, **overrides: Any) -> SsmSource:
    config = SsmSourceConfig(name=name, region=overrides.pop("region", "us-east-1"), endpoint_url=endpoint, **overrides)
    return SsmSource(config, connect_timeout=2, read_timeout=read_timeout)


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


def put(moto_server: MotoServer, name: str, value: str, kind: str = "String") -> int:
    version: int = moto_server.ssm.put_parameter(Name=name, Value=value, Type=kind, Overwrite=True)["Version"]
    return version


def assert_no_value(err: BaseException, *values: str) -> None:
    text = str(err) + repr(err) + "".join(traceback.format_exception(err))
    for value in (CANARY, *values):
        assert value not in text


def resolve(manifest_text: str, endpoint: str) -> Any:
    manifest = parse_manifest(manifest_text.replace("ENDPOINT", endpoint), "m.yaml", {})
    resolver = Resolver(manifest)
    try:
        return resolver.resolve({}, inline=False)
    finally:
        resolver.close()


# -- values, versions, labels ------------------------------------------------------------


def test_string_securestring_and_versions(moto_server: MotoServer, source: SsmSource) -> None:
    name = "/" + moto_server.unique("app") + "/db/password"
    assert put(moto_server, name, "first-" + CANARY, "SecureString") == 1
    first = source.fetch(name.lstrip("/"), None)
    assert (first.value, first.version) == ("first-" + CANARY, "1")  # decrypted
    assert CANARY not in repr(first)
    put(moto_server, name, "second", "SecureString")
    assert source.fetch(name, None).value == "second"  # a leading slash, as the Python API may pass it
    assert (source.fetch(name, "1").value, source.fetch(name, "2").version) == ("first-" + CANARY, "2")
    listed = "/" + moto_server.unique("list")
    put(moto_server, listed, "a,b,c", "StringList")
    assert source.fetch(listed, None).value == "a,b,c"


def test_root_name_without_a_slash(moto_server: MotoServer, source: SsmSource) -> None:
    name = moto_server.unique("plain")  # stored as `plain-N-x`, no leading slash: SSM takes /name for it
    put(moto_server, name, CANARY)
    assert source.fetch(name, None).value == CANARY
    assert source.current_version(name) == "1"


def test_labels_follow_the_label(moto_server: MotoServer, source: SsmSource) -> None:
    name = "/" + moto_server.unique("app") + "/token"
    put(moto_server, name, "v1-" + CANARY)
    put(moto_server, name, "v2")
    moto_server.ssm.label_parameter_version(Name=name, ParameterVersion=1, Labels=["live"])
    ref = parse_reference(f"prod://{name}?label=live", {"prod"})
    assert ref.path == name.lstrip("/") + ":live" and ref.version is None  # watched, not pinned
    labelled = source.fetch(ref.path, None)
    assert (labelled.value, labelled.version) == ("v1-" + CANARY, "1")
    assert source.current_version(ref.path) == "1"
    moto_server.ssm.label_parameter_version(Name=name, ParameterVersion=2, Labels=["live"])  # moved: a rotation
    assert source.current_version(ref.path) == "2"
    assert source.fetch(ref.path, None).value == "v2"
    with pytest.raises(NotFoundError, match=r"parameter or label not found in us-east-1$"):
        source.fetch(name.lstrip("/") + ":nolabel", None)


def test_missing_parameter_and_version_are_66(moto_server: MotoServer, source: SsmSource) -> None:
    name = moto_server.unique("app") + "/db"
    with pytest.raises(NotFoundError, match=r"^prod://app-.*/db: parameter not found, and none under /app-.*/db/ in us-east-1$") as info:
        source.fetch(name, None)
    assert info.value.exit_code == 66
    put(moto_server, "/" + name, CANARY)
    with pytest.raises(NotFoundError, match=r"prod://app-.*/db\?version=7: version not found in us-east-1"):
        source.fetch(name, "7")
    with pytest.raises(NotFoundError):
        source.current_version(name + "/nothing")


def test_json_keys_read_once_through_the_resolver(moto_server: MotoServer, aws_env: dict[str, str],
                                                  aws_forwarder: Forwarder) -> None:
    name = moto_server.unique("app") + "/db"
    put(moto_server, "/" + name, json.dumps({"user": "app", "password": CANARY, "port": 5432}), "SecureString")
    resolution = resolve(
        "version: 1\nsources: {prod: {type: ssm, region: us-east-1, endpoint_url: ENDPOINT}}\n"
        f"env:\n  USER: prod:///{name}#user\n  PASSWORD: prod:///{name}#password\n  PORT: prod:///{name}#port\n"
        f"  NOPE: {{ref: 'prod:///{name}#nope', default: d}}\n",
        aws_forwarder.url,
    )
    assert resolution.values == {"USER": "app", "PASSWORD": CANARY, "PORT": "5432", "NOPE": "d"}
    assert aws_forwarder.operations == ["GetParameter"]  # one read for all its keys


# -- trees and env_from -----------------------------------------------------------------------


def test_a_path_with_no_parameter_is_the_tree_under_it(moto_server: MotoServer, forwarded: SsmSource,
                                                       aws_forwarder: Forwarder) -> None:
    root = moto_server.unique("tree")
    for rel, value in {"a": "1", "b/c": "2", "d-e": CANARY}.items():
        put(moto_server, f"/{root}/{rel}", value, "SecureString")
    tree = forwarded.fetch(root, None)
    assert tree.fields == {"a": "1", "b/c": "2", "d-e": CANARY}
    assert aws_forwarder.operations == ["GetParameter", "GetParametersByPath"]
    assert CANARY not in repr(tree) and CANARY not in str(tree.version)
    assert forwarded.current_version(root) == tree.version == tree_version({"a": {"Version": 1}, "b/c": {"Version": 1},
                                                                          "d-e": {"Version": 1}})
    put(moto_server, f"/{root}/b/c", "changed")
    assert forwarded.current_version(root) != tree.version  # a new version under it changes the tree's
    put(moto_server, f"/{root}", "the parameter itself")  # a parameter at exactly that name wins
    assert (forwarded.fetch(root, None).value, forwarded.current_version(root)) == ("the parameter itself", "1")


def test_env_from_loads_a_tree_of_several_pages(moto_server: MotoServer, aws_env: dict[str, str],
                                                aws_forwarder: Forwarder) -> None:
    root = moto_server.unique("app")
    for i in range(23):
        put(moto_server, f"/{root}/svc-{i}/key", f"value-{i}")
    put(moto_server, f"/{root}/api/key", CANARY, "SecureString")
    resolution = resolve(
        "version: 1\nsources: {prod: {type: ssm, region: us-east-1, endpoint_url: ENDPOINT}}\n"
        f"env_from:\n  - {{ref: 'prod:///{root}/', prefix: APP_}}\n",
        aws_forwarder.url,
    )
    assert not resolution.errors
    assert resolution.values["APP_API_KEY"] == CANARY
    assert resolution.values["APP_SVC_0_KEY"] == "value-0" and resolution.values["APP_SVC_22_KEY"] == "value-22"
    assert len(resolution.values) == 24
    assert aws_forwarder.count("GetParametersByPath") == 3  # moto's pages hold 10, as SSM's
    assert all(body.get("Recursive") is True and body.get("WithDecryption") is True
               for op, body in zip(aws_forwarder.operations, aws_forwarder.bodies, strict=True) if op == "GetParametersByPath")


def test_env_from_collisions_are_78(moto_server: MotoServer, aws_env: dict[str, str], moto_url: str) -> None:
    root = moto_server.unique("app")
    put(moto_server, f"/{root}/api-key", "a")
    put(moto_server, f"/{root}/api/key", "b")
    resolution = resolve(
        "version: 1\nsources: {prod: {type: ssm, region: us-east-1, endpoint_url: ENDPOINT}}\n"
        f"env_from:\n  - {{ref: 'prod:///{root}/', prefix: APP_}}\n",
        moto_url,
    )
    [error] = resolution.errors
    assert isinstance(error, ManifestError) and error.exit_code == 78
    assert "keys 'api-key' and 'api/key' both become APP_API_KEY" in str(error)


@pytest.fixture
def moto_url(moto_server: MotoServer) -> str:
    return moto_server.url


# -- batches ----------------------------------------------------------------------------------


def test_25_parameters_in_3_getparameters_calls(moto_server: MotoServer, aws_env: dict[str, str],
                                                aws_forwarder: Forwarder) -> None:
    root = moto_server.unique("many")
    for i in range(25):
        put(moto_server, f"/{root}/p{i}", f"value-{i}-{CANARY}", "SecureString")
    env = "".join(f"  P{i}: prod:///{root}/p{i}\n" for i in range(25))
    resolution = resolve("version: 1\nsources: {prod: {type: ssm, region: us-east-1, endpoint_url: ENDPOINT}}\n"
                         f"env:\n{env}", aws_forwarder.url)
    assert resolution.values == {f"P{i}": f"value-{i}-{CANARY}" for i in range(25)}
    assert aws_forwarder.operations == ["GetParameters"] * 3
    asked = sorted(name for body in aws_forwarder.bodies for name in body["Names"])
    assert asked == sorted(f"/{root}/p{i}" for i in range(25))
    assert sorted(len(body["Names"]) for body in aws_forwarder.bodies) == [5, 10, 10]
    assert all(body["WithDecryption"] for body in aws_forwarder.bodies)


def test_a_batch_leaves_what_it_cannot_answer_to_fetch(moto_server: MotoServer, aws_env: dict[str, str],
                                                       aws_forwarder: Forwarder) -> None:
    root = moto_server.unique("mixed")
    for i in range(8):
        put(moto_server, f"/{root}/p{i}", f"v{i}")
    put(moto_server, f"/{root}/p0", "v0-second")
    moto_server.ssm.label_parameter_version(Name=f"/{root}/p0", ParameterVersion=1, Labels=["old"])
    put(moto_server, f"/{root}/tree/x", "in-a-tree")
    resolution = resolve(
        "version: 1\nsources: {prod: {type: ssm, region: us-east-1, endpoint_url: ENDPOINT}}\nenv:\n"
        + "".join(f"  P{i}: prod:///{root}/p{i}\n" for i in range(8))
        + f"  PINNED: prod:///{root}/p0?version=1\n  LABELLED: prod:///{root}/p0?label=old\n"
        f"  TREE: prod:///{root}/tree#x\n  MISSING: {{ref: 'prod:///{root}/nope', default: none}}\n",
        aws_forwarder.url,
    )
    assert resolution.values == {**{f"P{i}": f"v{i}" for i in range(1, 8)}, "P0": "v0-second", "PINNED": "v0",
                                 "LABELLED": "v0", "TREE": "in-a-tree", "MISSING": "none"}
    # One call never asks for one parameter twice: /p0, /p0:1 and /p0:old are in three calls.
    calls = [body["Names"] for op, body in zip(aws_forwarder.operations, aws_forwarder.bodies, strict=True) if op == "GetParameters"]
    assert len(calls) == 3
    for names in calls:
        assert len({name.partition(":")[0] for name in names}) == len(names)
    # What InvalidParameters listed (the tree, the missing one) was read one by one.
    assert aws_forwarder.count("GetParameter") == 2 and aws_forwarder.count("GetParametersByPath") == 2


def test_batch_answers_are_tied_to_requests_by_name(moto_server: MotoServer, forwarded: SsmSource,
                                                    aws_forwarder: Forwarder) -> None:
    """An answer goes to the request of its name, whatever the order; doubtful answers go nowhere."""
    items = [("app/a", None), ("app/b", None), ("app/c", "3"), ("app/d:live", None), ("app/e", None)]
    crafted = {"InvalidParameters": [], "Parameters": [
        {"Name": "/app/b", "Value": "value-b", "Version": 1},  # out of order: still b's
        {"Name": "/app/a", "Value": "value-a", "Version": 4},
        {"Name": "/app/c", "Value": "value-c", "Version": 2, "Selector": ":2"},  # another version than asked
        {"Name": "/app/d", "Value": "value-d", "Version": 5, "Selector": ":live"},
        {"Name": "/app/e", "Value": "e-1", "Version": 1},  # two answers for one request: neither
        {"Name": "/app/e", "Value": "e-2", "Version": 2},
        {"Name": "/app/z", "Value": "never asked", "Version": 1},
    ]}
    aws_forwarder.fail_next(1, 200, body=json.dumps(crafted).encode())
    found = forwarded.read_many(items, 5)
    assert {item: secret.value for item, secret in found.items()} == {
        ("app/a", None): "value-a", ("app/b", None): "value-b", ("app/d:live", None): "value-d"}
    assert found[("app/a", None)].version == "4"
    assert aws_forwarder.operations == ["GetParameters"]


@pytest.mark.parametrize("fault", [(400, "ThrottlingException"), (400, "AccessDeniedException"), (200, "")])
def test_a_failed_batch_leaves_everything_to_fetch(forwarded: SsmSource, aws_forwarder: Forwarder, fault: tuple[int, str]) -> None:
    aws_forwarder.fail_next(1, fault[0], fault[1], **({"body": b"<html>"} if not fault[1] else {}))
    assert forwarded.read_many([(f"app/x{i}", None) for i in range(3)], 5) == {}


def test_a_stalled_batch_is_abandoned_at_its_bound(forwarded: SsmSource, aws_forwarder: Forwarder) -> None:
    import time

    aws_forwarder.fail_next(1, 0)  # the call stalls until the forwarder stops
    started = time.monotonic()
    assert forwarded.read_many([("app/x", None)], 0.3) == {}
    assert time.monotonic() - started < 5  # the 0.3 s bound, not the stall (forever): room for a busy machine


# -- rotation checks ---------------------------------------------------------------------------


def test_versions_are_read_from_metadata(moto_server: MotoServer, forwarded: SsmSource, aws_forwarder: Forwarder) -> None:
    name = moto_server.unique("rotating")
    put(moto_server, "/" + name, CANARY, "SecureString")
    assert forwarded.current_version(name) == "1"
    put(moto_server, "/" + name, "rotated", "SecureString")
    assert forwarded.current_version(name) == "2"
    assert aws_forwarder.operations == ["DescribeParameters", "DescribeParameters"]  # no value, no KMS
    assert aws_forwarder.bodies[0]["ParameterFilters"] == [{"Key": "Name", "Option": "Equals", "Values": ["/" + name]}]


def test_without_describe_permission_checks_read_undecrypted(moto_server: MotoServer, forwarded: SsmSource,
                                                              aws_forwarder: Forwarder) -> None:
    name = moto_server.unique("rotating")
    put(moto_server, "/" + name, CANARY, "SecureString")
    aws_forwarder.fail_next(1, 400, "AccessDeniedException", message="not authorized to perform: ssm:DescribeParameters")
    assert forwarded.current_version(name) == "1"
    assert forwarded.current_version(name) == "1"
    assert aws_forwarder.operations == ["DescribeParameters", "GetParameter", "GetParameter"]  # asked once, then not
    assert [body.get("WithDecryption") for body in aws_forwarder.bodies[1:]] == [False, False]


def test_public_parameters_are_checked_with_getparameter(forwarded: SsmSource, aws_forwarder: Forwarder) -> None:
    name = "aws/service/global-infrastructure/regions/us-east-1/longName"  # moto serves AWS's public parameters too
    assert forwarded.fetch(name, None).value == "US East (N. Virginia)"
    assert forwarded.current_version(name) is not None
    assert aws_forwarder.operations == ["GetParameter", "GetParameter"]


# -- errors ------------------------------------------------------------------------------------

ANSWERS = [
    # status, AWS error code, message, error, words in the message
    (400, "ParameterNotFound", "", NotFoundError, "parameter not found in us-east-1"),
    (400, "ParameterVersionNotFound", "", NotFoundError, "version not found in us-east-1"),
    (400, "AccessDeniedException", "User: arn:aws:iam::123456789012:user/app is not authorized", AuthError,
     "access denied in us-east-1 (needs ssm:GetParameter); AWS says: User: arn:aws:iam::123456789012:user/app"),
    (400, "AccessDeniedException", "The ciphertext refers to a customer master key ... (Service: AWSKMS)", AuthError,
     "(needs kms:Decrypt on the parameter's KMS key)"),
    (400, "InvalidKeyId", "", AuthError, "KMS key cannot be used"),
    (400, "UnrecognizedClientException", "", AuthError, "access key is not recognised"),
    (400, "ExpiredTokenException", "", AuthError, "credentials have expired"),
    (403, "", "", AuthError, "permission denied (HTTP 403)"),
    (400, "ValidationException", "Parameter name: can't be prefixed with ssm", ManifestError, "rejected as invalid"),
    (400, "ThrottlingException", "", TransientError, "throttled in us-east-1"),
    (429, "", "", TransientError, "throttled"),
    (500, "InternalServerError", "", TransientError, "HTTP 500"),
    (503, "", "", TransientError, "HTTP 503"),
    (418, "Teapot", "", UnavailableError, "unexpected answer HTTP 418"),
]


@pytest.mark.parametrize(("status", "code", "message", "error", "words"), ANSWERS,
                         ids=[f"{a[0]}-{a[1] or 'none'}-{i}" for i, a in enumerate(ANSWERS)])
def test_error_answers_are_mapped_once(forwarded: SsmSource, aws_forwarder: Forwarder, status: int, code: str, message: str,
                                       error: type[LauncherError], words: str) -> None:
    aws_forwarder.fail_next(1, status, code, message=message or "nope")
    with pytest.raises(error) as info:
        forwarded.fetch("app/db", "1")  # pinned: a missing one is not looked for as a tree
    assert type(info.value) is error or (error is AuthError and isinstance(info.value, AuthError))
    assert str(info.value).startswith("prod://app/db?version=1: ")
    assert words in str(info.value)
    assert "Exception" not in str(info.value).replace(code, "")  # plain words, no class names
    assert_no_value(info.value)
    assert aws_forwarder.count("GetParameter") == 1  # botocore did not retry on its own


def test_throttling_is_retried_by_the_policy_then_69(forwarded: SsmSource, aws_forwarder: Forwarder, moto_server: MotoServer) -> None:
    aws_forwarder.fail_next(3, 400, "ThrottlingException")
    with pytest.raises(UnavailableError, match=r"throttled in us-east-1 .*gave up after 3 attempts") as info:
        call_with_retry(lambda: forwarded.fetch("app/db", "1"), FAST_RETRY)
    assert info.value.exit_code == 69 and aws_forwarder.count() == 3
    name = moto_server.unique("recovers")
    put(moto_server, "/" + name, CANARY)
    aws_forwarder.fail_next(2, 400, "ThrottlingException")
    assert call_with_retry(lambda: forwarded.fetch(name, None), FAST_RETRY).value == CANARY


def test_denied_is_not_retried(forwarded: SsmSource, aws_forwarder: Forwarder) -> None:
    aws_forwarder.fail_next(3, 400, "AccessDeniedException")
    with pytest.raises(AuthError) as info:
        call_with_retry(lambda: forwarded.fetch("app/db", None), FAST_RETRY)
    assert info.value.exit_code == 77 and aws_forwarder.count() == 1


def test_unreadable_answers_are_transient(forwarded: SsmSource, aws_forwarder: Forwarder) -> None:
    aws_forwarder.fail_next(1, 200, body=b"<html>captive portal</html>")
    with pytest.raises(TransientError, match="unreadable answer"):
        forwarded.fetch("app/db", None)
    aws_forwarder.fail_next(1, 200, body=b'{"Parameter": {"Name": "/app/db"}}')
    with pytest.raises(TransientError, match="a parameter without a value"):
        forwarded.fetch("app/db", None)


def test_stalled_and_refused_connections_are_transient(aws_env: dict[str, str], aws_forwarder: Forwarder) -> None:
    aws_forwarder.fail_next(1, 0)
    src = open_source(aws_forwarder.url, read_timeout=0.3)
    with pytest.raises(TransientError, match=r"timed out after 0\.3s"):
        src.fetch("app/db", None)
    src.close()
    url = aws_forwarder.url
    aws_forwarder.stop()
    src = open_source(url)
    with pytest.raises(TransientError, match=r"cannot reach http://127\.0\.0\.1:\d+/ in us-east-1 \(connection refused\)"):
        src.fetch("app/db", None)
    src.close()


def test_a_stalled_request_ends_at_the_attempts_bound(forwarded: SsmSource, aws_forwarder: Forwarder) -> None:
    """botocore's timeouts bound each recv (10 s here); the attempt's bound (launcher.deadline) ends it sooner."""
    import time

    from launcher import deadline

    aws_forwarder.fail_next(1, 0)
    started = time.monotonic()
    with deadline.bound(0.5), pytest.raises(TransientError, match=r"^prod://app/db: no answer from .* before the deadline$"):
        forwarded.fetch("app/db", None)
    assert 0.4 < time.monotonic() - started < 5  # the 0.5 s bound, not the 10 s timeout


def test_no_region_is_78_and_no_credentials_77(aws_env: dict[str, str], moto_server: MotoServer,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(ManifestError, match=r"no AWS region.*AWS_REGION"):
        SsmSource(SsmSourceConfig(name="ssm")).fetch("app/db", None)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(AuthError, match="no AWS credentials found"):
        SsmSource(SsmSourceConfig(name="ssm")).fetch("app/db", None)


def test_region_and_endpoint_defaults() -> None:
    env = {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_SSM": "http://b:2",
           "AWS_ENDPOINT_URL_SECRETSMANAGER": "http://c:3"}
    src = SsmSource(SsmSourceConfig(name="ssm"), environ=env)
    assert (src.region, src.endpoint_url) == ("eu-west-1", "http://b:2")
    src = SsmSource(SsmSourceConfig(name="ssm"), environ={**env, "AWS_REGION": "us-west-2", "AWS_ENDPOINT_URL_SSM": ""})
    assert (src.region, src.endpoint_url) == ("us-west-2", "http://a:1")
    src = SsmSource(SsmSourceConfig(name="x", region="ap-south-1", endpoint_url="https://d"), environ=env)
    assert (src.region, src.endpoint_url) == ("ap-south-1", "https://d")
    with pytest.raises(ManifestError, match="must start with http"):
        SsmSource(SsmSourceConfig(name="x", endpoint_url="localhost:4566"), environ={})


# -- references ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "version", "words"),
    [
        ("app/db/password", None, None),
        ("app/db", "12", None),
        ("app/db:live", None, None),
        ("plain", None, None),
        ("a/" * 14 + "b", None, None),
        ("aws/service/global-infrastructure/regions", None, None),  # public parameters can be read
        ("a/" * 15 + "b", None, "is not a parameter name"),
        ("app/db password", None, "is not a parameter name"),
        ("app//db", None, "is not a parameter name"),
        ("x" * 1011, None, "is not a parameter name"),
        ("app/db", "0", "?version=0 is not a parameter version"),
        ("app/db", "v2", "is not a parameter version"),
        ("app/db:3", None, "a version is written ?version=3, not :3"),
        ("app/db:aws-x", None, "is not a parameter label"),
        ("app/db:1x", None, "is not a parameter label"),
        ("app/db:a:b", None, "is not a parameter label"),
        ("app/db:live", "2", "a label and a version at once"),
        ("arn:aws:ssm:us-east-1:123456789012:parameter/app/db", None, "ARNs are not supported"),
    ],
)
def test_reference_problem(path: str, version: str | None, words: str | None) -> None:
    problem = reference_problem(SsmSourceConfig(name="ssm"), Reference("ssm", path, None, version))
    if words is None:
        assert problem is None
    else:
        assert problem is not None and words in problem


def test_references_with_three_slashes_keys_versions_and_labels() -> None:
    ref = parse_reference("ssm:///app/db?version=3#password", {"ssm"})
    assert (ref.path, ref.version, ref.key) == ("app/db", "3", "password")
    assert wanted(ref.path, ref.version).request == "/app/db:3"
    labelled = parse_reference("ssm:///app/db#password?label=live", {"ssm"})
    assert wanted(labelled.path, labelled.version).request == "/app/db:live"
    assert parse_reference("ssm:///app/", {"ssm"}).path == parse_reference("ssm://app", {"ssm"}).path == "app"


def test_bad_references_are_refused_before_any_request(forwarded: SsmSource, aws_forwarder: Forwarder) -> None:
    for path, version in (("bad name!", None), ("app/db", "latest"), ("app/db:1", None)):
        with pytest.raises(ManifestError) as info:
            forwarded.fetch(path, version)
        assert info.value.exit_code == 78
    with pytest.raises(ManifestError):
        forwarded.current_version("bad name!")
    assert forwarded.read_many([("bad name!", None)], 1) == {}
    assert aws_forwarder.count() == 0


def test_a_manifest_with_a_bad_reference_is_78_offline() -> None:
    with pytest.raises(ManifestError, match=r"m.yaml:3: env.X: ssm://app/db:3: a version is written \?version=3"):
        parse_manifest("version: 1\nenv:\n  X: ssm:///app/db:3\n", "m.yaml", {})
    manifest = parse_manifest(yaml.safe_dump({"version": 1, "env": {"X": "ssm:///app/db?label=live#k"}}), "m.yaml", {})
    assert manifest.env[0].refs[0].path == "app/db:live"


# -- packaging ------------------------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


def test_importing_the_module_imports_no_sdk() -> None:
    result = _python(
        "import sys\n"
        "from launcher.model.refs import Reference\n"
        "from launcher.sources import ssm\n"
        "assert ssm.reference_problem(ssm.SsmSourceConfig(name='ssm'), Reference('ssm', 'a/b')) is None\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', 's3transfer'}))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_missing_boto3_is_78_naming_the_extra() -> None:
    result = _python(
        "import sys\n"
        "sys.modules['boto3'] = None\n"
        "from launcher.sources.ssm import SsmSource, SsmSourceConfig\n"
        "try:\n"
        "    SsmSource(SsmSourceConfig(name='x'))\n"
        "except Exception as exc:\n"
        "    print(exc.exit_code, exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "78 source 'x': type ssm needs the AWS extra: pip install 'secret-launcher[aws]'"
