"""A small Google Secret Manager emulator (REST v1 and gRPC) with a metadata server, and its fixture.

No Secret Manager emulator installs here, so the tests carry this one: just enough
of the API for the real google-cloud-secret-manager and google-auth code to run
against it unchanged.

Secret Manager, over REST (``http://127.0.0.1:PORT``) and, on demand, over gRPC
(``grpc_target()``, plaintext), from one state:
  * ``GET /v1/projects/P/secrets/S/versions/V:access`` (``AccessSecretVersion``): the
    payload base64-encoded and its ``dataCrc32c``;
  * ``GET /v1/projects/P/secrets/S/versions/V`` (``GetSecretVersion``): name and state;
  * ``V`` is a number, ``latest`` (the most recently created version, whatever its
    state, as Google's alias is) or an alias set with ``alias``; ``P`` is the project
    id or its number, and names in answers carry the number, as Google's do;
  * errors in Google's shape, ``{"error": {"code": 404, "message": ..., "status": "NOT_FOUND"}}``
    (gRPC: the status code and message): a missing secret or version is NOT_FOUND, a
    disabled or destroyed version FAILED_PRECONDITION naming its state, a denied
    secret PERMISSION_DENIED naming the permission, a bad or missing token (with
    ``require_auth``) UNAUTHENTICATED.
Tokens: a self-signed JWT of a service account key made by ``service_account_key``
(verified with its public key, as Google does), or an access token from the
metadata server below.

The metadata server (``/computeMetadata/v1/...``, as on GCE and GKE with Workload
Identity): the ping, the default service account, its token and the project id,
for google-auth pointed here with ``GCE_METADATA_HOST`` / ``GCE_METADATA_IP``.

Tests add, disable, destroy and alias versions, corrupt the next payloads'
checksums, make the next N requests fail with a status (``STALL`` holds them,
``DRIP`` sends a body one byte at a time) and read the request log, which is
written before each answer is sent: a test that reads it as soon as its client
returns never races the server. The servers themselves are in ``tests/gcp_wire.py``.
"""

from __future__ import annotations

import base64
import json
import secrets as _secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PROJECT = "launcher-test"
PROJECT_NUMBER = "123456789012"
SERVICE_ACCOUNT = f"launcher@{PROJECT}.iam.gserviceaccount.com"
STATES = {"ENABLED": 1, "DISABLED": 2, "DESTROYED": 3}
# google.rpc.Code -> HTTP, as Google's REST front end maps them.
HTTP_STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400, "UNAUTHENTICATED": 401,
               "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "ABORTED": 409, "ALREADY_EXISTS": 409,
               "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "INTERNAL": 500, "UNKNOWN": 500, "DATA_LOSS": 500,
               "UNIMPLEMENTED": 501, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504}


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), bit by bit: written apart from the launcher's table version on purpose."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@dataclass
class Fault:
    """Answer the next ``count`` requests of ``kind`` (access | get | any | metadata) with ``status``.

    ``status`` is a Google status name (UNAVAILABLE, ...), ``STALL`` (hold the request
    until ``release`` is set) or ``DRIP`` (send a body one byte every 0.2 s until released).
    """

    status: str
    count: int
    kind: str = "any"
    message: str = ""
    release: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Request:
    """One request as the emulator saw it (no bodies, no tokens)."""

    transport: str  # rest | grpc
    kind: str  # access | get | metadata | other
    name: str  # the resource name or path asked for
    authorized: bool
    status: str  # OK or the error status (STALL, DRIP for faults)


@dataclass
class _Version:
    number: int
    data: bytes
    state: str = "ENABLED"


