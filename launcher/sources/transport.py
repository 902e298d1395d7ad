"""What every HTTP backend shares: bounded connections, plain-word causes, addresses.

- ``http_pool`` builds the one urllib3 pool a source talks through (its TLS
  settings, the proxy the environment names); its connections hand their
  sockets to ``launcher.deadline``, so no request outlives the attempt's bound
  (a dripping or stalled server included). Vault's requests (hvac's included,
  through an adapter) and the Azure SDK's (through an azure-core transport) all
  go through such a pool.
- ``describe`` turns a transport failure into the few words a user needs
  (``connection refused``, ``TLS handshake failed``, ``timed out after 10s``);
  ``lasting_tls_failure`` tells the TLS failures no retry can heal (a plain-HTTP
  server behind https://, a certificate that does not verify), which backends
  raise at once rather than as transient.
- ``check_url`` refuses, before any request, an address that cannot work.
- ``retry_after`` reads a Retry-After header (seconds or an HTTP date).

urllib3 is imported here; nothing in the launcher imports requests.
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
from typing import Any, Literal

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


def http_pool(url: str, *, roots: str | Literal[False] | None = None, ssl_context: ssl.SSLContext | None = None,
              cert: str | tuple[str, str] | None = None, maxsize: int = 10) -> urllib3.PoolManager:
    """The one pool of connections a source uses to reach ``url``, whatever the request.

    TLS: verified against ``ssl_context`` when given (an extra CA added to the system's
    roots), else ``roots`` (a CA file or directory; certifi's roots when None; no
    verification when False); ``cert`` is a client certificate (a file, or (cert, key)).
    The proxy variables (HTTPS_PROXY, NO_PROXY, ...) are read once here, with the rules
    of the standard library. Every request honours the attempt's bound. Raises
    ``ManifestError`` for a proxy whose scheme is not supported.
    """
    options: dict[str, Any] = {"maxsize": maxsize, "block": False}
    if urllib.parse.urlsplit(url).scheme == "https":
        context = ssl_context or tls_context(roots, cert)
        options["ssl_context"] = context
        if context.verify_mode == ssl.CERT_NONE:
            options["cert_reqs"] = ssl.CERT_NONE
            options["assert_hostname"] = False
    proxy = proxy_for(url)
    return pool_manager(**options) if not proxy else proxy_manager(proxy, **options)


def tls_context(roots: str | Literal[False] | None = None, cert: str | tuple[str, str] | None = None) -> ssl.SSLContext:
    """The TLS settings of a source's connections, in one place for every way it connects.

    ``roots``: a CA file or directory, certifi's roots when None, no verification when
    False. ``cert``: a client certificate file (holding its key too), or (cert, key).
    Raises ``ManifestError`` (78) for files that cannot be loaded: retrying cannot help.
    """
    if roots is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        roots = roots or _default_roots()
        try:
            context = ssl.create_default_context(capath=roots) if os.path.isdir(roots) else ssl.create_default_context(cafile=roots)
        except (OSError, ssl.SSLError, ValueError):
            raise ManifestError(f"TLS: cannot load the CA certificates in {roots}") from None
    files = cert if isinstance(cert, tuple) else (cert,) if cert else ()
    try:
        if files:
            context.load_cert_chain(*files)
    except (OSError, ssl.SSLError, ValueError):
        shown = " and ".join(files)
        raise ManifestError(f"TLS: cannot load the client certificate and key from {shown} (PEM, matching each other)") from None
    return context


def _default_roots() -> str:
    import certifi  # the roots every Python HTTP client trusts by default

    return str(certifi.where())


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (HTTPS_PROXY, NO_PROXY, ...), or None."""
    parts = urllib.parse.urlsplit(url)
    return _proxy_for(parts.scheme, parts.hostname or "")


def _proxy_for(scheme: str, host: str) -> str | None:
    # The standard library's reading of the variables. On Linux it looks only at variables
    # named *_proxy (any case): without one, skip importing it.
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None
    import urllib.request

    proxies = urllib.request.getproxies()
    if not proxies or urllib.request.proxy_bypass(host):
        return None
    return proxies.get(scheme) or proxies.get("all")


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what lies behind it: exception arguments, ``reason``, causes and contexts.

    urllib3 wraps ``ssl`` and ``socket``; azure-identity wraps MSAL and azure-core. Each exception is visited once, at most 20.
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
    # An SDK's own SSLError (azure-core wraps urllib3's) is matched by name too.
    return any(isinstance(e, (ssl.SSLError, urllib3.exceptions.SSLError)) or type(e).__name__ == "SSLError" for e in causes(exc))


def cert_not_trusted(exc: BaseException) -> bool:
    """True when a TLS failure is the server's certificate failing verification."""
    return any(isinstance(e, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(e) for e in causes(exc))


# What OpenSSL says when the answer to its hello is not TLS at all (a plain-HTTP server behind an
# https:// address): 1.1 and 3.0 "wrong version number", 3.2 on "record layer failure" or
# "packet length too long" (the reason codes, and the same words in SDKs' wrapped messages).
_NOT_TLS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG",
            "wrong version number", "record layer failure", "packet length too long")
NOT_TLS_HINT = "the server does not speak TLS (is the server plain HTTP? try http://)"


def not_tls(exc: BaseException) -> bool:
    """True when a TLS handshake got an answer that is not TLS: the address says https:// to a plain-HTTP server."""
    return any(getattr(e, "reason", None) in _NOT_TLS or any(words in str(e) for words in _NOT_TLS) for e in causes(exc))


def lasting_tls_failure(exc: BaseException) -> Literal["not-tls", "untrusted"] | None:
    """A TLS failure that no retry can heal: ``not-tls`` (a plain-HTTP server), ``untrusted`` (the
    server's certificate does not verify); None for any other failure (a reset handshake heals)."""
    if not tls_failed(exc) and not not_tls(exc):
        return None
    if cert_not_trusted(exc):
        return "untrusted"
    return "not-tls" if not_tls(exc) else None


# The alerts a server sends when it refuses the client certificate it asked for (OpenSSL's
# names for them), in plain words. An alert is about what this side sent: a server
# certificate this side refuses is CERTIFICATE_VERIFY_FAILED, raised here, never an alert.
_CLIENT_CERT_ALERTS = {
    "ALERT_UNKNOWN_CA": "not signed by a CA it trusts",
    "ALERT_CERTIFICATE_EXPIRED": "expired",
    "ALERT_CERTIFICATE_REVOKED": "revoked",
    "ALERT_BAD_CERTIFICATE": "a bad certificate",
    "ALERT_UNSUPPORTED_CERTIFICATE": "an unsupported certificate",
    "ALERT_CERTIFICATE_UNKNOWN": "not accepted",
    "ALERT_CERTIFICATE_REQUIRED": "none was presented",
}


def client_cert_refused(exc: BaseException) -> str | None:
    """Why the server refused this side's TLS client certificate (plain words), or None when it did not."""
    for err in causes(exc):
        if isinstance(err, ssl.SSLError) or type(err).__name__ == "SSLError":
            text = f"{getattr(err, 'reason', '')} {err}"
            for alert, words in _CLIENT_CERT_ALERTS.items():
                if alert in text:
                    return words
    return None


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
        if cert_not_trusted(exc):
            return "TLS certificate not trusted"
        if not_tls(exc):
            return f"TLS handshake failed: {NOT_TLS_HINT}"
        refused = client_cert_refused(exc)
        return f"TLS client certificate refused ({refused})" if refused else "TLS handshake failed"
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
