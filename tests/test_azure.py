"""The Azure Key Vault source, in process, against the HTTPS emulator and the real SDK."""

from __future__ import annotations

import ssl
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from azure.identity import (
    AzureCliCredential,
    ClientSecretCredential,
    DefaultAzureCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)

from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError, TransientError
from launcher.sources.azure.config import AzureSourceConfig, AzureTls, locate
from launcher.sources.azure.credentials import authority_options, build_credential
from launcher.sources.azure.source import AzureSource
from launcher.sources.azure.transport import transport_options
from tests.keyvault_emulator import KeyVaultEmulator

CANARY = "value-CANARY-7d1f"


def config_for(kv: KeyVaultEmulator, **overrides: Any) -> AzureSourceConfig:
    base = AzureSourceConfig(
        name="corp", vault_url=kv.url + "/", credential="client_secret", tenant_id=kv.tenant_id, client_id=kv.client_id,
        authority=kv.url, tls=AzureTls(ca_cert=str(kv.ca_file)), verify_challenge_resource=False,
    )
    return replace(base, **overrides)


def open_source(kv: KeyVaultEmulator, secret: str | None = None, **overrides: Any) -> AzureSource:
    env = {"AZURE_CLIENT_SECRET": secret or kv.client_secret}
    return AzureSource(config_for(kv, **overrides), environ=env, connection_timeout=2, read_timeout=0.5)


@pytest.fixture
def source(keyvault: KeyVaultEmulator) -> Any:
    src = open_source(keyvault)
    yield src
    src.close()


def test_latest_pinned_and_rotation(keyvault: KeyVaultEmulator, source: AzureSource) -> None:
    v1 = keyvault.set_secret("api-key", "first-" + CANARY)
    assert source.fetch("api-key", None).value == "first-" + CANARY
    assert source.current_version("api-key") == v1
    v2 = keyvault.set_secret("api-key", "second")
    latest = source.fetch("api-key", None)
    assert (latest.value, latest.version) == ("second", v2)
    pinned = source.fetch("api-key", v1)
    assert (pinned.value, pinned.version) == ("first-" + CANARY, v1)
    assert source.current_version("api-key") == v2
    assert CANARY not in repr(pinned)
    # The token is fetched once; then one authorized GET per read (no extra round trips).
    assert keyvault.count("token") == 1
    assert sum(1 for r in keyvault.requests if r.scope == "vault" and r.authorized) == 5


def test_json_value_and_empty_value(keyvault: KeyVaultEmulator, source: AzureSource) -> None:
    keyvault.set_secret("db", '{"user": "app", "password": "' + CANARY + '"}')
    keyvault.set_secret("empty", "")
    assert source.fetch("db", None).value == '{"user": "app", "password": "' + CANARY + '"}'
    assert source.fetch("empty", None).value == ""


def _fault(kind: str) -> Any:
    """Arrange one failure on the emulator; return what the request log should show."""

    def arrange(kv: KeyVaultEmulator) -> None:
        kv.set_secret("api-key", CANARY)
        if kind == "disabled":
            kv.set_enabled("api-key", kv.set_secret("api-key", CANARY + "2"), enabled=False)
        elif kind == "forbidden":
            kv.fail_next(5, 403, code="Forbidden", inner="AccessDenied")
        elif kind == "throttled":
            kv.fail_next(5, 429)
        elif kind == "server-error":
            kv.fail_next(5, 503)
        elif kind == "bad-request":
            kv.fail_next(5, 400, code="BadParameter")
        elif kind == "token-503":
            kv.fail_next(5, 503, scope="token")
        elif kind == "stall":
            kv.fail_next(1, 0)

    return arrange


ERROR_CASES = [
    # kind, secret name, version, error, words in the message
    ("missing", "nope", None, NotFoundError, "secret not found"),
    ("missing-version", "api-key", "0123456789abcdef0123456789abcdef", NotFoundError, "version not found"),
    ("disabled", "api-key", None, NotFoundError, "disabled"),
    ("forbidden", "api-key", None, AuthError, "403 AccessDenied"),
    ("throttled", "api-key", None, TransientError, "429 Throttled"),
    ("server-error", "api-key", None, TransientError, "503"),
    ("bad-request", "api-key", None, ManifestError, "400 BadParameter"),
    ("token-503", "api-key", None, TransientError, "token endpoint answered 503"),
    ("stall", "api-key", None, TransientError, "timed out after"),
]


