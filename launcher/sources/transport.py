"""What every HTTP backend shares: bounded connections, plain-word causes, addresses.

- ``pool_manager`` / ``proxy_manager`` build urllib3 managers whose connections
  hand their sockets to ``launcher.deadline``, so no request outlives the
  attempt's bound (a dripping or stalled server included); ``session`` does the
  same for requests, which hvac and the Azure SDK use.
- ``describe`` turns a transport failure into the few words a user needs
  (``connection refused``, ``TLS handshake failed``, ``timed out after 10s``).
- ``check_url`` refuses, before any request, an address that cannot work.
- ``retry_after`` reads a Retry-After header (seconds or an HTTP date).

urllib3 is imported here; requests only when ``session`` is called.
"""

from __future__ import annotations

import email.utils
import http.client
import os
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from functools import cache
from typing import Any

import urllib3
import urllib3.connection
import urllib3.connectionpool

from launcher import deadline
from launcher.errors import ManifestError


class _BoundedHTTPConnection(urllib3.connection.HTTPConnection):
    """A connection whose socket the attempt's watchdog may shut down (``launcher.deadline``)."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        deadline.watch(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline.watch(self.sock)  # a kept-alive socket serves a new attempt: watch it again
        super().request(*args, **kwargs)


class _BoundedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        deadline.watch(sock)  # the raw socket: shutting it down also ends a stalled TLS handshake
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline.watch(self.sock)
        super().request(*args, **kwargs)


class _BoundedHTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _BoundedHTTPConnection


class _BoundedHTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _BoundedHTTPSConnection

    def _validate_conn(self, conn: Any) -> None:
        if self.cert_reqs in (ssl.CERT_NONE, "CERT_NONE", "NONE"):
            # Verification was turned off on purpose (skip_verify) and the source has said
            # so in its own log line; urllib3 would add a multi-line warning per host. Only
            # this pool is quiet: no process-wide warning filter.
            if conn.is_closed:
                conn.connect()
            return
        super()._validate_conn(conn)


_POOLS = {"http": _BoundedHTTPPool, "https": _BoundedHTTPSPool}


def _bounded(manager: urllib3.PoolManager) -> urllib3.PoolManager:
    # A per-manager setting that urllib3 documents as the way to choose pool classes.
    manager.pool_classes_by_scheme = _POOLS
    return manager


def pool_manager(**options: Any) -> urllib3.PoolManager:
    """A ``urllib3.PoolManager`` whose requests honour the attempt's bound."""
    return _bounded(urllib3.PoolManager(**options))


def proxy_manager(proxy: str, **options: Any) -> urllib3.PoolManager:
    """The same through an HTTP(S) proxy; ``ManifestError`` for any other proxy scheme."""
    try:
        return _bounded(urllib3.ProxyManager(proxy, **options))
    except urllib3.exceptions.ProxySchemeUnknown:
        raise ManifestError(f"proxy {_without_credentials(proxy)}: only http:// and https:// proxies are supported") from None


def session(ssl_context: ssl.SSLContext | None = None, pool_maxsize: int = 10) -> Any:
    """A ``requests.Session`` whose requests honour the attempt's bound.

    ``ssl_context``: extra trust for HTTPS (the Azure source adds a CA to the
    system roots this way, with no temporary bundle file left behind).
    """
    import requests

    http = requests.Session()
    adapter = _adapter_class()(ssl_context, pool_maxsize)
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


@cache
def _adapter_class() -> Any:
    import requests.adapters

    class BoundedAdapter(requests.adapters.HTTPAdapter):
        """requests' adapter on bounded pools; timeouts are cut to the attempt's bound."""

        def __init__(self, ssl_context: ssl.SSLContext | None, pool_maxsize: int) -> None:
            self._ssl_context = ssl_context
            super().__init__(pool_maxsize=pool_maxsize)

        def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
            super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
            _bounded(self.poolmanager)

        def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
            return _bounded(super().proxy_manager_for(proxy, **proxy_kwargs))

        def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None) -> Any:
            host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
            if self._ssl_context is not None and verify is not False:
                pool_kwargs["ssl_context"] = self._ssl_context
            return host_params, pool_kwargs

        def send(self, request: Any, stream: bool = False, timeout: Any = None, verify: Any = True,
                 cert: Any = None, proxies: Any = None) -> Any:
            return super().send(request, stream, _cut(timeout), verify, cert, proxies)

    return BoundedAdapter


