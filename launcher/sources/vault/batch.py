"""Many Vault reads at once, from one thread: one connection per read, so each answer is its request's.

Why: a start-up with 100 secrets behind a 20 ms network would take four round
trips on the resolver's 32 threads, and the threads' hand-offs cost CPU on a
small machine. Here every read of a batch has a connection of its own, opened
together (connects and TLS handshakes driven by one ``selectors`` loop), each
carrying exactly one request (``Connection: close``); so the batch costs about
one round trip, and an answer can only ever be the answer to the request sent on
its own connection: a proxy that reorders, repeats or drops answers cannot put
one secret's value into another variable (there is no positional matching of
pipelined answers). Answers are parsed by ``http.client.HTTPResponse``.

Best effort, as every batch (``launcher.sources.base.Batching``): what does not
come back as a 200 with a JSON object (any other status, a connection that failed,
the caller's ``deadline.bound`` passing) is None, and the source reads it again
one by one, with the retries and the messages. Nothing here raises or logs above
debug. Never through a proxy: the one-by-one reads go through it as configured.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import selectors
import socket
import ssl
import urllib.parse
from collections.abc import Sequence
from typing import Any

from launcher import deadline
from launcher.sources.transport import proxy_for, tls_context
from launcher.sources.vault.connection import Connection
from launcher.sources.vault.http import TIMEOUT, target

log = logging.getLogger(__name__)

# The most connections a batch opens at once; more reads go in further rounds. Enough for
# a 100-secret start-up in one round trip, few enough for any server's connection limit.
MAX_CONNECTIONS = 100
_FAILURES = (OSError, ssl.SSLError, http.client.HTTPException, ValueError)


class _Read:
    """One read of a batch on its own connection: connecting, shaking hands, sending, answered."""

    __slots__ = ("index", "request", "sock", "state")

    def __init__(self, index: int, request: bytes) -> None:
        self.index = index
        self.request = request
        self.sock: Any = None
        self.state = "connecting"  # -> handshake (TLS) -> sending -> sent | failed


def get_many(conn: Connection, paths: Sequence[tuple[str, dict[str, str] | None]], token: str) -> list[dict[str, Any] | None]:
    """The JSON body of each ``GET /v1/<path>`` (with its query) that answered 200, else None, in order.

    Bounded by the caller's ``deadline.bound`` (every socket is shut down when it passes).
    """
    results: list[dict[str, Any] | None] = [None] * len(paths)
    if not paths or proxy_for(conn.address):
        return results
    address = urllib.parse.urlsplit(conn.address)
    host, port = address.hostname or "", address.port or (443 if address.scheme == "https" else 80)
    try:
        context = tls_context(conn.roots, conn.cert) if address.scheme == "https" else None
        where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except Exception as exc:  # the one-by-one reads report it, with the words the user needs
        log.debug("batch from %s not tried (%s)", conn.address, exc)
        return results
    head = f"Host: {address.netloc.rpartition('@')[2]}\r\nX-Vault-Token: {token}\r\nX-Vault-Request: true\r\nConnection: close\r\n"
    if conn.namespace:
        head += f"X-Vault-Namespace: {conn.namespace}\r\n"
    prefix = address.path.rstrip("/")
    for first in range(0, len(paths), MAX_CONNECTIONS):
        if deadline.expired():
            break
        reads = [_Read(i, f"GET {prefix}{target(*paths[i])} HTTP/1.1\r\n{head}\r\n".encode())
                 for i in range(first, min(first + MAX_CONNECTIONS, len(paths)))]
        try:
            _send_all(reads, where, context, host)
            for read in reads:
                if read.state == "sent":
                    results[read.index] = _answer(read.sock)
        finally:
            for read in reads:
                if read.sock is not None:
                    read.sock.close()
    return results


def _send_all(reads: list[_Read], where: tuple[Any, ...], context: ssl.SSLContext | None, host: str) -> None:
    """Connect every read, shake hands, send its request; all at once, on one selector."""
    family, kind, proto, _, sockaddr = where
    with selectors.DefaultSelector() as selector:
        for read in reads:
            try:
                sock = socket.socket(family, kind, proto)
                read.sock = sock
                deadline.watch(sock)  # shut down when the bound passes: a stalled server ends the batch
                sock.setblocking(False)
                sock.connect_ex(sockaddr)
                selector.register(sock, selectors.EVENT_WRITE, read)
            except OSError:
                read.state = "failed"
        while selector.get_map():
            left = deadline.remaining()
            wait = TIMEOUT[0] if left is None else min(TIMEOUT[0], left)
            events = selector.select(max(0.0, wait))
            if not events:  # nothing moved within the connect timeout, or the bound passed
                break
            for key, _ in events:
                read = key.data
                try:
                    _advance(read, selector, context, host)
                except _FAILURES as exc:
                    log.debug("batch read %d failed (%s)", read.index, exc)
                    read.state = "failed"
                    selector.unregister(key.fileobj)


def _advance(read: _Read, selector: selectors.BaseSelector, context: ssl.SSLContext | None, host: str) -> None:
    """Move one read on by a step, as far as its socket allows now."""
    if read.state == "connecting":
        error = read.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, "connect failed")
        if context is not None:
            selector.unregister(read.sock)
            read.sock = context.wrap_socket(read.sock, server_hostname=host, do_handshake_on_connect=False)
            deadline.watch(read.sock)  # the wrapped socket took the descriptor over
            selector.register(read.sock, selectors.EVENT_WRITE, read)
            read.state = "handshake"
        else:
            read.state = "sending"
    if read.state == "handshake":
        try:
            read.sock.do_handshake()
        except ssl.SSLWantReadError:
            selector.modify(read.sock, selectors.EVENT_READ, read)
            return
        except ssl.SSLWantWriteError:
            selector.modify(read.sock, selectors.EVENT_WRITE, read)
            return
        read.state = "sending"
        selector.modify(read.sock, selectors.EVENT_WRITE, read)
    if read.state == "sending":
        try:
            sent = read.sock.send(read.request)
        except ssl.SSLWantWriteError:
            return
        read.request = read.request[sent:]
        if not read.request:
            read.state = "sent"
            selector.unregister(read.sock)


def _answer(sock: Any) -> dict[str, Any] | None:
    """The JSON object a 200 answer on ``sock`` carries; None for anything else (left to the single reads)."""
    with contextlib.suppress(*_FAILURES):
        sock.setblocking(True)
        sock.settimeout(deadline.cut(TIMEOUT[1]))
        resp = http.client.HTTPResponse(sock, method="GET")
        resp.begin()
        data = resp.read()
        if resp.status == 200:
            body = json.loads(data)
            return body if isinstance(body, dict) else None
    return None
