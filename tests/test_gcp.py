"""The Google Secret Manager source in process, against the suite's emulator and the real google-cloud-secret-manager client.

References, projects, versions, checksums, states, rotation checks, every status on both
transports, deadlines and credentials. ``test_gcp_cli.py`` runs the installed ``launcher``.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from launcher import deadline
from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError, TransientError, UnavailableError
from launcher.model.config import Binding, Manifest, RetryConfig
from launcher.model.refs import Reference, parse_reference
from launcher.resolve.resolver import Resolver
from launcher.resolve.retry import call_with_retry
from launcher.sources.base import Versioned
from launcher.sources.gcp.config import GcpSourceConfig, reference_problem
from launcher.sources.gcp.source import GcpSource, crc32c
from tests.gcp_emulator import PROJECT, PROJECT_NUMBER, SecretManagerEmulator
from tests.gcp_emulator import crc32c as bitwise_crc32c

CANARY = "gcp-CANARY-7d31"
FAST_RETRY = RetryConfig(attempts=3, initial_delay=0.01, max_delay=0.05, deadline=10)
ROOT = Path(__file__).resolve().parent.parent
TRANSPORTS = ["rest", "grpc"]


def open_source(emu: SecretManagerEmulator, transport: str = "rest", **overrides: Any) -> GcpSource:
    endpoint = emu.url if transport == "rest" else emu.grpc_target()
    settings: dict[str, Any] = {"project": PROJECT, "credentials": "none", "endpoint": endpoint, **overrides}
    return GcpSource(GcpSourceConfig(name="sm", **settings), environ={}, timeout=2)


@pytest.fixture(params=TRANSPORTS)
def source(request: pytest.FixtureRequest, gcp: SecretManagerEmulator) -> Iterator[GcpSource]:
    src = open_source(gcp, request.param)
    yield src
    src.close()


def assert_no_value(err: BaseException, *values: str) -> None:
    text = str(err) + repr(err) + "".join(traceback.format_exception(err))
    for value in (CANARY, *values):
        assert value not in text


# -- references and versions ------------------------------------------------------------


def test_short_and_full_references_latest_numbers_and_aliases(gcp: SecretManagerEmulator, source: GcpSource) -> None:
    gcp.add_version("api-key", "first-" + CANARY)
    gcp.add_version("api-key", "second")
    gcp.alias("api-key", "stable", "1")
    gcp.add_version("shared", "other-project", project="shared-infra")
    cases = {
        "api-key": ("second", "2"),
        "api-key/versions/latest": ("second", "2"),
        "api-key/versions/1": ("first-" + CANARY, "1"),
        "api-key/versions/stable": ("first-" + CANARY, "1"),
        f"projects/{PROJECT}/secrets/api-key": ("second", "2"),
        f"projects/{PROJECT_NUMBER}/secrets/api-key/versions/1": ("first-" + CANARY, "1"),
        "projects/shared-infra/secrets/shared": ("other-project", "1"),
    }
    for path, (value, version) in cases.items():
        secret = source.fetch(path, None)
        assert (secret.value, secret.version) == (value, version), path
        assert CANARY not in repr(secret)
    accessed = [r.name for r in gcp.requests if r.kind == "access"]
    assert accessed[0] == f"projects/{PROJECT}/secrets/api-key/versions/latest"  # the short form in the source's project
    assert accessed[-1] == "projects/shared-infra/secrets/shared/versions/latest"


def test_project_comes_from_the_source_then_the_environment(gcp: SecretManagerEmulator) -> None:
    gcp.add_version("db", CANARY)
    gcp.add_version("db", "elsewhere", project="from-env")
    config = GcpSourceConfig(name="sm", credentials="none", endpoint=gcp.url)
    from_env = GcpSource(config, environ={"GOOGLE_CLOUD_PROJECT": "from-env"})
    assert from_env.fetch("db", None).value == "elsewhere"
    declared = GcpSource(GcpSourceConfig(name="sm", credentials="none", endpoint=gcp.url, project=PROJECT),
                         environ={"GOOGLE_CLOUD_PROJECT": "from-env"})
    assert declared.fetch("db", None).value == CANARY
    nowhere = GcpSource(config, environ={})
    with pytest.raises(ManifestError, match="no project for a short reference: set `project:`") as info:
        nowhere.fetch("db", None)
    assert info.value.exit_code == 78
    assert nowhere.fetch(f"projects/{PROJECT}/secrets/db", None).value == CANARY  # a full reference needs none
    for src in (from_env, declared, nowhere):
        src.close()


def test_project_from_the_credentials_and_a_key_file(gcp_auth: SecretManagerEmulator, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """ADC from GOOGLE_APPLICATION_CREDENTIALS: a self-signed JWT the server verifies, and the key's project."""
    gcp_auth.add_version("db", CANARY)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(gcp_auth.service_account_key(tmp_path)))
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    src = GcpSource(GcpSourceConfig(name="sm", endpoint=gcp_auth.url), environ={})
    try:
        assert src.fetch("db", None).value == CANARY
        assert src.project == PROJECT
        assert [(r.authorized, r.status) for r in gcp_auth.requests] == [(True, "OK")]
    finally:
        src.close()