@pytest.mark.parametrize(("kind", "name", "version", "error", "words"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors_are_mapped_once(keyvault: KeyVaultEmulator, source: AzureSource, kind: str, name: str,
                                version: str | None, error: type[LauncherError], words: str) -> None:
    _fault(kind)(keyvault)
    with pytest.raises(error) as info:
        source.fetch(name, version)
    assert type(info.value) is error
    assert words in str(info.value)
    assert f"corp://{name}" in str(info.value)
    for text in (str(info.value), repr(info.value)):
        assert CANARY not in text and keyvault.client_secret not in text
    # retry_total=0: the SDK sent each request once and left retrying to us.
    failed = [r for r in keyvault.requests if r.status not in (200, 401)]
    assert len(failed) <= 1


def test_wrong_client_secret_is_auth_error_and_not_echoed(keyvault: KeyVaultEmulator) -> None:
    keyvault.set_secret("api-key", CANARY)
    wrong = "wrong-secret-CANARY-91aa"
    src = open_source(keyvault, secret=wrong)
    try:
        with pytest.raises(AuthError, match="AADSTS7000215") as info:
            src.fetch("api-key", None)
    finally:
        src.close()
    assert wrong not in str(info.value) and CANARY not in str(info.value)
    assert keyvault.count("token") == 1  # refused once, not retried by the SDK


def test_unreachable_vault_is_transient(keyvault: KeyVaultEmulator) -> None:
    src = open_source(keyvault)
    keyvault.stop()
    try:
        with pytest.raises(TransientError, match="cannot reach"):
            src.fetch("api-key", None)
    finally:
        src.close()


def test_workload_identity(keyvault: KeyVaultEmulator, tmp_path: Path) -> None:
    keyvault.set_secret("api-key", CANARY)
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(keyvault.federated_token)
    env = {"AZURE_TENANT_ID": keyvault.tenant_id, "AZURE_CLIENT_ID": keyvault.client_id, "AZURE_FEDERATED_TOKEN_FILE": str(token_file)}
    cfg = config_for(keyvault, credential="workload_identity", tenant_id=None, client_id=None)
    src = AzureSource(cfg, environ=env)
    try:
        assert src.fetch("api-key", None).value == CANARY
    finally:
        src.close()


def test_default_credential_from_environment(keyvault: KeyVaultEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    keyvault.set_secret("api-key", CANARY)
    for name, value in keyvault.env().items():  # EnvironmentCredential reads os.environ itself
        monkeypatch.setenv(name, value)
    src = AzureSource(config_for(keyvault, credential="default", tenant_id=None, client_id=None, authority=None))
    try:
        assert src.fetch("api-key", None).value == CANARY
    finally:
        src.close()


def test_concurrent_fetches_share_one_client(keyvault: KeyVaultEmulator, source: AzureSource) -> None:
    names = [f"s{i}" for i in range(12)]
    for name in names:
        keyvault.set_secret(name, f"{name}-value")
    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(lambda n: source.fetch(n, None).value, names))
    assert values == [f"{n}-value" for n in names]
    assert len(source._clients) == 1


class FakeClient:
    def __init__(self, url: str) -> None:
        self.url = url
        self.closed = False

    def get_secret(self, name: str, version: str | None = None) -> Any:
        return SimpleNamespace(value=f"{self.url}/{name}", properties=SimpleNamespace(version=version or "latest"))

    def close(self) -> None:
        self.closed = True


def test_builtin_source_one_client_per_vault_under_threads() -> None:
    made: list[FakeClient] = []
    lock = threading.Lock()

    def factory(url: str) -> FakeClient:
        with lock:
            made.append(FakeClient(url))
            return made[-1]

    src = AzureSource(AzureSourceConfig(name="azure"), client_factory=factory)
    paths = ["vault-a/one", "vault-b/two", "Vault-A/three"] * 20
    with ThreadPoolExecutor(16) as pool:
        values = list(pool.map(lambda p: src.fetch(p, None).value, paths))
    assert values[:3] == ["https://vault-a.vault.azure.net/one", "https://vault-b.vault.azure.net/two", "https://vault-a.vault.azure.net/three"]
    assert sorted(c.url for c in made) == ["https://vault-a.vault.azure.net", "https://vault-b.vault.azure.net"]
    src.close()
    assert all(c.closed for c in made)


@pytest.mark.parametrize(
    ("vault_url", "path", "expected"),
    [
        (None, "corp-kv/api-key", ("https://corp-kv.vault.azure.net", "api-key")),
        ("https://kv.vault.usgovcloudapi.net/", "db-password", ("https://kv.vault.usgovcloudapi.net", "db-password")),
        (None, "corp-kv", ManifestError),  # no secret name
        (None, "kv/api-key", ("https://kv.vault.azure.net", "api-key")),  # short names: Azure itself refuses them
        (None, "-kv/api-key", ManifestError),  # not a DNS label
        (None, "corp-kv/a/b", ManifestError),
        ("https://kv.vault.azure.net", "app/db", ManifestError),  # Vault-style path on Azure
        ("https://kv.vault.azure.net", "under_score", ManifestError),
    ],
)
def test_locate(vault_url: str | None, path: str, expected: Any) -> None:
    cfg = AzureSourceConfig(name="corp" if vault_url else "azure", vault_url=vault_url)
    if isinstance(expected, tuple):
        assert locate(cfg, path) == expected
    else:
        with pytest.raises(expected):
            locate(cfg, path)


def test_bad_version_is_manifest_error() -> None:
    src = AzureSource(AzureSourceConfig(name="corp", vault_url="https://kv.vault.azure.net"), client_factory=FakeClient)
    with pytest.raises(ManifestError, match="version"):
        src.fetch("api-key", "v1/../x")


ENV = {"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s", "AZURE_FEDERATED_TOKEN_FILE": "/f"}


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("default", DefaultAzureCredential),
        ("managed_identity", ManagedIdentityCredential),
        ("workload_identity", WorkloadIdentityCredential),
        ("client_secret", ClientSecretCredential),
        ("cli", AzureCliCredential),
    ],
)
def test_credential_kinds(kind: str, expected: type) -> None:
    credential = build_credential(AzureSourceConfig(name="corp", vault_url="https://kv.vault.azure.net", credential=kind), ENV)
    assert isinstance(credential, expected)
    if hasattr(credential, "close"):
        credential.close()


