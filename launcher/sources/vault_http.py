"""Vault's HTTP API for reads, and what its answers mean to the launcher.

``VaultHTTP`` sends the GETs that make up nearly all of the traffic (mount
detection, data reads, the watcher's metadata checks) through one pooled
urllib3 manager per source. Why not through hvac: each hvac call goes through
requests, which re-reads the proxy variables and ``~/.netrc`` and rebuilds the
request on every call; that cost about twice the CPU per read (1.4 ms against
0.7 ms, see benchmarks/RESULTS.md), which is what a watcher of 100 secrets pays
every interval and ``exec`` pays before its child starts. hvac (with requests)
stays for logins, token and lease operations, and is imported only when one
of those happens.

``from_status`` maps a Vault HTTP status to the launcher's errors; both this
transport and ``vault_auth.vault_errors`` (hvac) use it, so a status means the
same whichever client saw it.
"""

from __future__ import annotations

import email.utils
import json
import os
import ssl
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal

import urllib3

from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError, TransientError, UnavailableError

# The resolver runs up to 32 fetches at once on one source; a smaller pool makes
# urllib3 open throw-away connections and warn "Connection pool is full".
POOL_SIZE = 32
# (connect, read): a reachable Vault connects in milliseconds and answers reads
# quickly, so fail fast and let the resolver's retry policy decide what next.
TIMEOUT = (5.0, 10.0)
# Follow the redirect a standby node answers with (307 to the active node), but
# never retry here: the resolver's retry policy owns every repeat.
_RETRIES = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=3, raise_on_redirect=True)


@dataclass(frozen=True)
class Connection:
    """Where and how to reach Vault; built once per source by ``vault.connection_settings``."""

    address: str
    namespace: str | None
    verify: bool | str
    cert: str | tuple[str, str] | None


class VaultResponseError(Exception):
    """An HTTP error answer from Vault, kept as the ``__cause__`` of the launcher error.

    ``json`` is the decoded body: a KV v2 404 carries the version's metadata
    (deleted or destroyed), never its data. The message holds the status only.
    """

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.json = body