def test_json_keys_through_the_resolver_read_once(gcp: SecretManagerEmulator) -> None:
    gcp.add_version("db", json.dumps({"user": "app", "password": CANARY, "port": 5432}))
    gcp.add_version("plain", "token-1")
    sources = {"sm": GcpSourceConfig(name="sm", credentials="none", endpoint=gcp.url, project=PROJECT)}
    known = frozenset({"sm"})

    def binding(var: str, text: str) -> Binding:
        return Binding(var, (parse_reference(text, known),))

    manifest = Manifest(sources=sources, retry=FAST_RETRY, env=(
        binding("DB_USER", "sm://db#user"), binding("DB_PASSWORD", "sm://db#password"), binding("DB_PORT", "sm://db#port"),
        binding("PLAIN", "sm://plain"), binding("NOPE", "sm://db#nope"), binding("NOT_JSON", "sm://plain#key")))
    resolver = Resolver(manifest, source_factory=lambda config: GcpSource(config, environ={}))  # type: ignore[arg-type]
    try:
        resolution = resolver.resolve({}, inline=False)
    finally:
        resolver.close()
    assert resolution.values == {"DB_USER": "app", "DB_PASSWORD": CANARY, "DB_PORT": "5432", "PLAIN": "token-1"}
    assert sorted(type(e).__name__ for e in resolution.errors) == ["NotFoundError", "NotFoundError"]
    for error in resolution.errors:
        assert_no_value(error)
    assert gcp.count("access") == 2  # one read per secret, for all its keys


def test_a_binary_payload_that_is_not_text_is_78(gcp: SecretManagerEmulator, source: GcpSource) -> None:
    gcp.add_version("cert", "héllo wörld")
    gcp.add_version("raw", b"\xff\xfe" + CANARY.encode())
    assert source.fetch("cert", None).value == "héllo wörld"
    with pytest.raises(ManifestError, match="not UTF-8 text") as info:
        source.fetch("raw", None)
    assert info.value.__suppress_context__
    assert_no_value(info.value)


def test_concurrent_fetches_share_one_client(gcp: SecretManagerEmulator, source: GcpSource) -> None:
    names = [f"many-{i}" for i in range(12)]
    for name in names:
        gcp.add_version(name, name + "-value")
    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(lambda n: source.fetch(n, None).value, names))
    assert values == [n + "-value" for n in names]
    assert source._client is not None and gcp.count("access") == 12


# -- checksums and states ------------------------------------------------------------------


def test_crc32c_matches_the_standard_check_value_and_an_independent_implementation() -> None:
    assert crc32c(b"123456789") == 0xE3069283 == bitwise_crc32c(b"123456789")  # RFC 3720's check value
    data = os.urandom(65536)
    assert crc32c(data) == bitwise_crc32c(data)
    assert crc32c(b"") == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_checksum_mismatch_is_retried_and_69_when_it_persists(gcp: SecretManagerEmulator, transport: str) -> None:
    gcp.add_version("db", CANARY)
    src = open_source(gcp, transport)
    try:
        gcp.corrupt_next(1)
        assert call_with_retry(lambda: src.fetch("db", None), FAST_RETRY).value == CANARY
        assert gcp.count("access") == 2
        gcp.corrupt_next(5)
        with pytest.raises(UnavailableError, match=r"CRC32C does not match.*gave up after 3 attempts") as info:
            call_with_retry(lambda: src.fetch("db", None), FAST_RETRY)
        assert info.value.exit_code == 69 and gcp.count("access") == 5
        assert_no_value(info.value)
    finally:
        src.close()


