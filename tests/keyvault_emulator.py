"""A small Azure Key Vault + Entra ID emulator over real HTTPS, and its fixture.

No Key Vault emulator installs here, so the tests carry this one: just enough
of the REST API for the real azure-keyvault-secrets and azure-identity code to
run against it unchanged.

Vault (``/secrets/...``, any api-version):
  * a request without a valid bearer token gets the real challenge:
    401 + ``WWW-Authenticate: Bearer authorization="<authority>/<tenant>", resource="https://vault.azure.net"``;
  * GET ``/secrets/NAME/`` (latest; the SDK sends the trailing slash), ``/secrets/NAME/VERSION``,
    ``/secrets/NAME/versions`` and ``/secrets``; 404 ``SecretNotFound``; a disabled
    version is 403 ``Forbidden`` with innererror ``SecretDisabled``.
Entra ID (``/TENANT/...``): ``v2.0/.well-known/openid-configuration`` and
``oauth2/v2.0/token`` (client credentials with a client secret or a client
assertion, as workload identity sends).

Tests set and rotate secrets, inject faults (the next N requests answer 429,
403, 503, or stall until released) and read the request log. The server runs
in threads and shuts down cleanly, closing kept-alive connections, so pytest's
warnings-as-errors never sees a leaked socket.
"""

from __future__ import annotations

import json
import secrets as _secrets
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme

TENANT_ID = "72f988bf-0000-4000-8000-00000000e2e2"
CLIENT_ID = "0d5c7e9a-0000-4000-8000-0000000c11e7"
CLIENT_SECRET = "client-secret-CANARY-0b7f"  # a canary: asserted never to leak
FEDERATED_TOKEN = "federated-token-CANARY-5e21"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class Fault:
    """Answer the next ``count`` requests of ``scope`` (vault | token) with ``status``.

    ``status`` 0 means stall: hold the request until ``release`` is set.
    """

    status: int
    count: int
    scope: str = "vault"
    code: str = ""
    inner: str = ""
    retry_after: str | None = None
    release: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Request:
    """One request as the emulator saw it (no bodies, no tokens)."""

    method: str
    path: str
    scope: str  # vault | token | openid | other
    authorized: bool
    status: int


@dataclass
class _Version:
    value: str
    version: str
    enabled: bool
    created: int


