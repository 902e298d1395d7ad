"""Every request a Vault source makes, through one pooled urllib3 manager, and what Vault's answers mean.

``VaultHTTP`` sends each request of a source, whoever asks: the reads (mount
detection, data reads, the watcher's metadata checks), the token's lookup, and
hvac's logins, renewals and lease operations (``launcher.sources.vault.adapter``
hands them here). One pool per source holds its TLS settings, the proxy the
environment names, and connections whose sockets the attempt's deadline watchdog
may shut down (``launcher.sources.transport``). Why not through hvac's own
requests session for reads: it re-reads the proxy variables and ``~/.netrc`` on
every call, about twice the CPU per read (benchmarks/RESULTS.md), and it would be
a second set of TLS and proxy settings to keep equal by hand.

Failures are raised as two exceptions of this module, ``VaultAnswerError`` (an HTTP
error status) and ``VaultTransportError`` (no usable answer), and turned into the
launcher's errors in one place, ``vault_errors`` (``from_status``, ``from_transport``),
which names the reference or operation.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import urllib3

from launcher import deadline
from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError, TransientError, UnavailableError
from launcher.sources.transport import (
    NOT_TLS_HINT,
    causes,
    client_cert_refused,
    describe,
    http_pool,
    lasting_tls_failure,
    retry_after,
    tls_failed,
)
from launcher.sources.vault.connection import Connection

log = logging.getLogger(__name__)

# The resolver runs up to 32 fetches at once on one source; a smaller pool makes
# urllib3 open throw-away connections and warn "Connection pool is full".
POOL_SIZE = 32
# (connect, read): a reachable Vault connects in milliseconds and answers quickly,
# so fail fast and let the resolver's retry policy decide what next.
TIMEOUT = (5.0, 10.0)
# Follow the redirect a standby node answers with (307 to the active node), but
# never retry here: the resolver's retry policy owns every repeat.
_RETRIES = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=3, raise_on_redirect=True)


class VaultAnswerError(Exception):
    """An HTTP error answer from Vault, kept as the ``__cause__`` of the launcher error.

    ``json`` is the decoded body: a KV v2 404 carries the version's metadata
    (deleted or destroyed), never its data. The message holds the status only.
    """

    def __init__(self, status: int, body: dict[str, Any], retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.json = body
        self.retry_after = retry_after


class VaultTransportError(Exception):
    """No usable answer: the request failed on the way (``cause``), or what came back is not Vault's."""

    def __init__(self, cause: BaseException | None, read_timeout: float | None = None, detail: str | None = None) -> None:
        super().__init__(detail or "transport failure")
        self.cause = cause
        self.read_timeout = read_timeout
        self.detail = detail


