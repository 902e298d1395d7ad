"""The vault source's read transport (``vault_http``): real OpenBao, real sockets.

Reads go through urllib3, logins and lease operations through hvac; these tests
pin what that split must not change: the same errors, the proxy variables, a
standby's redirect, and hvac staying unimported when only reads happen.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError, TransientError, UnavailableError
from launcher.sources.vault import VaultSourceConfig
from launcher.sources.vault.connection import Connection
from launcher.sources.vault.http import VaultHTTP, from_transport
from launcher.sources.vault.source import VaultSource
from tests.openbao import OpenBao, write_kv2
from tests.tcp_proxy import tcp_proxy

pytestmark = pytest.mark.vault


class Canned(http.server.ThreadingHTTPServer):
    """Answers every GET with one canned status, headers and body."""

    daemon_threads = True

    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.extra = status, body, headers or {}
        self.tokens: list[str | None] = []
        super().__init__(("127.0.0.1", 0), _CannedHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _CannedHandler(http.server.BaseHTTPRequestHandler):
    server: Canned

    def do_GET(self) -> None:
        self.server.tokens.append(self.headers.get("X-Vault-Token"))
        self.send_response(self.server.status)
        location = self.server.extra.get("Location")
        for name, value in {**self.server.extra, "Content-Length": str(len(self.server.body))}.items():
            self.send_header(name, value + self.path if name == "Location" and location else value)
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def canned() -> Iterator[list[Canned]]:
    servers: list[Canned] = []
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def source(addr: str, token: str = "t") -> VaultSource:
    return VaultSource(VaultSourceConfig(name="vault"), environ={"VAULT_ADDR": addr, "VAULT_TOKEN": token})


@pytest.mark.parametrize(("status", "body", "raised", "says"), [
    (200, b"<html>a captive portal</html>", TransientError, "not Vault's"),
    (200, b"", TransientError, "not Vault's"),
    (200, b"[1, 2]", TransientError, "not Vault's"),
    (204, b"", NotFoundError, "not found"),  # no mount in the answer (a proxy's): guessed, then the reads say
    (200, b'{"request_id": "x"}', NotFoundError, "not found"),  # JSON without data: the same, never a crash (70)
    (400, b'{"errors": ["invalid parameter version"]}', ManifestError, "invalid parameter version"),
    (403, b'{"errors": ["permission denied"]}', AuthError, "permission denied (403)"),
    (404, b"", NotFoundError, "not found"),
    (405, b"", ManifestError, "cannot be read (405)"),
    (502, b"bad gateway", TransientError, "HTTP 502"),
])
def test_answers_map_to_exit_codes(canned: list[Canned], status: int, body: bytes, raised: type[LauncherError], says: str) -> None:
    server = Canned(status, body, {"Content-Type": "application/json"})
    canned.append(server)
    src = source(server.url)
    try:
        with pytest.raises(raised, match=r"^vault://secret/app/db: ") as info:
            src.fetch("secret/app/db", None)
        assert says in info.value.message
    finally:
        src.close()


def test_reads_carry_the_token_and_follow_a_standby_redirect(openbao: OpenBao, canned: list[Canned]) -> None:
    base = openbao.unique("standby")
    write_kv2(openbao, f"{base}/db", {"password": "from-the-active-node"})
    standby = Canned(307, headers={"Location": openbao.addr})  # Location + the requested path
    canned.append(standby)
    src = source(standby.url, openbao.token)
    try:
        secret = src.fetch(f"secret/{base}/db", None)
    finally:
        src.close()
    assert secret.fields == {"password": "from-the-active-node"}
    assert standby.tokens and set(standby.tokens) == {openbao.token}


def test_reads_use_the_proxy_from_the_environment_unless_no_proxy(openbao: OpenBao, monkeypatch: pytest.MonkeyPatch) -> None:
    base = openbao.unique("proxy")
    write_kv2(openbao, f"{base}/db", {"password": "through-the-proxy"})
    host, port = openbao.addr.removeprefix("http://").split(":")
    # A raw forwarder works as an HTTP proxy here: OpenBao accepts the absolute-form request line.
    with tcp_proxy(host, int(port)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.addr)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        src = source(openbao.addr, openbao.token)
        try:
            assert src.fetch(f"secret/{base}/db", None).fields == {"password": "through-the-proxy"}
        finally:
            src.close()
        assert proxy.accepted >= 1
        seen = proxy.accepted
        monkeypatch.setenv("NO_PROXY", f"example.org,{host}")
        src = source(openbao.addr, openbao.token)
        try:
            assert src.fetch(f"secret/{base}/db", None).fields == {"password": "through-the-proxy"}
        finally:
            src.close()
        assert proxy.accepted == seen


def test_a_socks_proxy_is_78(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(ManifestError, match="only http:// and https:// proxies"):
        source("https://vault.example:8200")


REFUSED = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
TRANSPORT = [
    (urllib3.exceptions.MaxRetryError(None, "/v1/x", REFUSED), TransientError, "cannot connect"),  # type: ignore[arg-type]
    (urllib3.exceptions.ConnectTimeoutError("connect timed out"), TransientError, "timed out"),
    (urllib3.exceptions.ReadTimeoutError(None, "/v1/x", "read timed out"), TransientError, "timed out"),  # type: ignore[arg-type]
    (urllib3.exceptions.ProtocolError("Connection aborted", ConnectionResetError()), TransientError, "connection reset"),
    (urllib3.exceptions.SSLError(ssl.SSLCertVerificationError("certificate verify failed")), AuthError, "not trusted"),
    (urllib3.exceptions.SSLError(ssl.SSLEOFError("EOF occurred in violation of protocol")), TransientError, "TLS handshake"),
    (urllib3.exceptions.LocationValueError("No host specified."), ManifestError, "invalid Vault address"),
    (urllib3.exceptions.MaxRetryError(None, "/v1/x", urllib3.exceptions.ResponseError("too many redirects")),  # type: ignore[arg-type]
     UnavailableError, "too many redirects"),
]


@pytest.mark.parametrize(("raised", "mapped", "says"), TRANSPORT, ids=[type(e).__name__ for e, _, _ in TRANSPORT])
def test_transport_failures_table(raised: urllib3.exceptions.HTTPError, mapped: type[Exception], says: str) -> None:
    error = from_transport(raised, "vault://secret/app/db", "http://127.0.0.1:8200")
    assert type(error) is mapped and says in error.message
    assert error.message.startswith("vault://secret/app/db: ")
    if mapped is TransientError:  # the address and the cause, in plain words (docs/operations/failures.md)
        assert "Vault at http://127.0.0.1:8200: " in error.message and "Error" not in error.message


def run_python(code: str, env: dict[str, str], *args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


CHECK_IMPORTS = """
import json, sys
from launcher.sources.vault import VaultAuth, VaultSourceConfig
from launcher.sources.vault.source import VaultSource
auth = VaultAuth(**json.loads(sys.argv[1])) if len(sys.argv) > 1 else VaultAuth()
src = VaultSource(VaultSourceConfig(name="vault", auth=auth))
src.fetch("{path}", None)
src.current_version("{path}")
src.maintain_token()  # what the watcher of `launcher run` calls every second: a token lookup
print("hvac" in sys.modules, "requests" in sys.modules)
"""


def test_reading_with_a_token_imports_neither_hvac_nor_requests(openbao: OpenBao, tmp_path: Path) -> None:
    base = openbao.unique("lazy")
    write_kv2(openbao, f"{base}/db", {"password": "p"})
    env = {**os.environ, **openbao.env(), "HOME": str(tmp_path)}
    assert run_python(CHECK_IMPORTS.format(path=f"secret/{base}/db"), env) == ["False", "False"]


def test_a_login_imports_hvac(openbao: OpenBao, tmp_path: Path) -> None:
    base = openbao.unique("login")
    write_kv2(openbao, f"{base}/db", {"password": "p"})
    mount, role = openbao.unique("approle"), openbao.unique("role")
    openbao.client.sys.enable_auth_method("approle", path=mount)
    openbao.policy(f"{base}-read", 'path "secret/*" { capabilities = ["read"] }')
    openbao.client.adapter.post(f"/v1/auth/{mount}/role/{role}", json={"token_policies": [f"{base}-read"]})
    role_id = openbao.client.adapter.get(f"/v1/auth/{mount}/role/{role}/role-id")["data"]["role_id"]
    secret_id = openbao.client.adapter.post(f"/v1/auth/{mount}/role/{role}/secret-id")["data"]["secret_id"]
    auth = json.dumps({"method": "approle", "role_id": role_id, "secret_id": secret_id, "mount": mount})
    code = CHECK_IMPORTS.format(path=f"secret/{base}/db")
    env = {**os.environ, "VAULT_ADDR": openbao.addr, "HOME": str(tmp_path)}
    env.pop("VAULT_TOKEN", None)
    assert run_python(code, env, auth) == ["True", "True"]


def test_a_server_that_never_answers_times_out_on_the_read_timeout() -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does) and never answers
    try:
        http = VaultHTTP(Connection(f"http://127.0.0.1:{silent.getsockname()[1]}", None, True, None), timeout=(5.0, 0.3))
        started = time.monotonic()
        with pytest.raises(TransientError, match="timed out"):
            http.get("secret/data/app/db", "t", "vault://secret/app/db")
        assert time.monotonic() - started < 3.0  # the 0.3 s read timeout, not the 5 s connect one
        http.close()
    finally:
        silent.close()


def test_default_timeouts_are_5_s_to_connect_and_10_s_to_read() -> None:
    http = VaultHTTP(Connection("http://127.0.0.1:1", None, True, None))
    assert (http._connect_timeout, http._read_timeout) == (5.0, 10.0)