@pytest.mark.parametrize(
    ("kind", "drop", "words"),
    [
        ("client_secret", "AZURE_CLIENT_SECRET", "no client secret"),
        ("client_secret", "AZURE_TENANT_ID", "tenant_id"),
        ("workload_identity", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_FEDERATED_TOKEN_FILE"),
    ],
)
def test_missing_credential_material_is_auth_error(kind: str, drop: str, words: str) -> None:
    env = {k: v for k, v in ENV.items() if k != drop}
    with pytest.raises(AuthError, match=words):
        build_credential(AzureSourceConfig(name="corp", vault_url="https://kv.vault.azure.net", credential=kind), env)


def test_client_secret_file(tmp_path: Path) -> None:
    missing = AzureSourceConfig(name="corp", credential="client_secret", client_secret_file=str(tmp_path / "none"))
    with pytest.raises(AuthError, match="cannot read client_secret_file"):
        build_credential(missing, ENV)
    (tmp_path / "secret").write_text("from-file\n")
    credential = build_credential(replace(missing, client_secret_file=str(tmp_path / "secret")), ENV)
    assert isinstance(credential, ClientSecretCredential)
    credential.close()


@pytest.mark.parametrize(
    ("authority", "environ", "expected"),
    [
        (None, {}, {}),
        (None, {"AZURE_AUTHORITY_HOST": "login.microsoftonline.us"}, {"authority": "login.microsoftonline.us"}),
        ("https://login.chinacloudapi.cn", {}, {"authority": "https://login.chinacloudapi.cn"}),
        ("https://adfs.corp.example", {"AZURE_AUTHORITY_HOST": "x"},
         {"authority": "https://adfs.corp.example", "disable_instance_discovery": True}),
        (None, {"AZURE_AUTHORITY_HOST": "https://127.0.0.1:8443"},
         {"authority": "https://127.0.0.1:8443", "disable_instance_discovery": True}),
    ],
)
def test_authority_options(authority: str | None, environ: dict[str, str], expected: dict[str, Any]) -> None:
    assert authority_options(AzureSourceConfig(name="corp", authority=authority), environ) == expected


def test_transport_options_turn_sdk_retries_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import certifi
    import trustme

    ca = tmp_path / "extra-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where a bundle file would have gone
    options = transport_options(AzureSourceConfig(name="corp", tls=AzureTls(ca_cert=str(ca))))
    assert options["retry_total"] == 0
    assert options["connection_timeout"] <= 10 and options["read_timeout"] <= 30
    context = options["transport"].ssl_context
    roots = ssl.create_default_context(cafile=certifi.where()).cert_store_stats()["x509_ca"]
    assert context.cert_store_stats()["x509_ca"] == roots + 1, "the extra CA, in addition to the usual roots"
    assert list(scratch.iterdir()) == [], "held in memory: nothing is left behind by exec"
    assert options["transport"].ssl_context is not None
    assert transport_options(AzureSourceConfig(name="corp"))["transport"].ssl_context is None


def test_an_unreadable_ca_cert_is_78(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nEXTRA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ManifestError, match="cannot be read as PEM"):
        transport_options(AzureSourceConfig(name="corp", tls=AzureTls(ca_cert=str(bad))))
    with pytest.raises(ManifestError, match="does not exist"):
        transport_options(AzureSourceConfig(name="corp", tls=AzureTls(ca_cert=str(tmp_path / "nope.pem"))))