"""A TCP proxy that injects faults in front of a real server (OpenBao, moto, the Key Vault emulator).

It listens on a free 127.0.0.1 port and forwards to (host, port). The test
switches ``proxy.mode`` (or calls ``set_mode(mode, **settings)``) at any time;
a new mode applies to new connections, and a change cuts every connection
already open, so a client's pooled keep-alive connection cannot dodge it (the
client reconnects and meets the new mode). What each mode simulates:

- ``pass``: a healthy network; bytes go both ways unchanged.
- ``down``: a dead backend behind a load balancer: accepted, closed at once.
- ``refuse``: nothing listening at all: the port is closed (the kernel refuses
  connections) and reopened on the same port when the mode changes again.
- ``reset``: a crashing server or a firewall: the request is read, then RST.
- ``stall``: a hung server: the request is read and never answered.
- ``drip``: a slow-loris answer: the real response, one byte every
  ``drip_interval`` seconds, which per-read socket timeouts never catch.
- ``truncate``: a connection cut mid-answer: the headers and half the body.
- ``garbage``: something that is not HTTP (a wrong port, a broken middlebox).
- ``latency``: a slow but working server: the first answer on each connection
  comes ``latency`` seconds late, the rest as fast as the server.
- ``http``: an answer from something in the way (a gateway, a throttle): every
  request gets ``status``, ``headers`` and ``body``; keep-alive is honoured.
- ``ok_not_json``: a captive portal: ``200 OK`` claiming JSON, with HTML.

Modes that need no HTTP (pass, down, refuse, reset, stall, drip, latency,
garbage) forward or drop raw bytes, so they work for TLS too. ``http`` and
``ok_not_json`` read whole requests (Content-Length bodies, not chunked).
Counters: ``connections[mode]`` (accepted in that mode) and ``requests[mode]``
(plain HTTP requests seen, plus the first bytes of each connection in reset,
stall and garbage, TLS or not); both are ``Counter``s. ``lines`` keeps
(mode, request line) of every plain HTTP request; ``seen(mode, text)`` counts them.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus

MODES = ("pass", "down", "refuse", "reset", "stall", "drip", "truncate", "garbage", "latency", "http", "ok_not_json")
FORWARDING = ("pass", "drip", "latency", "truncate")
REQUEST_LINE = re.compile(rb"[A-Z]+ \S+ HTTP/1\.[01]")
PORTAL = b"<html><body><h1>Welcome</h1><p>Please sign in to continue.</p></body></html>"


class FaultProxy:
    def __init__(self, host: str, port: int, mode: str = "pass") -> None:
        self.target = (host, port)
        self.drip_interval = 1.0
        self.latency = 2.0
        self.status = 503
        self.headers: dict[str, str] = {"Retry-After": "1", "Content-Type": "application/json"}
        self.body = b'{"errors": []}'
        self.connections: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.lines: list[tuple[str, str]] = []
        self._mode = "pass"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._thread = self._start_accepting()
        self.set_mode(mode)

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def refused(self) -> int:
        """Connections dropped at once in ``down`` mode."""
        return self.connections["down"]

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        self.set_mode(mode)

    def seen(self, mode: str, text: str = "") -> int:
        """How many plain HTTP requests met ``mode`` with ``text`` in their request line."""
        return sum(1 for m, line in list(self.lines) if m == mode and text in line)

    def set_mode(self, mode: str, **settings: object) -> None:
        """Switch to ``mode`` (settings: drip_interval, latency, status, headers, body) and cut open connections."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        for name, value in settings.items():
            if name not in ("drip_interval", "latency", "status", "headers", "body"):
                raise TypeError(f"unknown setting {name!r}")
            setattr(self, name, value)
        with self._lock:
            old, self._mode = self._mode, mode
            if old == mode:
                return
            for sock in self._open:
                _shut(sock)
            self._open.clear()
            if mode == "refuse":
                _shut(self.listener)
                self.listener.close()
            elif old == "refuse" and not self._closed.is_set():
                self.listener = socket.create_server(("127.0.0.1", self.port))
                self._thread = self._start_accepting()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            for sock in self._open:
                _shut(sock)
            self._open.clear()
            _shut(self.listener)
            self.listener.close()
        self._thread.join(timeout=2)

    # -- connections ---------------------------------------------------------

    def _start_accepting(self) -> threading.Thread:
        thread = threading.Thread(target=self._accept, args=(self.listener,), daemon=True)
        thread.start()
        return thread

    def _accept(self, listener: socket.socket) -> None:
        while not self._closed.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self._mode
                self.connections[mode] += 1
                self._open.add(client)
            threading.Thread(target=self._serve, args=(client, mode), daemon=True).start()

    def _serve(self, client: socket.socket, mode: str) -> None:
        try:
            if mode in FORWARDING:
                self._forward(client, mode)
            elif mode in ("http", "ok_not_json"):
                self._answer(client, mode)
            elif mode != "down":
                data = client.recv(65536)  # the request, or a TLS ClientHello
                if data:
                    self._saw(mode, data, raw=True)
                if mode == "reset":
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self._forget(client)
                    client.close()  # no shutdown first: that would send a FIN before the RST
                    return
                if mode == "garbage":
                    client.sendall(b"\x00\x17\xfe" + os.urandom(61) + b"\r\n\r\n")
                while mode == "stall" and client.recv(65536):
                    pass  # read and drop until the client gives up or the mode changes
        except OSError:
            pass
        finally:
            self._drop(client)

    def _forward(self, client: socket.socket, mode: str) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            return
        upstream.settimeout(None)
        if mode == "drip":  # each byte in a segment of its own, not held back by Nagle's algorithm
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if client not in self._open:  # the mode changed meanwhile
                upstream.close()
                return
            self._open.add(upstream)
        threading.Thread(target=self._pipe_up, args=(client, upstream, mode), daemon=True).start()
        try:
            if mode == "truncate":
                self._cut(upstream, client)
                return
            first = True
            while chunk := upstream.recv(65536):
                if mode == "latency" and first and self._closed.wait(self.latency):
                    return
                first = False
                if mode != "drip":
                    client.sendall(chunk)
                    continue
                for i in range(len(chunk)):
                    client.sendall(chunk[i:i + 1])
                    if self._closed.wait(self.drip_interval):
                        return
        except OSError:
            pass
        finally:
            self._drop(upstream)

    def _pipe_up(self, client: socket.socket, upstream: socket.socket, mode: str) -> None:
        try:
            while chunk := client.recv(65536):
                self._saw(mode, chunk)
                upstream.sendall(chunk)
        except OSError:
            pass
        finally:
            self._drop(upstream)
            self._drop(client)

    def _cut(self, upstream: socket.socket, client: socket.socket) -> None:
        """Send the response's headers and half its body (half the first chunk if it is not HTTP)."""
        buf = b""
        while chunk := upstream.recv(65536):
            buf += chunk
            head, sep, body = buf.partition(b"\r\n\r\n")
            if not buf.startswith(b"HTTP/"):
                client.sendall(buf[: len(buf) // 2])
                return
            if sep:
                length = _content_length(head)
                cut = len(head) + 4 + (len(body) if length is None else length) // 2
                if length is None or len(buf) >= cut:
                    client.sendall(buf[:cut])
                    return

    def _answer(self, client: socket.socket, mode: str) -> None:
        buf = bytearray()
        while (head := _read_request(client, buf)) is not None:
            self._saw(mode, head)
            if mode == "ok_not_json":
                status, headers, body = 200, {"Content-Type": "application/json"}, PORTAL
            else:
                status, headers, body = self.status, dict(self.headers), self.body
            close = b"connection: close" in head.lower() or headers.get("Connection", "").lower() == "close"
            lines = [f"HTTP/1.1 {status} {_reason(status)}", *(f"{k}: {v}" for k, v in headers.items()), f"Content-Length: {len(body)}"]
            client.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            if close:
                return

    def _saw(self, mode: str, data: bytes, raw: bool = False) -> None:
        """Count a request (any first bytes when ``raw``) and keep its request line."""
        line = data.split(b"\r\n", 1)[0]
        http = REQUEST_LINE.fullmatch(line) is not None
        if http or raw:
            with self._lock:
                self.requests[mode] += 1
                if http:
                    self.lines.append((mode, line.decode("latin-1")))

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def _drop(self, sock: socket.socket) -> None:
        self._forget(sock)
        _shut(sock)
        sock.close()


def _read_request(sock: socket.socket, buf: bytearray) -> bytes | None:
    """One request's head from ``sock`` (its Content-Length body read and dropped); None at EOF."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end])
    del buf[:end]
    length = _content_length(head) or 0
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    del buf[:length]
    return head


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value)
    return None


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


@contextmanager
def fault_proxy(host: str, port: int, mode: str = "pass") -> Iterator[FaultProxy]:
    proxy = FaultProxy(host, port, mode)
    try:
        yield proxy
    finally:
        proxy.close()
