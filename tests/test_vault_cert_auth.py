"""Login by TLS client certificate (``auth: {method: cert}``) against a private OpenBao with TLS listeners.

OpenBao runs with two TLS listeners of its own (certificates made with trustme), both
with the client CA: one that asks for a client certificate (the ``cert`` auth method
checks it), and one that requires a certificate signed by the client CA in the handshake
itself. The source's one pool presents the certificate on every request, so on the
second listener every request (mount detection, reads, renewals) proves it. That one
speaks TLS 1.2 at most: in TLS 1.3 the client's handshake is over before the server
checks its certificate, and the server's refusal (an alert, then the connection closed)
may reach the client as a closed connection; in TLS 1.2 it always arrives as the alert. A good certificate logs in and reads; one of
another CA or an expired one is 77 on either listener; the token is renewed and replaced
by a new login as for the other methods.
"""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import trustme

from launcher.clock import Clock
from launcher.errors import AuthError
from launcher.sources.vault import TlsConfig, VaultAuth, VaultSourceConfig
from launcher.sources.vault.source import VaultSource
from tests.fakes import ManualClock
from tests.helpers import free_port, launcher_env, run_launcher, wait_for
from tests.openbao import OpenBao, running_openbao, write_kv2

pytestmark = pytest.mark.vault


@dataclass
class Setup:
    server: OpenBao
    asks: str  # https address of the listener that asks for a client certificate
    requires: str  # ... of the one that requires one signed by the client CA
    ca: Path  # the CA of both listeners' server certificate
    dir: Path
    value: str


def _listening(address: str) -> bool:
    host, port = address.rsplit("//", 1)[1].split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("openbao-cert")
    server_ca, client_ca = trustme.CA(), trustme.CA()
    server_ca.cert_pem.write_to_path(str(work / "ca.pem"))
    client_ca.cert_pem.write_to_path(str(work / "client-ca.pem"))
    leaf = server_ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(work / "server.crt"))
    leaf.private_key_pem.write_to_path(str(work / "server.key"))
    now = datetime.now(timezone.utc)
    for name, ca, kw in (("good", client_ca, {}), ("other", trustme.CA(), {}),
                         ("expired", client_ca, {"not_before": now - timedelta(days=2), "not_after": now - timedelta(days=1)})):
        cert = ca.issue_cert("app-client", common_name="app-client", **kw)  # type: ignore[arg-type]
        cert.cert_chain_pems[0].write_to_path(str(work / f"{name}.crt"))
        cert.private_key_pem.write_to_path(str(work / f"{name}.key"))
    asks, requires = free_port(), free_port()
    tls = f'tls_cert_file = "{work}/server.crt"\n  tls_key_file = "{work}/server.key"\n'
    tls += f'  tls_client_ca_file = "{work}/client-ca.pem"\n'
    config = (f'listener "tcp" {{\n  address = "127.0.0.1:{asks}"\n  {tls}}}\n'
              f'listener "tcp" {{\n  address = "127.0.0.1:{requires}"\n  {tls}'
              '  tls_require_and_verify_client_cert = true\n  tls_max_version = "tls12"\n}\n')
    with running_openbao(work, config=config) as server:
        s = Setup(server, f"https://127.0.0.1:{asks}", f"https://127.0.0.1:{requires}", work / "ca.pem", work,
                  f"canary-cert-{secrets.token_hex(6)}")
        wait_for(lambda: _listening(s.asks) and _listening(s.requires), what="the TLS listeners")
        write_kv2(server, "app/db", {"password": s.value})
        server.policy("reader", 'path "secret/data/app/*" { capabilities = ["read"] }')
        server.client.sys.enable_auth_method("cert")
        server.client.write("auth/cert/certs/app", display_name="app", policies="reader", ttl="1h",
                            certificate=(work / "client-ca.pem").read_text())
        yield s


def run(setup: Setup, tmp: Path, address: str, cert: str, extra: str = "") -> tuple[int, str, str]:
    manifest = tmp / "launcher.yaml"
    manifest.write_text(
        f"version: 1\nsources:\n  bao:\n    type: vault\n    address: {address}\n    tls: {{ca_cert: {setup.ca}}}\n"
        f"    auth: {{method: cert, cert_file: {setup.dir}/{cert}.crt, key_file: {setup.dir}/{cert}.key, name: app{extra}}}\n"
        "env:\n  X: bao://secret/app/db#password\n"
        "retry: {attempts: 3, initial_delay: 10ms, deadline: 5s}\n")
    # No VAULT_TOKEN: the certificate is the only credential.
    proc = run_launcher(["env", "-m", str(manifest), "--format", "json"], env=launcher_env({"HOME": str(tmp)}))
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("listener", ["asks", "requires"])
def test_a_good_certificate_logs_in_and_reads(setup: Setup, tmp_path: Path, listener: str) -> None:
    code, out, err = run(setup, tmp_path, getattr(setup, listener), "good")
    assert code == 0, err
    assert json.loads(out) == {"X": setup.value}


