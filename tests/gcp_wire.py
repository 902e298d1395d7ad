"""The wire faces of the Secret Manager emulator (``tests/gcp_emulator.py``): REST v1 and the
metadata server over plain HTTP, and gRPC with the client library's own message classes.

Both faces ask ``SecretManagerEmulator.answer`` and record each request before answering.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.gcp_emulator import HTTP_STATUS, PROJECT, SERVICE_ACCOUNT, STATES, Fault, Request, SecretManagerEmulator


class Server(ThreadingHTTPServer):
    daemon_threads = False  # so server_close joins the handlers
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], emulator: SecretManagerEmulator) -> None:
        self.emulator = emulator
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(address, handler)

    def close_connections(self) -> None:
        with self.conn_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-request is normal here; tests assert on outcomes


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as requests' connection pool expects
    timeout = 10  # an idle kept-alive connection ends on its own
    server: Server

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.conn_lock:
            self.server.connections.add(self.request)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.conn_lock:
                self.server.connections.discard(self.request)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        emu: SecretManagerEmulator = self.server.emulator
        if url.path.startswith("/computeMetadata/") or url.path == "/":
            self._metadata(url.path)
            return
        name, _, verb = url.path.removeprefix("/v1/").partition(":")
        kind = "access" if verb == "access" else "get" if not verb and url.path.startswith("/v1/") else "other"
        authorized = emu.authorized(self.headers.get("Authorization"))
        fault = emu.take_fault(kind)
        if fault is not None:
            emu.record(Request("rest", kind, name, authorized, fault.status))
            self._fault(fault)
            return
        status, message, body = emu.answer(kind, name, authorized) if kind != "other" else ("NOT_FOUND", "no such method", None)
        emu.record(Request("rest", kind, name, authorized, status))
        if body is None:
            self._error(status, message)
        elif kind == "get":
            ints = "enum-encoding=int" in urllib.parse.unquote(url.query)  # the client asks for enums as numbers
            self._json(200, {**body, "state": STATES[body["state"]] if ints else body["state"]})
        else:
            payload = {"data": base64.b64encode(body["data"]).decode()}
            if body["crc"] is not None:
                payload["dataCrc32c"] = str(body["crc"])
            self._json(200, {"name": body["name"], "payload": payload})

    def _metadata(self, path: str) -> None:
        emu: SecretManagerEmulator = self.server.emulator
        fault = emu.take_fault("metadata")
        emu.record(Request("rest", "metadata", path, True, fault.status if fault else "OK"))
        if fault is not None:
            self._fault(fault)
            return
        if self.headers.get("Metadata-Flavor") != "Google":
            self._plain(403, "Missing Metadata-Flavor:Google header.")
        elif path == "/":
            self._plain(200, "")
        elif path.endswith("/project/project-id"):
            self._plain(200, PROJECT)
        elif path.endswith("/instance/service-accounts/default/"):
            self._json(200, {"aliases": ["default"], "email": SERVICE_ACCOUNT,
                             "scopes": ["https://www.googleapis.com/auth/cloud-platform"]})
        elif path.endswith("/instance/service-accounts/default/token"):
            self._json(200, {"access_token": emu.issue_token(), "expires_in": 3599, "token_type": "Bearer"})
        else:
            self._plain(404, "Not Found")

    # -- answers -------------------------------------------------------------------
    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.path.startswith("/computeMetadata/") or self.path == "/":
            self.send_header("Metadata-Flavor", "Google")
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json; charset=UTF-8")

    def _plain(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def _error(self, status: str, message: str) -> None:
        code = HTTP_STATUS.get(status, 500)
        self._json(code, {"error": {"code": code, "message": message, "status": status}})

    def _fault(self, fault: Fault) -> None:
        if fault.status == "STALL":
            fault.release.wait(30)
            self.close_connection = True
        elif fault.status == "DRIP":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            while not fault.release.wait(0.2):
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    break
            self.close_connection = True
        else:
            self._error(fault.status, fault.message or f"injected {fault.status}")


def start_grpc(emu: SecretManagerEmulator, tls: tuple[bytes, bytes] | None) -> tuple[Any, int]:
    """The same service over gRPC, with the client library's own message classes and a generic handler."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    from google.cloud.secretmanager_v1.types import resources, service

    def handle(kind: str, request: Any, context: Any) -> Any:
        metadata = dict(context.invocation_metadata())
        authorized = emu.authorized(metadata.get("authorization"))
        fault = emu.take_fault(kind)
        if fault is not None:
            emu.record(Request("grpc", kind, request.name, authorized, fault.status))
            if fault.status in ("STALL", "DRIP"):
                fault.release.wait(30)
                context.abort(grpc.StatusCode.CANCELLED, "released")
            context.abort(grpc.StatusCode[fault.status], fault.message or f"injected {fault.status}")
        status, message, body = emu.answer(kind, request.name, authorized)
        emu.record(Request("grpc", kind, request.name, authorized, status))
        if body is None:
            context.abort(grpc.StatusCode[status], message)
        if kind == "get":
            return resources.SecretVersion(name=body["name"], state=resources.SecretVersion.State[body["state"]])
        payload = resources.SecretPayload(data=body["data"])
        if body["crc"] is not None:
            payload.data_crc32c = body["crc"]
        return service.AccessSecretVersionResponse(name=body["name"], payload=payload)

    methods = {
        "AccessSecretVersion": grpc.unary_unary_rpc_method_handler(
            lambda req, ctx: handle("access", req, ctx), request_deserializer=service.AccessSecretVersionRequest.deserialize,
            response_serializer=service.AccessSecretVersionResponse.serialize),
        "GetSecretVersion": grpc.unary_unary_rpc_method_handler(
            lambda req, ctx: handle("get", req, ctx), request_deserializer=service.GetSecretVersionRequest.deserialize,
            response_serializer=resources.SecretVersion.serialize),
    }
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("google.cloud.secretmanager.v1.SecretManagerService",
                                                                          methods),))
    if tls is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([tls]))
    server.start()
    return server, port
