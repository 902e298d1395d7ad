"""Where a vault source's address, namespace and TLS settings come from (no server needed)."""

from __future__ import annotations

import pytest

from launcher.config import TlsConfig, VaultSourceConfig
from launcher.errors import ManifestError
from launcher.sources.vault import connection_settings

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


@pytest.mark.parametrize(("fields", "environ", "expected"), CASES)
def test_settings_table(fields: dict[str, object], environ: dict[str, str], expected: tuple[object, ...]) -> None:
    conn = connection_settings(VaultSourceConfig(name="vault", **fields), environ)  # type: ignore[arg-type]
    assert (conn.address, conn.namespace, conn.verify, conn.cert) == expected


@pytest.mark.parametrize("environ", [{}, {"VAULT_ADDR": ""}, {**ADDR, "VAULT_SKIP_VERIFY": "maybe"}])
def test_invalid_settings_are_78(environ: dict[str, str]) -> None:
    with pytest.raises(ManifestError):
        connection_settings(VaultSourceConfig(name="vault"), environ)


def test_file_only_run_does_not_import_hvac() -> None:
    import subprocess
    import sys

    code = "import sys, launcher.cli, launcher.resolver, launcher.sources.file; print('hvac' in sys.modules, 'requests' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "False"


@pytest.mark.parametrize(("verify", "expected"), [(True, "certifi"), ("/etc/my-ca.pem", "/etc/my-ca.pem"), (False, False)])
def test_reads_and_logins_trust_the_same_roots(monkeypatch: pytest.MonkeyPatch, verify: bool | str, expected: object) -> None:
    import certifi

    from launcher.sources.vault import open_client
    from launcher.sources.vault_http import Connection, trusted_roots

    # requests would swap this in for verify=True; an explicit path keeps hvac on our roots.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/somewhere/else.pem")
    conn = Connection("https://vault.example:8200", None, verify, None)
    want = certifi.where() if expected == "certifi" else expected
    assert trusted_roots(conn) == want
    client = open_client(conn)
    assert client.session.verify == want
    client.adapter.close()