def test_a_payload_without_a_checksum_is_taken_as_it_is(gcp: SecretManagerEmulator, source: GcpSource) -> None:
    gcp.checksums = False  # Google always sends one; an emulator may not
    gcp.add_version("db", CANARY)
    assert source.fetch("db", None).value == CANARY
    assert gcp.count("access") == 1


@pytest.mark.parametrize("state", ["DISABLED", "DESTROYED"])
def test_disabled_and_destroyed_versions_are_78_naming_the_state(gcp: SecretManagerEmulator, source: GcpSource, state: str) -> None:
    gcp.add_version("db", "old")
    gcp.add_version("db", CANARY)
    gcp.set_state("db", "2", state)
    for path in ("db", "db/versions/2"):
        with pytest.raises(ManifestError, match=f"^sm://{path}: version 2 is {state} ") as info:
            source.fetch(path, None)
        assert info.value.exit_code == 78
        assert_no_value(info.value)
    with pytest.raises(ManifestError, match=f"version 2 is {state}"):
        source.current_version("db")  # latest is the newest version, whatever its state (as Google's alias is)
    assert source.fetch("db/versions/1", None).value == "old"
    before = gcp.count("access")
    with pytest.raises(ManifestError):
        call_with_retry(lambda: source.fetch("db", None), FAST_RETRY)
    assert gcp.count("access") == before + 1  # never retried


# -- rotation checks -----------------------------------------------------------------------


def test_rotation_checks_read_no_payload(gcp: SecretManagerEmulator, source: GcpSource) -> None:
    assert isinstance(source, Versioned)
    gcp.add_version("rotating", CANARY)
    gcp.alias("rotating", "prod", "1")
    assert source.current_version("rotating") == "1"
    gcp.add_version("rotating", "rotated")
    assert source.current_version("rotating") == "2"
    assert source.current_version("rotating/versions/latest") == "2"
    assert source.current_version("rotating/versions/prod") == "1"
    gcp.alias("rotating", "prod", "2")
    assert source.current_version("rotating/versions/prod") == "2"
    assert source.current_version("rotating/versions/1") == "1"  # a number never moves: no request at all
    assert [r.kind for r in gcp.requests] == ["get"] * 5
    assert [r.name.rsplit("/", 1)[-1] for r in gcp.requests] == ["latest", "latest", "latest", "prod", "prod"]


# -- errors --------------------------------------------------------------------------------

STATUSES = [
    # status, error, exit code, words
    ("NOT_FOUND", NotFoundError, 66, "secret or version not found at "),
    ("PERMISSION_DENIED", AuthError, 77, "permission denied by "),
    ("UNAUTHENTICATED", AuthError, 77, "the credentials were refused by "),
    ("UNAVAILABLE", TransientError, 69, "answered UNAVAILABLE"),
    ("RESOURCE_EXHAUSTED", TransientError, 69, "answered RESOURCE_EXHAUSTED"),
    ("DEADLINE_EXCEEDED", TransientError, 69, "answered DEADLINE_EXCEEDED"),
    ("INTERNAL", TransientError, 69, "answered INTERNAL"),
    ("INVALID_ARGUMENT", ManifestError, 78, "rejected by "),
    ("FAILED_PRECONDITION", ManifestError, 78, "rejected by "),
    ("UNIMPLEMENTED", UnavailableError, 69, "unexpected answer UNIMPLEMENTED"),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("status", "error", "code", "words"), STATUSES, ids=[s[0] for s in STATUSES])
def test_error_statuses_are_mapped_once_and_sent_once(gcp: SecretManagerEmulator, transport: str, status: str,
                                                     error: type[LauncherError], code: int, words: str) -> None:
    src = open_source(gcp, transport)
    try:
        gcp.fail_next(1, status, message="Google's own words about projects/x/secrets/db")
        with pytest.raises(error) as info:
            src.fetch("db", None)
        assert type(info.value) is error and info.value.exit_code == code
        assert str(info.value).startswith("sm://db: ") and words in str(info.value)
        assert "Error" not in str(info.value) and "Exception" not in str(info.value)  # plain words, no class names
        assert gcp.count() == 1  # the client library did not retry on its own
    finally:
        src.close()