class SecretManagerEmulator:
    """The state and the servers; ``url`` is the REST endpoint and the metadata server's address."""

    def __init__(self, require_auth: bool = False) -> None:
        self.require_auth = require_auth
        self.requests: list[Request] = []
        self.checksums = True  # False: payloads come without dataCrc32c, as some emulators send them
        self.projects = {PROJECT: PROJECT_NUMBER}
        self._secrets: dict[tuple[str, str], list[_Version]] = {}
        self._aliases: dict[tuple[str, str, str], int] = {}
        self._denied: set[tuple[str, str]] = set()
        self._faults: list[Fault] = []
        self._corrupt = 0
        self._keys: dict[str, Any] = {}  # service account email -> public key
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        from tests.gcp_wire import Handler, Server  # the wire faces import this module's types

        self._server = Server(("127.0.0.1", 0), Handler, self)
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._grpc: Any = None
        self._grpc_target: str | None = None

    # -- state -------------------------------------------------------------------
    def add_version(self, secret: str, data: str | bytes, project: str = PROJECT) -> str:
        """Add a version of ``secret`` (created if new), which becomes ``latest``; returns its number."""
        raw = data.encode() if isinstance(data, str) else data
        with self._lock:
            self.projects.setdefault(project, str(900000000000 + len(self.projects)))
            versions = self._secrets.setdefault((project, secret), [])
            versions.append(_Version(len(versions) + 1, raw))
            return str(len(versions))

    def set_state(self, secret: str, version: str, state: str, project: str = PROJECT) -> None:
        """ENABLED, DISABLED or DESTROYED (which drops the data, as Google does)."""
        with self._lock:
            found = self._secrets[(project, secret)][int(version) - 1]
            found.state = state
            if state == "DESTROYED":
                found.data = b""

    def alias(self, secret: str, alias: str, version: str, project: str = PROJECT) -> None:
        with self._lock:
            self._aliases[(project, secret, alias)] = int(version)

    def deny(self, secret: str, project: str = PROJECT) -> None:
        """The caller lacks secretmanager.versions.* on ``secret``: PERMISSION_DENIED."""
        with self._lock:
            self._denied.add((project, secret))

    def corrupt_next(self, count: int) -> None:
        """The next ``count`` payloads carry a wrong ``dataCrc32c``."""
        with self._lock:
            self._corrupt += count

    def fail_next(self, count: int, status: str = "UNAVAILABLE", kind: str = "any", message: str = "") -> Fault:
        """Answer the next ``count`` requests of ``kind`` with ``status`` (see ``Fault``)."""
        fault = Fault(status, count, kind, message)
        with self._lock:
            self._faults.append(fault)
        return fault

    def count(self, kind: str | None = None, transport: str | None = None) -> int:
        """How many requests of ``kind`` (access | get | metadata; None: any) arrived."""
        with self._lock:
            return sum(1 for r in self.requests if (kind is None or r.kind == kind) and (transport is None or r.transport == transport))

    def service_account_key(self, folder: Path, known: bool = True) -> Path:
        """Write a service account key file (as `gcloud iam service-accounts keys create` does).

        ``known``: the emulator trusts the key; an unknown key's tokens are UNAUTHENTICATED.
        """
        key, pem = _rsa_key()
        email = SERVICE_ACCOUNT if known else f"stranger@{PROJECT}.iam.gserviceaccount.com"
        if known:
            with self._lock:
                self._keys[email] = key.public_key()
        else:
            key, pem = _rsa_key(fresh=True)
        info = {"type": "service_account", "project_id": PROJECT, "private_key_id": _secrets.token_hex(20),
                "private_key": pem, "client_email": email, "client_id": "1000000000000000000001",
                "token_uri": f"{self.url}/token"}
        path = folder / "key.json"
        path.write_text(json.dumps(info))
        return path

    def metadata_env(self) -> dict[str, str]:
        """Variables that make google-auth take this server for the GCE / GKE metadata server."""
        return {"GCE_METADATA_HOST": self.host, "GCE_METADATA_IP": self.host}

    def grpc_target(self, tls: tuple[bytes, bytes] | None = None) -> str:
        """Start the gRPC server (once) and return its ``HOST:PORT``; plaintext, or TLS with (key PEM, chain PEM)."""
        if self._grpc_target is None:
            from tests.gcp_wire import start_grpc

            self._grpc, port = start_grpc(self, tls)
            self._grpc_target = f"127.0.0.1:{port}"
        return self._grpc_target

    def stop_grpc(self) -> None:
        """Stop the gRPC server: its clients get a GOAWAY, then connections refused."""
        if self._grpc is not None:
            self._grpc.stop(None).wait(5)
            self._grpc = None

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, wake stalled and kept-alive handlers, join every thread."""
        with self._lock:
            for fault in self._faults:
                fault.release.set()
        self.stop_grpc()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()  # joins the handler threads (block_on_close)
        self._thread.join(5)

    # -- what both transports answer --------------------------------------------
    def take_fault(self, kind: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.count > 0 and fault.kind in (kind, "any"):
                    fault.count -= 1
                    return fault
        return None

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def authorized(self, header: str | None) -> bool:
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        with self._lock:
            if token in self._tokens:
                return True
            keys = dict(self._keys)
        return _jwt_valid(token, keys)

    def issue_token(self) -> str:
        token = "ya29.emulated-" + _secrets.token_hex(12)
        with self._lock:
            self._tokens.add(token)
        return token

    def answer(self, kind: str, name: str, authorized: bool) -> tuple[str, str, dict[str, Any] | None]:
        """(status, message, body) for ``kind`` (access | get) of resource ``name``; body is None on errors."""
        if self.require_auth and not authorized:
            return "UNAUTHENTICATED", ("Request had invalid authentication credentials. Expected OAuth 2 access token, "
                                       "login cookie or other valid authentication credential."), None
        parts = name.split("/")
        if len(parts) != 6 or parts[0] != "projects" or parts[2] != "secrets" or parts[4] != "versions":
            return "INVALID_ARGUMENT", f"Invalid resource field value in the request: {name}", None
        with self._lock:
            project = next((p for p, n in self.projects.items() if parts[1] in (p, n)), parts[1])
            number = self.projects.get(project, parts[1])
            key = (project, parts[3])
            full = f"projects/{number}/secrets/{parts[3]}/versions/{parts[5]}"
            if key in self._denied:
                permission = "secretmanager.versions.access" if kind == "access" else "secretmanager.versions.get"
                return "PERMISSION_DENIED", f"Permission '{permission}' denied for resource '{full}' (or it may not exist).", None
            versions = self._secrets.get(key)
            if not versions:
                return "NOT_FOUND", f"Secret [projects/{number}/secrets/{parts[3]}] not found or has no versions.", None
            wanted = parts[5]
            index = len(versions) if wanted == "latest" else int(wanted) if wanted.isdigit() else self._aliases.get((*key, wanted), 0)
            if not 0 < index <= len(versions):
                return "NOT_FOUND", f"Secret Version [{full}] not found.", None
            found = versions[index - 1]
            resource = f"projects/{number}/secrets/{parts[3]}/versions/{found.number}"
            if kind == "get":
                return "OK", "", {"name": resource, "state": found.state, "createTime": "2024-05-01T10:00:00.000000Z"}
            if found.state != "ENABLED":
                return "FAILED_PRECONDITION", f"Secret Version [{resource}] is in {found.state} state.", None
            checksum = crc32c(found.data)
            if self._corrupt > 0:
                self._corrupt -= 1
                checksum ^= 0x1
            return "OK", "", {"name": resource, "data": found.data, "crc": checksum if self.checksums else None}


_KEY: list[tuple[Any, str]] = []


def _rsa_key(fresh: bool = False) -> tuple[Any, str]:
    """An RSA key and its PKCS#8 PEM; one per session unless ``fresh`` (generating one takes ~0.1 s)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    if _KEY and not fresh:
        return _KEY[0]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    if not fresh:
        _KEY.append((key, pem))
    return key, pem


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _jwt_valid(token: str, keys: dict[str, Any]) -> bool:
    """A self-signed service account JWT (RS256) from a trusted key, not expired."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    try:
        header, claims, signature = token.split(".")
        body = json.loads(_b64(claims))
        key = keys.get(body.get("iss"))
        if key is None or json.loads(_b64(header)).get("alg") != "RS256" or body.get("exp", 0) < time.time():
            return False
        key.verify(_b64(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except (ValueError, InvalidSignature):
        return False
    return True


@pytest.fixture(name="gcp")
def gcp_fixture() -> Iterator[SecretManagerEmulator]:
    """A running emulator that accepts anonymous callers; stopped (its threads joined) after the test."""
    emulator = SecretManagerEmulator()
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(name="gcp_auth")
def gcp_auth_fixture() -> Iterator[SecretManagerEmulator]:
    """The same, requiring a valid token (a known service account's JWT or a metadata server token)."""
    emulator = SecretManagerEmulator(require_auth=True)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()