class VaultHTTP:
    """Requests to one Vault address; thread-safe, no I/O until the first request."""

    def __init__(self, conn: Connection, timeout: tuple[float, float] = TIMEOUT) -> None:
        self.address = conn.address
        self.namespace = conn.namespace
        self._pool = http_pool(conn.address, roots=conn.roots, cert=conn.cert, maxsize=POOL_SIZE)
        self._connect_timeout, self._read_timeout = timeout

    def get(self, path: str, token: str, what: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """The JSON body of ``GET /v1/<path>``; a ``LauncherError`` naming ``what`` for anything else."""
        with vault_errors(what, self.address):
            return self.request("GET", path, token, params=params)

    def request(self, method: str, path: str, token: str, *, params: dict[str, str] | None = None,
                body: Any = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """The JSON body of ``METHOD /v1/<path>`` (``{}`` for a 204, an answer without content).

        Raises ``VaultAnswerError`` for an error status, ``VaultTransportError`` when no
        usable answer came; map both with ``vault_errors``. Timeouts are cut to what is
        left of the attempt's bound (``launcher.deadline``).
        """
        url = self.address + target(path, params)
        sent = {"X-Vault-Request": "true", **(headers or {})}
        if token:
            sent["X-Vault-Token"] = token
        if self.namespace:
            sent["X-Vault-Namespace"] = self.namespace
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        read = deadline.cut(self._read_timeout)
        timeout = urllib3.Timeout(connect=deadline.cut(self._connect_timeout), read=read)
        try:
            resp = self._pool.request(method, url, headers=sent, body=data, retries=_RETRIES, timeout=timeout)
        except urllib3.exceptions.HTTPError as exc:
            raise VaultTransportError(exc, read) from exc
        answer = _json_object(resp.data)
        if resp.status >= 400:
            raise VaultAnswerError(resp.status, answer or {}, retry_after(resp.headers.get("Retry-After")))
        if answer is None:
            if resp.status == 204:  # no content: what Vault answers to a revocation, for instance
                return {}
            raise VaultTransportError(None, detail="the answer is not Vault's (not a JSON object)")
        return answer

    def close(self) -> None:
        self._pool.clear()


def target(path: str, params: dict[str, str] | None = None) -> str:
    """``/v1/<path>[?params]``, to follow the address (which may end in a path of its own)."""
    # Quoted: a key or path may hold '#', '?' or spaces (escaped as %23 / %3F in references).
    quoted = f"/v1/{urllib.parse.quote(path.lstrip('/'), safe='/')}"
    return quoted + "?" + urllib.parse.urlencode(params) if params else quoted


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(data)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


@contextmanager
def vault_errors(what: str, address: str, *, login: bool = False) -> Iterator[None]:
    """Turn the failures of requests made inside into the launcher's errors, naming ``what``.

    The one mapping for every request of a Vault source, reads and hvac's calls
    alike: statuses as ``from_status`` says (``login``: a rejected login is 77),
    failures to get an answer as ``from_transport``.
    """
    try:
        yield
    except VaultAnswerError as exc:
        raise from_status(exc.status, what, exc.json.get("errors"), address=address, login=login,
                          retry_after=exc.retry_after) from exc
    except VaultTransportError as exc:
        if exc.cause is None:
            raise TransientError(f"{what}: Vault at {address}: {exc.detail}", cause=exc.detail, where=address) from None
        raise from_transport(exc.cause, what, address, exc.read_timeout) from exc.cause


def from_status(status: int, what: str, errors: Any, *, address: str, login: bool = False,
                retry_after: float | None = None) -> LauncherError:
    """The launcher error for a Vault HTTP error status.

    400 -> 78 (a rejected login -> 77), 405 -> 78; 401/403 -> 77; 404 -> 66;
    412/429/5xx (sealed, standby, overloaded) -> ``TransientError``.
    """
    if status == 400:
        if login:
            return AuthError(f"{what}: login rejected (400)")
        # Vault's 400 texts name paths and parameters, never secret data.
        reason = "; ".join(str(e) for e in errors or [])[:200] or "bad request"
        return ManifestError(f"{what}: Vault rejected the request (400: {reason})")
    if status == 405:
        return ManifestError(f"{what}: this path cannot be read (405)")
    if status in (401, 403):
        return AuthError(f"{what}: {'login failed' if login else 'permission denied'} ({status})")
    if status == 404:
        return NotFoundError(f"{what}: not found")
    if status in (412, 429) or status >= 500:
        detail = " (sealed or standby)" if status == 503 else " (too many requests)" if status == 429 else ""
        return TransientError(f"{what}: Vault at {address}: HTTP {status}{detail}", retry_after=retry_after,
                              cause=f"HTTP {status}{detail}", where=address)
    return UnavailableError(f"{what}: Vault at {address}: unexpected answer (HTTP {status or 'without a status'})")


def from_transport(exc: BaseException, what: str, address: str, read_timeout: float | None = None) -> LauncherError:
    """The launcher error for a failure to get an answer at all."""
    chain = list(causes(exc))
    if any(isinstance(e, urllib3.exceptions.LocationValueError) for e in chain):
        return ManifestError(f"{what}: invalid Vault address {address}")
    if any(isinstance(e, urllib3.exceptions.ResponseError) for e in chain):
        return UnavailableError(f"{what}: Vault at {address}: too many redirects")
    if tls_failed(exc):
        return tls_failure(exc, what, address)
    cause = describe(exc, read_timeout)
    return TransientError(f"{what}: Vault at {address}: {cause}", cause=cause, where=address)


def tls_failure(exc: BaseException, what: str, address: str) -> LauncherError:
    """A failed TLS handshake: 77 when the certificate does not verify, 69 at once when the
    server does not speak TLS, else transient.

    Decision: a certificate that does not verify is 77, not 69. The server failed
    to authenticate itself; retrying for a minute cannot fix a wrong CA. So is a
    client certificate the server refuses (an unknown CA, expired): 77. An answer
    that is not TLS (a plain-HTTP server behind an https:// address) cannot heal
    either: 69, not retried, with the hint. Other TLS failures (a reset during the
    handshake) stay transient.
    """
    lasting = lasting_tls_failure(exc)
    if lasting == "untrusted":
        return AuthError(f"{what}: Vault at {address}: the server's TLS certificate is not trusted (check tls.ca_cert or VAULT_CACERT)")
    if lasting == "not-tls":
        return UnavailableError(f"{what}: Vault at {address}: TLS handshake failed: {NOT_TLS_HINT}")
    refused = client_cert_refused(exc)
    if refused is not None:  # the server authenticated us and said no: as final as a 403
        return AuthError(f"{what}: Vault at {address}: the server refused the TLS client certificate ({refused}; "
                         "check auth.cert_file or tls.client_cert)")
    return TransientError(f"{what}: Vault at {address}: TLS handshake failed", cause="TLS handshake failed", where=address)