def test_denied_names_the_permission_and_is_not_retried(gcp: SecretManagerEmulator, source: GcpSource) -> None:
    gcp.add_version("db", CANARY)
    gcp.deny("db")
    with pytest.raises(AuthError, match=r"secretmanager\.versions\.access' denied for resource") as info:
        call_with_retry(lambda: source.fetch("db", None), FAST_RETRY)
    assert info.value.exit_code == 77 and gcp.count() == 1
    with pytest.raises(AuthError, match=r"secretmanager\.versions\.get' denied"):
        source.current_version("db")


@pytest.mark.parametrize("status", ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "INTERNAL"])
def test_transient_statuses_end_in_69_after_the_policys_attempts(gcp: SecretManagerEmulator, source: GcpSource, status: str) -> None:
    gcp.fail_next(5, status)
    with pytest.raises(UnavailableError, match="gave up after 3 attempts") as info:
        call_with_retry(lambda: source.fetch("db", None), FAST_RETRY)
    assert type(info.value) is UnavailableError and info.value.exit_code == 69
    assert gcp.count("access") == 3


def test_recovers_after_transient_answers(gcp: SecretManagerEmulator, source: GcpSource) -> None:
    gcp.add_version("db", CANARY)
    gcp.fail_next(2, "UNAVAILABLE")
    assert call_with_retry(lambda: source.fetch("db", None), FAST_RETRY).value == CANARY
    assert gcp.count("access") == 3


def test_an_answer_without_googles_error_body_is_mapped_by_its_http_status(gcp: SecretManagerEmulator) -> None:
    import requests

    from launcher.sources.gcp.source import map_error

    def http(status: int, body: bytes) -> Exception:
        from google.api_core import exceptions

        response = requests.Response()
        response.status_code, response._content = status, body
        response.request = requests.Request("GET", "http://x/v1/projects/p/secrets/s/versions/latest:access").prepare()
        return exceptions.from_http_response(response)

    assert isinstance(map_error(http(502, b"<html>Bad Gateway</html>"), "sm://db", "proxy"), TransientError)
    assert isinstance(map_error(http(404, b"Not Found"), "sm://db", "proxy"), NotFoundError)
    assert isinstance(map_error(http(403, b""), "sm://db", "proxy"), AuthError)
    assert isinstance(map_error(http(400, b"{}"), "sm://db", "proxy"), ManifestError)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("fault", ["STALL", "DRIP"])
def test_a_stalled_or_dripping_server_ends_within_the_deadline(gcp: SecretManagerEmulator, transport: str, fault: str) -> None:
    src = open_source(gcp, transport)
    try:
        gcp.fail_next(10, fault)
        started = time.monotonic()
        with pytest.raises(UnavailableError) as info:
            call_with_retry(lambda: src.fetch("db", None), RetryConfig(attempts=5, initial_delay=0.01, deadline=1.0))
        assert time.monotonic() - started < 4  # the 1 s deadline, not five stalled attempts
        assert "retry.deadline" in str(info.value) or "timed out" in str(info.value)
    finally:
        src.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connection_refused_is_transient(gcp: SecretManagerEmulator, transport: str) -> None:
    src = open_source(gcp, transport)
    gcp.stop()
    with pytest.raises(TransientError, match=r"cannot reach \S*127\.0\.0\.1:\d+ \(connection refused\)"):
        src.fetch("db", None)
    src.close()


def test_a_refused_anonymous_caller_is_asked_once(gcp_auth: SecretManagerEmulator) -> None:
    src = open_source(gcp_auth)
    with pytest.raises(AuthError, match=r"credentials were refused .*UNAUTHENTICATED"):
        src.fetch("db", None)
    assert gcp_auth.count() == 1
    src.close()


def test_an_unknown_service_account_key_is_77_after_one_token_refresh(gcp_auth: SecretManagerEmulator, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(gcp_auth.service_account_key(tmp_path, known=False)))
    src = GcpSource(GcpSourceConfig(name="sm", endpoint=gcp_auth.url, project=PROJECT), environ={})
    with pytest.raises(AuthError, match="UNAUTHENTICATED"):
        call_with_retry(lambda: src.fetch("db", None), FAST_RETRY)
    assert [r.status for r in gcp_auth.requests] == ["UNAUTHENTICATED"] * 2  # google-auth's one refresh on a 401
    src.close()