def _cut(timeout: Any) -> Any:
    if deadline.remaining() is None:
        return timeout
    if isinstance(timeout, tuple):
        return tuple(None if t is None else deadline.cut(float(t)) for t in timeout)
    if timeout is None:
        return deadline.cut(3600.0)
    return deadline.cut(float(timeout))


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what lies behind it: exception arguments, ``reason``, causes and contexts.

    requests wraps urllib3, which wraps ``ssl`` and ``socket``; azure-identity
    wraps MSAL and azure-core. Each exception is visited once, at most 20.
    """
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < 20:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        # ``reason``: urllib3; ``inner_exception``: azure-core, which raises its own errors outside
        # the ``except`` block, so neither cause nor context leads back to the transport's.
        linked = (getattr(current, "reason", None), getattr(current, "inner_exception", None))
        inner = [a for a in current.args if isinstance(a, BaseException)]
        for nxt in (*inner, *linked, current.__cause__, current.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def tls_failed(exc: BaseException) -> bool:
    """True when the failure happened in TLS (``ssl``, urllib3's or requests' SSLError)."""
    # requests' SSLError is matched by name: this module does not import requests.
    return any(isinstance(e, (ssl.SSLError, urllib3.exceptions.SSLError)) or type(e).__name__ == "SSLError" for e in causes(exc))


def cert_not_trusted(exc: BaseException) -> bool:
    """True when a TLS failure is the server's certificate failing verification."""
    return any(isinstance(e, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(e) for e in causes(exc))


# What a transport failure means, most specific first: a refused connection shows up
# inside urllib3's NewConnectionError, which is itself a kind of ConnectTimeoutError.
_PLAIN_WORDS: tuple[tuple[tuple[type[BaseException], ...], str], ...] = (
    ((ConnectionRefusedError,), "connection refused"),
    ((socket.gaierror, urllib3.exceptions.NameResolutionError), "cannot resolve the host name"),
    ((ConnectionResetError,), "connection reset"),
    ((http.client.IncompleteRead, urllib3.exceptions.IncompleteRead), "the answer was cut short"),
    ((http.client.RemoteDisconnected,), "connection closed without an answer"),
    ((http.client.BadStatusLine,), "the answer is not HTTP"),
    ((urllib3.exceptions.ProxyError,), "the proxy failed"),
    ((urllib3.exceptions.NewConnectionError,), "cannot connect"),
    ((urllib3.exceptions.ConnectTimeoutError,), "connection timed out"),
)


def describe(exc: BaseException, read_timeout: float | None = None) -> str:
    """A transport failure in plain words, for messages: never an exception class name."""
    if deadline.expired():
        return "no answer within the time left (retry.deadline)"
    chain = list(causes(exc))
    if tls_failed(exc):
        return "TLS certificate not trusted" if cert_not_trusted(exc) else "TLS handshake failed"
    for kinds, words in _PLAIN_WORDS:
        if any(isinstance(e, kinds) for e in chain):
            return words
    if any(isinstance(e, (urllib3.exceptions.ReadTimeoutError, TimeoutError, socket.timeout)) for e in chain):
        return f"timed out after {read_timeout:g}s" if read_timeout else "timed out"
    for err in chain:
        if isinstance(err, OSError) and err.errno:
            return os.strerror(err.errno).lower()
    if any(isinstance(e, urllib3.exceptions.ProtocolError) for e in chain):
        return "connection closed without a complete answer"
    return "the request failed"


def check_url(url: str, what: str) -> str:
    """``url`` without a trailing slash; ``ManifestError`` (78) when it cannot work.

    An address needs ``http://`` or ``https://`` and a host; a bad port or an
    unclosed IPv6 bracket is refused here rather than at the first request.
    """
    text = url.strip()
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ManifestError(f"{what}: the address holds a control character")
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:
        raise ManifestError(f"{what}: {text!r} is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ManifestError(f"{what}: {text!r} needs http:// or https:// in front")
    if not parts.hostname:
        raise ManifestError(f"{what}: {text!r} has no host")
    if port == 0:
        raise ManifestError(f"{what}: {text!r} has no valid port")
    return text.rstrip("/")


def retry_after(header: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not header:
        return None
    text = header.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _without_credentials(url: str) -> str:
    """A proxy URL without its user:password part, for messages."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(invalid URL)"
    return f"{parts.scheme}://{parts.hostname or ''}{port}"
