"""Where a vault source's address, namespace and TLS settings come from (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.errors import ManifestError
from launcher.sources.vault import TlsConfig, VaultSourceConfig
from launcher.sources.vault.connection import connection_settings

ADDR = {"VAULT_ADDR": "https://vault.example:8200/"}
CERTS = {"VAULT_CLIENT_CERT": "/c.pem", "VAULT_CLIENT_KEY": "/k.pem"}

# (manifest fields, environment, expected (address, namespace, verify, cert))
CASES = [
    ({}, ADDR, ("https://vault.example:8200", None, True, None)),
    ({"address": "https://other:8200"}, ADDR, ("https://other:8200", None, True, None)),
    ({"namespace": "team-a"}, {**ADDR, "VAULT_NAMESPACE": "ignored"}, ("https://vault.example:8200", "team-a", True, None)),
    ({}, {**ADDR, "VAULT_NAMESPACE": "team-b"}, ("https://vault.example:8200", "team-b", True, None)),
    ({}, {**ADDR, "VAULT_CACERT": "/ca.pem", "VAULT_CAPATH": "/cadir"}, ("https://vault.example:8200", None, "/ca.pem", None)),
    ({}, {**ADDR, "VAULT_CAPATH": "/cadir"}, ("https://vault.example:8200", None, "/cadir", None)),
    ({"tls": TlsConfig(ca_path="/mine")}, {**ADDR, "VAULT_CACERT": "/ca.pem"}, ("https://vault.example:8200", None, "/mine", None)),
    ({}, {**ADDR, "VAULT_SKIP_VERIFY": "true"}, ("https://vault.example:8200", None, False, None)),
    ({"tls": TlsConfig(skip_verify=False)}, {**ADDR, "VAULT_SKIP_VERIFY": "1"}, ("https://vault.example:8200", None, True, None)),
    ({}, {**ADDR, **CERTS}, ("https://vault.example:8200", None, True, ("/c.pem", "/k.pem"))),
    ({"tls": TlsConfig(client_cert="/both.pem")}, ADDR, ("https://vault.example:8200", None, True, "/both.pem")),
]


# OpenBao's own names: honoured like Vault's, and a VAULT_* name wins when both are set (docs/guides/vault.md).
BAO_CASES = [
    ({}, {"BAO_ADDR": "http://bao:8200"}, ("http://bao:8200", None, True, None)),
    ({}, {"BAO_ADDR": "http://bao:8200", "VAULT_ADDR": "http://vault:8200"}, ("http://vault:8200", None, True, None)),
    ({}, {**ADDR, "BAO_NAMESPACE": "ns"}, ("https://vault.example:8200", "ns", True, None)),
    ({}, {**ADDR, "BAO_CACERT": "/bao-ca.pem"}, ("https://vault.example:8200", None, "/bao-ca.pem", None)),
    ({}, {**ADDR, "BAO_CACERT": "/bao-ca.pem", "VAULT_CACERT": "/ca.pem"}, ("https://vault.example:8200", None, "/ca.pem", None)),
    ({}, {**ADDR, "BAO_CAPATH": "/cadir"}, ("https://vault.example:8200", None, "/cadir", None)),
    ({}, {**ADDR, "BAO_SKIP_VERIFY": "true"}, ("https://vault.example:8200", None, False, None)),
    ({}, {**ADDR, "BAO_CLIENT_CERT": "/c.pem", "BAO_CLIENT_KEY": "/k.pem"},
     ("https://vault.example:8200", None, True, ("/c.pem", "/k.pem"))),
]


def _real_files(value: object, root: Path) -> object:
    """Paths in the tables become real files (or a directory) under ``root``: missing ones are 78."""
    if isinstance(value, str) and value.startswith("/"):
        path = root / value.lstrip("/")
        if not path.exists():
            if value.endswith(("dir", "mine")):
                path.mkdir()
            else:
                path.write_text("x")
        return str(path)
    if isinstance(value, tuple):
        return tuple(_real_files(v, root) for v in value)
    if isinstance(value, TlsConfig):
        return TlsConfig(**{k: _real_files(v, root) for k, v in vars(value).items()})
    return value


@pytest.mark.parametrize(("fields", "environ", "expected"), CASES + BAO_CASES)
def test_settings_table(fields: dict[str, object], environ: dict[str, str], expected: tuple[object, ...], tmp_path: Path) -> None:
    fields = {k: _real_files(v, tmp_path) for k, v in fields.items()}
    environ = {k: str(_real_files(v, tmp_path)) for k, v in environ.items()}
    expected = tuple(_real_files(v, tmp_path) for v in expected)
    conn = connection_settings(VaultSourceConfig(name="vault", **fields), environ)  # type: ignore[arg-type]
    assert (conn.address, conn.namespace, conn.verify, conn.cert) == expected


@pytest.mark.parametrize(("fields", "environ", "says"), [
    ({}, {}, "no Vault address"),
    ({}, {"VAULT_ADDR": ""}, "no Vault address"),
    ({}, {**ADDR, "VAULT_SKIP_VERIFY": "maybe"}, "VAULT_SKIP_VERIFY must be true or false"),
    ({}, {"VAULT_ADDR": "127.0.0.1:8200"}, "VAULT_ADDR: '127.0.0.1:8200' needs http:// or https://"),
    ({}, {"BAO_ADDR": "vault.example"}, "BAO_ADDR: 'vault.example' needs http:// or https://"),
    ({"address": "http://[::1"}, {}, "sources.vault.address: 'http://[::1' is not a valid URL"),
    ({"address": "http://vault:99999"}, {}, "is not a valid URL"),
    ({}, {**ADDR, "VAULT_CACERT": "/nonexistent.pem"}, "VAULT_CACERT: /nonexistent.pem does not exist"),
    ({"tls": TlsConfig(ca_cert="/nonexistent.pem")}, ADDR, "tls.ca_cert: /nonexistent.pem does not exist"),
    ({}, {**ADDR, "VAULT_CLIENT_CERT": "/nope.pem"}, "VAULT_CLIENT_CERT: /nope.pem does not exist"),
    ({"namespace": "a\nb"}, ADDR, "namespace holds a control character"),
])
def test_settings_that_cannot_work_are_78(fields: dict[str, object], environ: dict[str, str], says: str) -> None:
    with pytest.raises(ManifestError) as info:
        connection_settings(VaultSourceConfig(name="vault", **fields), environ)  # type: ignore[arg-type]
    assert says in str(info.value) and "\n" not in str(info.value)


def test_file_only_run_does_not_import_hvac() -> None:
    import subprocess
    import sys

    code = ("import sys, launcher.cli, launcher.resolve.resolver, launcher.sources.file; "
            "print('hvac' in sys.modules, 'requests' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "False"


@pytest.mark.parametrize(("verify", "expected"), [(True, None), ("/etc/my-ca.pem", "/etc/my-ca.pem"), (False, False)])
def test_reads_and_logins_go_through_one_pool(monkeypatch: pytest.MonkeyPatch, verify: bool | str, expected: object) -> None:
    from launcher.sources.vault.adapter import PoolAdapter, open_client
    from launcher.sources.vault.connection import Connection
    from launcher.sources.vault.http import VaultHTTP

    # requests would swap this in for verify=True; nothing of the source goes through requests.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/somewhere/else.pem")
    conn = Connection("http://vault.example:8200", None, verify, None)
    assert conn.roots == expected  # None: certifi's roots, as every Python client's default
    http = VaultHTTP(conn)
    client = open_client(http)
    # hvac's logins, renewals and lease calls are sent by the source's own VaultHTTP: one pool, one TLS setup.
    assert isinstance(client.adapter, PoolAdapter) and client.adapter._http is http
    http.close()