def test_a_metadata_server_that_never_answers_is_bounded_by_the_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No key file, no gcloud file: google-auth probes the metadata server (3 tries of 3 s), on the launcher's bounded sockets."""
    import socket

    import google.cloud.secretmanager_v1  # noqa: F401  (imported before the clock starts: its import time varies with load)

    for name in [k for k in os.environ if k.startswith(("GOOGLE_", "GCE_", "CLOUDSDK_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    with socket.socket() as silent:  # listens, never accepts: connections open, answers never come
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        monkeypatch.setenv("GCE_METADATA_IP", f"127.0.0.1:{silent.getsockname()[1]}")
        src = GcpSource(GcpSourceConfig(name="gcp", project=PROJECT), environ={})
        started = time.monotonic()
        with pytest.raises(LauncherError) as info:
            call_with_retry(lambda: src.fetch("db", None), RetryConfig(attempts=3, initial_delay=0.01, deadline=1.0))
        # The deadline cuts each probe short; google-auth's own backoff sleeps between its tries (1 s, then
        # 2 s) cannot be cut, which leaves ~3 s past the deadline once per process (unbounded: 3 x 3 s more).
        assert time.monotonic() - started < 6
        assert isinstance(info.value, AuthError) and "no Google credentials" in str(info.value)
        src.close()


# -- references, endpoints, packaging --------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "version", "words"),
    [
        ("db", None, None),
        ("db/versions/3", None, None),
        ("db/versions/latest", None, None),
        ("db/versions/prod_2024", None, None),
        ("projects/my-project/secrets/db", None, None),
        ("projects/123456789012/secrets/db/versions/7", None, None),
        ("projects/example.com:app/secrets/db", None, None),
        ("projects", None, None),  # a secret called projects
        ("db", "3", "?version= is not used by gcp references: name the version in the path, gcp://db/versions/3"),
        ("db/versions/0", None, "not a version number, latest or an alias"),
        ("db/versions/", None, "not a version number"),
        ("db/v/3", None, "expected gcp://SECRET[/versions/V]"),
        ("a/b", None, "expected gcp://SECRET"),
        ("bad name!", None, "not a Secret Manager secret id"),
        ("x" * 256, None, "not a Secret Manager secret id"),
        ("projects/Bad_Project/secrets/db", None, "not a Google Cloud project id"),
        ("projects/p/secrets/db/versions", None, "expected gcp://SECRET"),
        ("projects/p/locations/europe-west1/secrets/db", None, "regional secrets"),
    ],
)
def test_reference_problem(path: str, version: str | None, words: str | None) -> None:
    problem = reference_problem(GcpSourceConfig(name="gcp"), Reference("gcp", path, "key", version))
    if words is None:
        assert problem is None
    else:
        assert problem is not None and words in problem


def test_bad_references_are_refused_before_any_request(gcp: SecretManagerEmulator, source: GcpSource) -> None:
    for path, version in (("bad name!", None), ("db", "3"), ("db/versions/0", None)):
        with pytest.raises(ManifestError) as info:
            source.fetch(path, version)
        assert info.value.exit_code == 78
    with pytest.raises(ManifestError):
        source.current_version("a/b")
    assert gcp.count() == 0


def test_endpoints_choose_the_transport_and_plain_http_carries_no_token_off_the_machine() -> None:
    def opened(endpoint: str | None, credentials: str = "default") -> GcpSource:
        return GcpSource(GcpSourceConfig(name="sm", endpoint=endpoint, credentials=credentials), environ={})

    assert (opened(None).endpoint, opened(None).grpc) == ("https://secretmanager.googleapis.com", False)
    assert opened("secretmanager.googleapis.com:443").grpc
    assert opened("[::1]:8085", "none").grpc
    assert not opened("http://127.0.0.1:8085").grpc  # a token over http to a loopback address is allowed
    assert opened("http://emulator:8085", "none").endpoint == "http://emulator:8085"
    for endpoint, words in (("http://emulator:8085", "plain http"), ("ftp://x", "neither"), ("host name:1", "neither"),
                            ("https://", "has no host")):
        with pytest.raises(ManifestError, match=words) as info:
            opened(endpoint)
        assert info.value.exit_code == 78


def test_deadline_module_bounds_a_check_too(gcp: SecretManagerEmulator, source: GcpSource) -> None:
    gcp.add_version("db", CANARY)
    gcp.fail_next(1, "STALL", kind="get")
    started = time.monotonic()
    with pytest.raises(TransientError), deadline.bound(0.5):
        source.current_version("db")
    assert time.monotonic() - started < 5  # the 0.5 s bound, not the stall
