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
same whichever client saw it. ``connection_settings`` says where and how to
reach Vault (the manifest, else the VAULT_* and BAO_* variables), for both
clients; ``open_client`` builds hvac's.
"""

from __future__ import annotations

import contextlib
import http.client  # loaded by urllib3 anyway
import json
import logging
import os
import ssl
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import urllib3

from launcher import deadline
from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError, TransientError, UnavailableError
from launcher.sources.transport import causes, cert_not_trusted, check_url, describe, pool_manager, proxy_manager, retry_after, tls_failed
from launcher.sources.transport import session as bounded_session
from launcher.sources.vault import VaultSourceConfig

log = logging.getLogger(__name__)
_TRUE = {"1", "t", "true"}  # what Go's strconv.ParseBool accepts, as the Vault CLI does
_FALSE = {"0", "f", "false"}

# The resolver runs up to 32 fetches at once on one source; a smaller pool makes
# urllib3 open throw-away connections and warn "Connection pool is full".
POOL_SIZE = 32
# (connect, read): a reachable Vault connects in milliseconds and answers reads
# quickly, so fail fast and let the resolver's retry policy decide what next.
TIMEOUT = (5.0, 10.0)
# A batch of reads (``get_many``) is spread over this many connections, each carrying its
# share of the GETs pipelined. Four keep every read on a connection of its own for small
# batches' sake and still put 25 reads on each for 100 secrets.
PIPELINE_CONNECTIONS = 4
# Follow the redirect a standby node answers with (307 to the active node), but
# never retry here: the resolver's retry policy owns every repeat.
_RETRIES = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=3, raise_on_redirect=True)


@dataclass(frozen=True)
class Connection:
    """Where and how to reach Vault; built once per source by ``connection_settings``."""

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
        self.address = conn.address
        self._namespace = conn.namespace
        self._pool = _pool_manager(conn)
        self._connect_timeout, self._read_timeout = timeout

    def get(self, path: str, token: str, what: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """The JSON body of ``GET /v1/<path>``; raises a ``LauncherError`` for anything else.

        ``what`` names the reference in errors. 4xx/5xx map through
        ``from_status`` (with Retry-After); transport failures through
        ``from_transport``; a body that is not a JSON object is transient (a
        proxy or load balancer answering for Vault). Timeouts are cut to what
        is left of the attempt's bound (``launcher.deadline``).
        """
        url = self.address + self._target(path, params)
        headers = {"X-Vault-Token": token, "X-Vault-Request": "true"}
        if self._namespace:
            headers["X-Vault-Namespace"] = self._namespace
        read = deadline.cut(self._read_timeout)
        timeout = urllib3.Timeout(connect=deadline.cut(self._connect_timeout), read=read)
        try:
            resp = self._pool.request("GET", url, headers=headers, retries=_RETRIES, timeout=timeout)
        except urllib3.exceptions.HTTPError as exc:
            raise from_transport(exc, what, self.address, read) from exc
        try:
            body = json.loads(resp.data)
        except ValueError:
            body = None
        if resp.status >= 400:
            cause = VaultResponseError(resp.status, body if isinstance(body, dict) else {})
            errors = cause.json.get("errors")
            raise from_status(resp.status, what, errors, address=self.address,
                              retry_after=retry_after(resp.headers.get("Retry-After"))) from cause
        if not isinstance(body, dict):
            raise TransientError(f"{what}: Vault at {self.address}: the answer is not Vault's (not a JSON object)")
        return body

    def get_many(self, paths: Sequence[tuple[str, dict[str, str] | None]], token: str) -> list[dict[str, Any] | None]:
        """Best effort: the JSON body of each ``GET /v1/<path>`` that answered 200, else None.

        Why: 100 reads through the pool take 32 threads, four round trips and about
        0.4 ms of CPU each (GIL hand-offs included); pipelined over a few connections
        from one thread (HTTP/1.1, which Vault's Go server answers in order) they take
        one round trip and a seventh of the CPU (benchmarks/RESULTS.md, "Concurrency").
        What is left as None (any other status, a closed or failed connection, the
        caller's ``deadline.bound`` passing) is read again with ``get``, which owns the
        retries and the messages, so nothing here raises or logs above debug. Never
        through a proxy: many do not pass pipelined requests on.
        """
        results: list[dict[str, Any] | None] = [None] * len(paths)
        if not paths or isinstance(self._pool, urllib3.ProxyManager):
            return results
        pool = self._pool.connection_from_url(self.address)
        address = urllib.parse.urlsplit(self.address)
        prefix = address.path.rstrip("/")
        head = f"Host: {address.netloc.rpartition('@')[2]}\r\nX-Vault-Token: {token}\r\nX-Vault-Request: true\r\n"
        if self._namespace:
            head += f"X-Vault-Namespace: {self._namespace}\r\n"
        shares = [range(first, len(paths), PIPELINE_CONNECTIONS) for first in range(min(PIPELINE_CONNECTIONS, len(paths)))]
        opened: list[tuple[Any, range]] = []
        conn: Any = None
        try:
            for share in shares:
                # A connection of the pool's own class: its TLS settings, and a socket the
                # attempt's watchdog may shut down (launcher.deadline).
                conn = pool._new_conn()
                conn.timeout = deadline.cut(self._connect_timeout)
                conn.connect()
                conn.sock.settimeout(deadline.cut(self._read_timeout))
                conn.sock.sendall("".join(f"GET {prefix}{self._target(*paths[i])} HTTP/1.1\r\n{head}\r\n" for i in share).encode())
                opened.append((conn, share))
        except _FAILURES as exc:
            if conn is not None:
                conn.close()  # the one that failed; those already sent are read below
            log.debug("pipelined reads from %s: a connection failed (%s)", self.address, describe(exc))
        sent = time.monotonic()
        try:
            for conn, share in opened:
                self._answers(conn, share, results, sent)
        finally:
            for conn, _ in opened:
                conn.close()
        return results

    def _answers(self, conn: Any, share: range, results: list[dict[str, Any] | None], sent: float) -> None:
        """Read one connection's pipelined answers into ``results``, until one fails or the connection ends."""
        answers = _Answers(conn.sock.makefile("rb"))
        try:
            for n, i in enumerate(share):
                resp = http.client.HTTPResponse(answers, method="GET")  # type: ignore[arg-type]
                resp.begin()
                if n == 0:
                    # The answers after the first come at once from a server that pipelines; a
                    # load balancer that does not pass pipelined requests on never sends them:
                    # stop waiting soon, and let ``get`` read those.
                    conn.sock.settimeout(deadline.cut(max(0.25, 4 * (time.monotonic() - sent))))
                data = resp.read()
                if resp.status == 200:
                    with contextlib.suppress(ValueError):
                        body = json.loads(data)
                        results[i] = body if isinstance(body, dict) else None
                if resp.will_close:
                    return
        except _FAILURES as exc:
            log.debug("pipelined reads from %s stopped (%s); the rest are read one by one", self.address, describe(exc))

    @staticmethod
    def _target(path: str, params: dict[str, str] | None) -> str:
        """``/v1/<path>[?params]``, to follow the address (which may end in a path of its own)."""
        # Quoted: a key or path may hold '#', '?' or spaces (escaped as %23 / %3F in references).
        target = f"/v1/{urllib.parse.quote(path, safe='/')}"
        return target + "?" + urllib.parse.urlencode(params) if params else target

    def close(self) -> None:
        self._pool.clear()


# What ends a batch's reads early.
_FAILURES = (OSError, urllib3.exceptions.HTTPError, http.client.HTTPException)


class _Answers:
    """One connection's pipelined answers, read in turn by ``http.client.HTTPResponse``.

    An ``HTTPResponse`` reads through ``sock.makefile()`` and closes that file at
    the end of its body. Answers that follow each other need one buffered reader
    (bytes of the next answer may already sit in its buffer), kept open between them.
    """

    def __init__(self, reader: Any) -> None:
        self._reader = reader

    def makefile(self, mode: str) -> _Answers:
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    def close(self) -> None:
        pass  # the connection is closed by ``get_many``


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
        return pool_manager(**options)
    return proxy_manager(proxy, **options)


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
    # The standard library's reading of the variables, which requests uses too. On Linux it
    # looks only at variables named *_proxy (any case): without one, skip importing it.
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None
    import urllib.request

    proxies = urllib.request.getproxies()
    if not proxies or urllib.request.proxy_bypass(host):
        return None
    return proxies.get(scheme) or proxies.get("all")


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
        return TransientError(f"{what}: Vault at {address}: HTTP {status}{detail}", retry_after=retry_after)
    return UnavailableError(f"{what}: Vault at {address}: unexpected answer (HTTP {status or 'without a status'})")


def from_transport(exc: BaseException, what: str, address: str, read_timeout: float | None = None) -> LauncherError:
    """The launcher error for a failure to get an answer at all (urllib3 or requests)."""
    chain = list(causes(exc))
    if any(isinstance(e, urllib3.exceptions.LocationValueError) for e in chain):
        return ManifestError(f"{what}: invalid Vault address {address}")
    if any(isinstance(e, urllib3.exceptions.ResponseError) for e in chain):
        return UnavailableError(f"{what}: Vault at {address}: too many redirects")
    if tls_failed(exc):
        return tls_failure(exc, what, address)
    return TransientError(f"{what}: Vault at {address}: {describe(exc, read_timeout)}")


def tls_failure(exc: BaseException, what: str, address: str) -> LauncherError:
    """A failed TLS handshake: 77 when the certificate does not verify, else transient.

    Decision: a certificate that does not verify is 77, not 69. The server failed
    to authenticate itself; retrying for a minute cannot fix a wrong CA. Other
    TLS failures (plain HTTP behind an https:// address, a reset during the
    handshake) stay transient.
    """
    if cert_not_trusted(exc):
        return AuthError(f"{what}: Vault at {address}: the server's TLS certificate is not trusted (check tls.ca_cert or VAULT_CACERT)")
    return TransientError(f"{what}: Vault at {address}: TLS handshake failed")


def connection_settings(config: VaultSourceConfig, environ: Mapping[str, str]) -> Connection:
    """The manifest's address, namespace and TLS, else the VAULT_* variables, else OpenBao's BAO_*.

    A manifest that sets ``ca_cert`` or ``ca_path`` ignores both CA variables.
    Raises ``ManifestError`` (78), before any request, for what cannot work: no
    address, an address without http(s)://, a CA or client certificate file
    that does not exist, a bad VAULT_SKIP_VERIFY, a namespace with control characters.
    """
    what = f"source {config.name!r}"
    address, origin = config.address, f"sources.{config.name}.address"
    if not address:
        origin, address = _variable(environ, "ADDR")
    if not address:
        raise ManifestError(f"{what}: no Vault address (set VAULT_ADDR or sources.{config.name}.address)")
    namespace = config.namespace or _variable(environ, "NAMESPACE")[1] or None
    if namespace is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in namespace):
        raise ManifestError(f"{what}: the namespace holds a control character")
    return Connection(check_url(address, f"{what}: {origin}"), namespace, _verify(config, environ, what),
                      _client_cert(config, environ, what))


def _verify(config: VaultSourceConfig, environ: Mapping[str, str], what: str) -> bool | str:
    """False (skip_verify), a CA file or directory that exists, or True (the default roots)."""
    tls = config.tls
    skip = tls.skip_verify
    if skip is None:
        name, text = _variable(environ, "SKIP_VERIFY")
        text = text.strip().lower()
        if text and text not in _TRUE | _FALSE:
            raise ManifestError(f"{what}: {name} must be true or false")
        skip = text in _TRUE
    if skip:
        log.warning("source %s: TLS verification is off (skip_verify): anyone on the path can read the secrets", config.name)
        return False
    if tls.ca_cert or tls.ca_path:
        return _existing(tls.ca_cert or tls.ca_path or "", f"{what}: tls.{'ca_cert' if tls.ca_cert else 'ca_path'}")
    for suffix in ("CACERT", "CAPATH"):  # CACERT wins over CAPATH, as in the CLI; VAULT_* over BAO_*
        name, value = _variable(environ, suffix)
        if value:
            return _existing(value, f"{what}: {name}")
    return True


def _client_cert(config: VaultSourceConfig, environ: Mapping[str, str], what: str) -> str | tuple[str, str] | None:
    """The client certificate (and key) for mTLS, each a file that exists; None without one."""
    tls = config.tls
    cert_name, cert_file = ("tls.client_cert", tls.client_cert) if tls.client_cert else _variable(environ, "CLIENT_CERT")
    key_name, key_file = ("tls.client_key", tls.client_key) if tls.client_key else _variable(environ, "CLIENT_KEY")
    if cert_file:
        cert_file = _existing(cert_file, f"{what}: {cert_name}")
    if key_file:
        key_file = _existing(key_file, f"{what}: {key_name}")
    return (cert_file, key_file) if cert_file and key_file else cert_file or None


def _variable(environ: Mapping[str, str], suffix: str) -> tuple[str, str]:
    """(name, value) of VAULT_<suffix>, else OpenBao's BAO_<suffix>; ("VAULT_<suffix>", "") when neither is set."""
    for prefix in ("VAULT_", "BAO_"):
        value = environ.get(prefix + suffix, "")
        if value:
            return prefix + suffix, value
    return "VAULT_" + suffix, ""


def _existing(path: str, what: str) -> str:
    """``path`` when it names an existing file or directory; ``ManifestError`` (78) otherwise."""
    if "\0" in path:
        raise ManifestError(f"{what}: the file name holds a NUL byte")
    if not os.path.exists(path):
        raise ManifestError(f"{what}: {path} does not exist")
    return path


def open_client(conn: Connection) -> Any:
    """An ``hvac.Client`` on a pooled session; it holds no token yet."""
    import hvac  # here, not at the top: a run that only reads never needs it (about 30 ms)

    from launcher.sources.vault_auth import note_response  # vault_auth imports this module

    session = bounded_session(pool_maxsize=POOL_SIZE)
    # hvac prefers the session's verify/cert over its own arguments: set both.
    session.verify = roots = trusted_roots(conn)
    session.cert = conn.cert
    session.hooks["response"].append(note_response)
    # token="" (not None): hvac would otherwise read VAULT_TOKEN / ~/.vault-token itself.
    return hvac.Client(url=conn.address, token="", verify=roots, cert=conn.cert,
                       timeout=TIMEOUT, session=session, namespace=conn.namespace)