class VaultHTTP:
    """Pooled GETs to one Vault address; thread-safe, no I/O until the first request."""

    def __init__(self, conn: Connection, timeout: tuple[float, float] = TIMEOUT) -> None:
        self._address = conn.address
        self._namespace = conn.namespace
        self._pool = _pool_manager(conn)
        # By name: Timeout's first positional parameter is the total, not the connect timeout.
        self._timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])

    def get(self, path: str, token: str, what: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """The JSON body of ``GET /v1/<path>``; raises a ``LauncherError`` for anything else.

        ``what`` names the reference in errors. 4xx/5xx map through
        ``from_status`` (with Retry-After); transport failures through
        ``from_transport``; a body that is not a JSON object is ``UnavailableError``.
        """
        # Quoted: a key or path may hold '#', '?' or spaces (escaped as %23 / %3F in references).
        url = f"{self._address}/v1/{urllib.parse.quote(path, safe='/')}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"X-Vault-Token": token, "X-Vault-Request": "true"}
        if self._namespace:
            headers["X-Vault-Namespace"] = self._namespace
        try:
            resp = self._pool.request("GET", url, headers=headers, retries=_RETRIES, timeout=self._timeout)
        except urllib3.exceptions.HTTPError as exc:
            raise from_transport(exc, what) from exc
        try:
            body = json.loads(resp.data)
        except ValueError:
            body = None
        if resp.status >= 400:
            cause = VaultResponseError(resp.status, body if isinstance(body, dict) else {})
            errors = cause.json.get("errors")
            raise from_status(resp.status, what, errors, retry_after=retry_after(resp.headers.get("Retry-After"))) from cause
        if not isinstance(body, dict):
            raise UnavailableError(f"{what}: the answer is not from a Vault API (not a JSON object)")
        return body

    def close(self) -> None:
        self._pool.clear()


def _pool_manager(conn: Connection) -> urllib3.PoolManager:
    """A pool with the connection's TLS settings, through the proxy the environment names.

    The proxy variables (HTTPS_PROXY, NO_PROXY, ...) are read once here, with the
    rules the standard library and requests share, so reads and logins take the
    same route.
    """
    options: dict[str, Any] = {"maxsize": POOL_SIZE, "block": False}
    roots = trusted_roots(conn)
    if roots is False:
        options["cert_reqs"] = ssl.CERT_NONE
    else:
        options["ca_cert_dir" if os.path.isdir(roots) else "ca_certs"] = roots
    if isinstance(conn.cert, tuple):
        options["cert_file"], options["key_file"] = conn.cert
    elif conn.cert:
        options["cert_file"] = conn.cert
    parts = urllib.parse.urlsplit(conn.address)
    proxy = _proxy_for(parts.scheme, parts.hostname or "")
    if not proxy:
        return urllib3.PoolManager(**options)
    try:
        return urllib3.ProxyManager(proxy, **options)
    except urllib3.exceptions.ProxySchemeUnknown:
        raise ManifestError(f"{conn.address}: the proxy in the environment is not an http(s) proxy") from None


def trusted_roots(conn: Connection) -> str | Literal[False]:
    """What both Vault clients verify the server with: the configured CA file or directory,
    else certifi's roots; False with skip_verify.

    A path, never True, for hvac's requests session too: given True, requests would swap in
    REQUESTS_CA_BUNDLE from the environment, and logins and reads would trust different roots.
    """
    if conn.verify is False:
        return False
    if isinstance(conn.verify, str):
        return conn.verify
    import certifi  # requests' own default, so nothing changes for hvac

    return str(certifi.where())


def _proxy_for(scheme: str, host: str) -> str | None:
    # The standard library's reading of the variables, which requests uses too.
    proxies = urllib.request.getproxies()
    if not proxies or urllib.request.proxy_bypass(host):
        return None
    return proxies.get(scheme) or proxies.get("all")


def from_status(status: int, what: str, errors: Any, *, login: bool = False,
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
        detail = " (sealed or standby)" if status == 503 else ""
        return TransientError(f"{what}: Vault unavailable ({status}){detail}", retry_after=retry_after)
    return UnavailableError(f"{what}: unexpected answer from Vault ({status or 'no status'})")


def from_transport(exc: urllib3.exceptions.HTTPError, what: str) -> LauncherError:
    """The launcher error for a urllib3 failure to get an answer at all."""
    reason: BaseException = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason else exc
    if isinstance(reason, urllib3.exceptions.SSLError):
        return tls_failure(reason, what)
    if isinstance(reason, urllib3.exceptions.NewConnectionError):  # a subclass of the timeouts, so first
        return TransientError(f"{what}: cannot connect to Vault")
    if isinstance(reason, urllib3.exceptions.TimeoutError):
        return TransientError(f"{what}: Vault timed out")
    if isinstance(reason, urllib3.exceptions.LocationValueError):
        return ManifestError(f"{what}: invalid Vault address")
    if isinstance(reason, urllib3.exceptions.ResponseError):
        return UnavailableError(f"{what}: too many redirects")
    return TransientError(f"{what}: cannot connect to Vault")


def tls_failure(exc: BaseException, what: str) -> LauncherError:
    """A failed TLS handshake: 77 when the certificate does not verify, else transient.

    Decision: a certificate that does not verify is 77, not 69. The server failed
    to authenticate itself; retrying for a minute cannot fix a wrong CA. Other
    TLS failures (a reset during the handshake) stay transient.
    """
    if cert_verify_failed(exc):
        return AuthError(f"{what}: the server's TLS certificate is not trusted (check tls.ca_cert or VAULT_CACERT)")
    return TransientError(f"{what}: TLS handshake failed")


def cert_verify_failed(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):  # walk args and causes: requests wraps urllib3 wraps ssl
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        inner = next((a for a in seen.args if isinstance(a, BaseException)), None)
        seen = inner or getattr(seen, "reason", None) or seen.__cause__ or seen.__context__
    return False


def retry_after(header: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not header:
        return None
    if header.strip().isdigit():
        return float(header.strip())
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
