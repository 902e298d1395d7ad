"""moto's AWS emulator over real HTTP, a forwarder that counts and fails requests, and their fixtures.

``moto_server`` (session): moto's threaded server on a free loopback port, with
``.url``, ``.client`` (a boto3 Secrets Manager client with dummy credentials),
``.client_for(region)``, ``.ssm`` (an SSM client, the same way), ``.env()`` and ``.unique()``. moto keeps its state for the
whole session, so every test names its secrets with ``unique()``.

``aws_env`` (function): the process environment pinned to the server (every other
``AWS_*`` variable removed, no shared config files, no instance metadata), for code
that reads credentials the way boto3 does.

``aws_forwarder`` (function): an HTTP forwarder in front of the server that records
each request's operation (from ``X-Amz-Target``) and can answer the next requests
itself: an AWS JSON error, a raw body, or a stall until the test ends.

moto and boto3 are imported inside the fixtures, so loading this plugin costs nothing
and a machine without them skips the tests that ask for the server.
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import os
import secrets as _secrets
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
_NAMES = itertools.count(1)


class MotoServer:
    """A running moto server; ``client`` talks to it as any boto3 program would."""

    def __init__(self, url: str, isolation: dict[str, str]) -> None:
        self.url = url
        self._isolation = isolation
        self.client = self.client_for(REGION)
        self.ssm = self.client_for(REGION, "ssm")

    def client_for(self, region: str, service: str = "secretsmanager") -> Any:
        import boto3.session

        session = boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=region)
        return session.client(service, endpoint_url=self.url)

    def env(self) -> dict[str, str]:
        """Variables that point boto3 (and the launcher) at this server with dummy credentials."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            **self._isolation,
        }

    def unique(self, prefix: str = "test") -> str:
        """A secret name no other test uses (moto's state lasts the whole session)."""
        return f"{prefix}-{next(_NAMES)}-{_secrets.token_hex(3)}"


@pytest.fixture(scope="session", name="moto_server")
def moto_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server_module = pytest.importorskip("moto.server", reason="needs moto[server]: pip install 'moto[server]'")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    none = tmp_path_factory.mktemp("aws-config") / "absent"
    # Never read the host's ~/.aws files nor ask an instance metadata endpoint.
    isolation = {"AWS_CONFIG_FILE": str(none), "AWS_SHARED_CREDENTIALS_FILE": str(none), "AWS_EC2_METADATA_DISABLED": "true"}
    try:
        yield MotoServer(f"http://{host}:{port}", isolation)
    finally:
        server.stop()


@pytest.fixture(name="aws_env")
def aws_env_fixture(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """``os.environ`` with only the server's AWS variables; returns them."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    env = moto_server.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@dataclass
class Fault:
    """How the forwarder answers one request instead of forwarding it.

    ``status`` 0 stalls the request until the forwarder stops. ``code`` makes an AWS
    JSON error (``__type`` and ``x-amzn-ErrorType``); ``body`` is sent as it is.
    """

    status: int
    code: str = ""
    message: str = "injected by the test forwarder"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


class Forwarder:
    """Forwards to ``target`` and records ``X-Amz-Target`` operations (``GetSecretValue``, ``GetParameters``...).

    ``bodies`` keeps each request's JSON body, in order, for tests that check what was asked.
    """

    def __init__(self, target: str) -> None:
        parsed = urllib.parse.urlsplit(target)
        self.target = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.operations: list[str] = []
        self.bodies: list[Any] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def fail_next(self, count: int, status: int, code: str = "", **kwargs: Any) -> None:
        """Answer the next ``count`` requests with ``Fault(status, code, **kwargs)``."""
        with self._lock:
            self._faults.extend(Fault(status, code, **kwargs) for _ in range(count))

    def count(self, operation: str | None = None) -> int:
        with self._lock:
            return sum(1 for op in self.operations if operation is None or op == operation)

    def stop(self) -> None:
        self.stopping.set()  # wakes stalled handlers
        self._server.shutdown()
        self._server.server_close()  # joins the handler threads
        self._thread.join(5)

    def take(self, operation: str, body: bytes = b"") -> Fault | None:
        with self._lock:
            self.operations.append(operation)
            try:
                self.bodies.append(json.loads(body or b"null"))
            except ValueError:
                self.bodies.append(None)
            return self._faults.pop(0) if self._faults else None


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so server_close joins the handlers
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], forwarder: Forwarder) -> None:
        self.forwarder = forwarder
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is what some tests want


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        operation = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
        fault = self.server.forwarder.take(operation, body)
        self.close_connection = True  # one request per connection: nothing is left idle at stop
        if fault is None:
            self._forward(body)
        elif fault.status == 0:
            self.server.forwarder.stopping.wait(30)
        else:
            payload = fault.body if fault.body is not None else json.dumps({"__type": fault.code, "message": fault.message}).encode()
            headers = {"Content-Type": "application/x-amz-json-1.1", **fault.headers}
            if fault.code:
                headers["x-amzn-ErrorType"] = fault.code
            self._answer(fault.status, headers, payload)

    def _forward(self, body: bytes) -> None:
        conn = http.client.HTTPConnection(*self.server.forwarder.target, timeout=10)
        try:
            skip = {"host", "connection", "content-length"}
            conn.request("POST", self.path, body, {k: v for k, v in self.headers.items() if k.lower() not in skip})
            response = conn.getresponse()
            payload = response.read()
            skip |= {"transfer-encoding", "server", "date"}
            self._answer(response.status, {k: v for k, v in response.getheaders() if k.lower() not in skip}, payload)
        finally:
            conn.close()

    def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture(name="aws_forwarder")
def aws_forwarder_fixture(moto_server: MotoServer) -> Iterator[Forwarder]:
    forwarder = Forwarder(moto_server.url)
    try:
        yield forwarder
    finally:
        forwarder.stop()