@pytest.mark.parametrize("listener", ["asks", "requires"])
@pytest.mark.parametrize(("cert", "words"), [("other", "not signed by a CA it trusts"), ("expired", "expired")])
def test_a_wrong_or_expired_certificate_is_77(setup: Setup, tmp_path: Path, listener: str, cert: str, words: str) -> None:
    code, out, err = run(setup, tmp_path, getattr(setup, listener), cert)
    assert code == 77, err
    assert "gave up" not in err and "Traceback" not in err  # not retried: a refusal, not an outage
    if listener == "requires":
        assert f"refused the TLS client certificate ({words}" in err
    else:
        assert "cert login" in err and ("login rejected" in err or "does not verify (expired" in err)
    assert setup.value not in out + err


def test_the_role_name_is_optional(setup: Setup, tmp_path: Path) -> None:
    code, _, err = run(setup, tmp_path, setup.asks, "good")
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text(manifest.read_text().replace(", name: app", ""))
    proc = run_launcher(["env", "-m", str(manifest), "--format", "json"], env=launcher_env({"HOME": str(tmp_path)}))
    assert code == 0 and proc.returncode == 0, err + proc.stderr
    assert json.loads(proc.stdout) == {"X": setup.value}


@pytest.mark.parametrize(
    ("auth", "tls", "words"),
    [
        ("{method: cert, key_file: /x.key}", "", "auth.cert_file: missing (cert needs cert_file and key_file)"),
        ("{method: cert, cert_file: ./c.crt}", "", "auth.key_file: missing"),
        ("{method: cert, cert_file: ./nope.crt, key_file: ./nope.key}", "", "nope.crt does not exist"),
        ("{method: cert, cert_file: ./c.crt, key_file: ./c.key}", "{client_cert: ./other.crt}",
         "tls.client_cert and auth.cert_file differ"),
        ("{method: token, cert_file: ./c.crt}", "", "cert_file"),
    ],
)
def test_cert_settings_that_cannot_work_are_78(tmp_path: Path, auth: str, tls: str, words: str) -> None:
    for name in ("c.crt", "c.key", "other.crt"):
        (tmp_path / name).write_text("placeholder")
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text(f"version: 1\nsources:\n  bao:\n    type: vault\n    address: https://127.0.0.1:1\n    auth: {auth}\n"
                        + (f"    tls: {tls}\n" if tls else "") + "env:\n  X: bao://secret/app/db#password\n")
    proc = run_launcher(["check", "-m", str(manifest)], env=launcher_env({"HOME": str(tmp_path)}), cwd=tmp_path)
    assert proc.returncode == 78, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr


def source_for(setup: Setup, cert: str, clock: ManualClock | None = None, role: str = "app") -> VaultSource:
    """A source on the listener that requires the client certificate in the handshake."""
    auth = VaultAuth(method="cert", cert_file=f"{setup.dir}/{cert}.crt", key_file=f"{setup.dir}/{cert}.key", name=role)
    config = VaultSourceConfig(name="bao", address=setup.requires, auth=auth, tls=TlsConfig(ca_cert=str(setup.ca)))
    return VaultSource(config, environ={}, clock=Clock(monotonic=clock) if clock else Clock())


def test_the_token_is_renewed_at_two_thirds_of_its_ttl(setup: Setup) -> None:
    setup.server.client.write("auth/cert/certs/renew", display_name="renew", policies="reader", ttl="60s",
                              certificate=(setup.dir / "client-ca.pem").read_text())
    clock = ManualClock()
    source = source_for(setup, "good", clock, role="renew")
    try:
        assert source.fetch("secret/app/db", None).fields == {"password": setup.value}
        renewals = setup.server.requests_to("auth/token/renew-self")
        source.maintain_token()  # too early: nothing happens
        clock.now += 41  # past 2/3 of 60 s
        source.maintain_token()
        assert setup.server.requests_to("auth/token/renew-self") == renewals + 1
        assert source.token_ttl() == pytest.approx(60, abs=2)
    finally:
        source.close()


def test_a_token_near_its_max_ttl_is_replaced_by_a_new_login(setup: Setup) -> None:
    # Real time: the server caps the renewal at the max TTL (3 s), which is what the source reacts to.
    setup.server.client.write("auth/cert/certs/short", display_name="short", policies="reader", ttl="2s", max_ttl="3s",
                              certificate=(setup.dir / "client-ca.pem").read_text())
    source = source_for(setup, "good", role="short")
    logins = "auth/cert/login"
    try:
        before = setup.server.requests_to(logins)
        source.maintain_token()  # logs in
        assert setup.server.requests_to(logins) == before + 1

        def relogged() -> bool:
            source.maintain_token()
            return setup.server.requests_to(logins) == before + 2

        wait_for(relogged, timeout=10, interval=0.1, what="a second cert login")
        assert source.fetch("secret/app/db", None).fields == {"password": setup.value}
    finally:
        source.close()


def test_a_refused_certificate_is_an_auth_error_at_once(setup: Setup) -> None:
    source = source_for(setup, "other")
    try:
        with pytest.raises(AuthError, match="refused the TLS client certificate"):
            source.fetch("secret/app/db", None)
    finally:
        source.close()