class KeyVaultEmulator:
    """The state and the server; ``url`` is both the vault URL and the authority."""

    def __init__(self, server_ctx: ssl.SSLContext, ca_file: Path) -> None:
        self.ca_file = ca_file
        self.tenant_id = TENANT_ID
        self.client_id = CLIENT_ID
        self.client_secret = CLIENT_SECRET
        self.federated_token = FEDERATED_TOKEN
        self.requests: list[Request] = []
        self._secrets: dict[str, list[_Version]] = {}
        self._tokens: set[str] = set()
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler, self, server_ctx)
        self.port: int = self._server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # -- state -------------------------------------------------------------
    def set_secret(self, name: str, value: str, enabled: bool = True) -> str:
        """Add a new version of ``name`` (it becomes the latest); returns its version id."""
        version = _secrets.token_hex(16)
        with self._lock:
            self._secrets.setdefault(name, []).append(_Version(value, version, enabled, int(time.time())))
        return version

    def set_enabled(self, name: str, version: str, enabled: bool) -> None:
        with self._lock:
            next(v for v in self._secrets[name] if v.version == version).enabled = enabled

    def delete(self, name: str) -> None:
        with self._lock:
            self._secrets.pop(name, None)

    def fail_next(self, count: int, status: int = 429, scope: str = "vault", code: str = "", inner: str = "",
                  retry_after: str | None = None) -> Fault:
        """Answer the next ``count`` requests of ``scope`` with ``status`` (0 stalls them)."""
        fault = Fault(status, count, scope, code, inner, retry_after)
        with self._lock:
            self._faults.append(fault)
        return fault

    def count(self, scope: str = "vault", method: str | None = None, path: str | None = None) -> int:
        """How many requests of ``scope`` (optionally one method / path prefix) arrived."""
        with self._lock:
            return sum(1 for r in self.requests if r.scope == scope and (method is None or r.method == method)
                       and (path is None or r.path.startswith(path)))

    def source(self, **overrides: Any) -> dict[str, Any]:
        """A manifest source mapping for this emulator with client-secret credentials."""
        out: dict[str, Any] = {
            "type": "azure",
            "vault_url": self.url + "/",
            "credential": "client_secret",
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "authority": self.url,
            "tls": {"ca_cert": str(self.ca_file)},
            "verify_challenge_resource": False,
        }
        out.update(overrides)
        return {k: v for k, v in out.items() if v is not None}

    def env(self) -> dict[str, str]:
        """Environment for EnvironmentCredential / DefaultAzureCredential pinned to it."""
        return {
            "AZURE_TENANT_ID": self.tenant_id,
            "AZURE_CLIENT_ID": self.client_id,
            "AZURE_CLIENT_SECRET": self.client_secret,
            "AZURE_AUTHORITY_HOST": self.url,
            # Never fall through to managed identity, az, or a real endpoint.
            "AZURE_TOKEN_CREDENTIALS": "EnvironmentCredential",
        }

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, wake stalled and kept-alive handlers, join every thread."""
        with self._lock:
            for fault in self._faults:
                fault.release.set()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()  # joins the handler threads (block_on_close)
        self._thread.join(5)

    # -- used by the handler -------------------------------------------------
    def take_fault(self, scope: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.scope == scope and fault.count > 0:
                    fault.count -= 1
                    return fault
        return None

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def issue_token(self) -> str:
        token = "kv-token-" + _secrets.token_hex(12)
        with self._lock:
            self._tokens.add(token)
        return token

    def token_valid(self, header: str | None) -> bool:
        scheme, _, token = (header or "").partition(" ")
        with self._lock:
            return scheme.lower() == "bearer" and token in self._tokens

    def lookup(self, name: str, version: str | None) -> _Version | None:
        with self._lock:
            versions = self._secrets.get(name, [])
            if version is None:
                return versions[-1] if versions else None
            return next((v for v in versions if v.version == version), None)

    def versions(self, name: str) -> list[_Version] | None:
        with self._lock:
            return list(self._secrets[name]) if name in self._secrets else None

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._secrets)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so server_close joins the handlers
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], emulator: KeyVaultEmulator,
                 ctx: ssl.SSLContext) -> None:
        self.emulator = emulator
        self.ctx = ctx
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(address, handler)

    def close_connections(self) -> None:
        with self.conn_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-request is normal here; tests assert on outcomes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    timeout = 10  # an idle kept-alive connection ends on its own
    server: _Server
    _seen: tuple[str, str, bool]  # (path, scope, authorized) of the request being answered

    def setup(self) -> None:
        raw: socket.socket = self.request
        # Without TCP_NODELAY every small response waits ~40 ms for a delayed ACK.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.settimeout(self.timeout)
        # The handshake runs here, in the handler thread, not in the accept loop.
        self.request = self.server.ctx.wrap_socket(raw, server_side=True)
        with self.server.conn_lock:
            self.server.connections.add(self.request)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.conn_lock:
                self.server.connections.discard(self.request)
            # socketserver closes the raw socket it accepted, which wrap_socket detached.
            self.request.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def emulator(self) -> KeyVaultEmulator:
        return self.server.emulator

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        scope = "vault" if parts[:1] == ["secrets"] else "token" if parts[-1:] == ["token"] else \
            "openid" if "openid-configuration" in parts else "other"
        authorized = self.emulator.token_valid(self.headers.get("Authorization"))
        # Recorded by _answer as the answer is decided, before a byte of it is sent: a test reads
        # the log as soon as its client has the answer, and a request recorded after answering
        # was now and then missing from it (issue 27.15).
        self._seen = (url.path, scope, authorized)
        fault = self.emulator.take_fault(scope)
        if fault is not None:
            self._fault(fault)
        elif scope == "vault":
            self._vault(parts[1:], authorized)
        elif scope == "openid":
            self._openid(parts)
        elif scope == "token":
            self._token(parts, urllib.parse.parse_qs(body.decode()))
        else:
            self._json(404, {"error": {"code": "NotFound", "message": "no such endpoint"}})

    def _record(self, status: int) -> None:
        path, scope, authorized = self._seen
        self.emulator.record(Request(self.command, path, scope, authorized, status))

    # -- responses -------------------------------------------------------------
    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> int:
        data = json.dumps(payload).encode()
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        return status

    def _fault(self, fault: Fault) -> int:
        if fault.status == 0:
            self._record(0)
            fault.release.wait(30)
            self.close_connection = True
            return 0
        error: dict[str, Any] = {"code": fault.code or {429: "Throttled", 403: "Forbidden"}.get(fault.status, "ServiceUnavailable"),
                                 "message": f"injected {fault.status}"}
        if fault.inner:
            error["innererror"] = {"code": fault.inner}
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        if fault.scope == "token":
            oauth_error = {"error": str(error["code"]).lower(), "error_description": str(error["message"])}
            return self._json(fault.status, oauth_error, headers)
        return self._json(fault.status, {"error": error}, headers)

    def _vault(self, parts: list[str], authorized: bool) -> int:
        emu = self.emulator
        if not authorized:
            challenge = f'Bearer authorization="{emu.url}/{emu.tenant_id}", resource="https://vault.azure.net"'
            error = {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}
            return self._json(401, {"error": error}, {"WWW-Authenticate": challenge})
        if not parts:
            return self._json(200, {"value": [{"id": f"{emu.url}/secrets/{n}", "attributes": {"enabled": True}} for n in emu.names()],
                                    "nextLink": None})
        name = parts[0]
        if parts[1:] == ["versions"]:
            versions = emu.versions(name)
            if versions is None:
                return self._not_found(name)
            items = [{"id": f"{emu.url}/secrets/{name}/{v.version}", "attributes": self._attributes(v)} for v in versions]
            return self._json(200, {"value": items, "nextLink": None})
        found = emu.lookup(name, parts[1] if len(parts) > 1 else None)
        if found is None:
            return self._not_found(name)
        if not found.enabled:
            disabled = {"code": "Forbidden", "message": "Operation get is not allowed on a disabled secret.",
                        "innererror": {"code": "SecretDisabled"}}
            return self._json(403, {"error": disabled})
        bundle = {"value": found.value, "id": f"{emu.url}/secrets/{name}/{found.version}",
                  "attributes": self._attributes(found), "tags": {}}
        return self._json(200, bundle)

    def _not_found(self, name: str) -> int:
        message = f"A secret with (name/id) {name} was not found in this key vault."
        return self._json(404, {"error": {"code": "SecretNotFound", "message": message}})

    @staticmethod
    def _attributes(v: _Version) -> dict[str, Any]:
        return {"enabled": v.enabled, "created": v.created, "updated": v.created, "recoveryLevel": "Recoverable+Purgeable"}

    def _openid(self, parts: list[str]) -> int:
        base = f"{self.emulator.url}/{parts[0]}"
        return self._json(200, {
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        })

    def _token(self, parts: list[str], form: dict[str, list[str]]) -> int:
        emu = self.emulator

        def one(key: str) -> str:
            return (form.get(key) or [""])[0]

        if parts[0] != emu.tenant_id:
            return self._json(400, {"error": "invalid_request", "error_description": "AADSTS90002: Tenant not found."})
        if one("client_id") != emu.client_id:
            return self._json(400, {"error": "unauthorized_client", "error_description": "AADSTS700016: Application not found."})
        by_secret = one("client_secret") == emu.client_secret
        by_assertion = one("client_assertion_type") == ASSERTION_TYPE and one("client_assertion") == emu.federated_token
        if one("grant_type") != "client_credentials" or not (by_secret or by_assertion):
            return self._json(401, {"error": "invalid_client", "error_codes": [7000215],
                                    "error_description": "AADSTS7000215: Invalid client secret provided."})
        return self._json(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                                "access_token": emu.issue_token()})


@pytest.fixture(scope="session", name="keyvault_tls")
def keyvault_tls_fixture(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A throwaway CA (its PEM file) and a server context for 127.0.0.1, made once per run."""
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("keyvault-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx, ca_file


@pytest.fixture(name="keyvault")
def keyvault_fixture(keyvault_tls: tuple[ssl.SSLContext, Path]) -> Iterator[KeyVaultEmulator]:
    """A running emulator, stopped (all its threads joined) after the test."""
    emulator = KeyVaultEmulator(*keyvault_tls)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()
