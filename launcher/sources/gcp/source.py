"""The ``gcp`` source: Google Secret Manager through google-cloud-secret-manager.

``gcp://projects/P/secrets/S[/versions/V][#KEY]``, or ``gcp://S[/versions/V][#KEY]``
in the source's project (``project:``, else ``GOOGLE_CLOUD_PROJECT``, else the
credentials' project). ``V`` is a version number, ``latest`` (the default) or an
alias. A version is named in the path only, as in Google's own resource names:
``?version=`` is refused (78), so one version has one spelling, one read and one
cache entry, and the watcher's rule "a pinned version never rotates" holds
(a number never moves; ``latest`` and aliases are checked). ``#KEY`` into a JSON
value is the resolver's job (``select``).

Credentials: Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``,
gcloud's file, the metadata server: GCE, Cloud Run, GKE Workload Identity), or
``credentials: none`` (anonymous, for emulators). ``endpoint``: ``http(s)://HOST``
is the REST API v1, a bare ``HOST[:PORT]`` gRPC (plaintext with ``credentials:
none``, TLS otherwise); the default is REST at ``https://secretmanager.googleapis.com``,
and no request outlives the attempt's bound (``launcher.deadline``: token requests on
the launcher's own bounded pools, API calls given up on at the bound). The SDK is
imported when the first request is made, never by parsing a manifest.

The client's own retries are off (``retry=None``): each call is one request (a 401
with real credentials makes google-auth fetch a new token and send it once more),
and ``launcher.retry`` owns every repeat. The payload's CRC32C is verified; a
mismatch is a transient error. Errors are mapped once, here (``map_error``)::

    NOT_FOUND                                         -> NotFoundError (66)
    PERMISSION_DENIED, UNAUTHENTICATED, no credentials -> AuthError (77)
    UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED,
      INTERNAL, UNKNOWN, ABORTED, connection, timeout -> TransientError (retried; 69 when spent)
    INVALID_ARGUMENT, FAILED_PRECONDITION (a DISABLED
      or DESTROYED version, named)                    -> ManifestError (78)

No value is put in a message or a repr; the SDK's loggers are capped at WARNING
(its debug logging, turned on by ``GOOGLE_SDK_PYTHON_LOGGING_SCOPE``, prints payloads).
"""

from __future__ import annotations

import os
import re
import threading
import urllib.parse
from collections.abc import Mapping
from functools import cache
from typing import Any

from launcher import deadline
from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError, TransientError, UnavailableError
from launcher.model.refs import FetchKey, Reference
from launcher.sources.base import Secret
from launcher.sources.gcp.config import GcpSourceConfig, SecretName, parse_path, reference_problem

READ_TIMEOUT = 10.0  # one request: REST connect and each read, gRPC the call's deadline
DEFAULT_HOST = "secretmanager.googleapis.com"
MAX_POOL = 32  # the resolver's fetch threads

_HOST_RE = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\Z")
_STATE_RE = re.compile(r"\b(DISABLED|DESTROYED) state\b")
_TRANSIENT = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN", "ABORTED"})
_INVALID = frozenset({"INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE"})
# HTTP -> status, for REST answers without Google's error body (a proxy's 502 page).
_BY_HTTP = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED",
            409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 501: "UNIMPLEMENTED", 504: "DEADLINE_EXCEEDED"}
_MAX_DETAIL = 300
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})  # where plain http may carry a token (an emulator, a local proxy)


class GcpSource:
    """Reads secrets from Google Secret Manager, over REST or gRPC.

    ``environ`` (default ``os.environ``) supplies ``GOOGLE_CLOUD_PROJECT``; the client
    (and the credentials) are made on the first request. Raises ``ManifestError`` (78)
    for an endpoint that cannot work.
    """

    def __init__(self, config: GcpSourceConfig, *, environ: Mapping[str, str] | None = None,
                 timeout: float = READ_TIMEOUT) -> None:
        env = os.environ if environ is None else environ
        self.name = config.name
        self.config = config
        self.timeout = timeout
        self.project = config.project or env.get("GOOGLE_CLOUD_PROJECT") or None
        endpoint = (config.endpoint or "").strip() or f"https://{DEFAULT_HOST}"
        self.grpc = not endpoint.startswith(("http://", "https://"))
        if self.grpc and not _HOST_RE.match(endpoint):
            raise ManifestError(f"source {config.name!r}: endpoint {endpoint!r} is neither http(s)://HOST[:PORT] (REST) "
                                "nor HOST[:PORT] (gRPC)")
        if not self.grpc:
            from launcher.sources.transport import check_url

            endpoint = check_url(endpoint, f"source {config.name!r}: endpoint")
            host = urllib.parse.urlsplit(endpoint).hostname or ""
            if endpoint.startswith("http://") and config.credentials != "none" and host not in _LOOPBACK:
                raise ManifestError(f"source {config.name!r}: endpoint {endpoint} is plain http, which would send the access "
                                    "token in clear: use https://, a loopback address, or `credentials: none` for an emulator")
        self.endpoint = endpoint
        self._client: Any = None
        self._lock = threading.Lock()

    def fetch(self, path: str, version: str | None) -> Secret:
        """The payload of the version the path names (``latest`` by default) and its number.

        Raises ``NotFoundError``, ``AuthError``, ``TransientError`` (retryable: also a
        checksum mismatch), ``UnavailableError`` or ``ManifestError`` (a bad reference,
        no project, a disabled or destroyed version, a payload that is not UTF-8).
        """
        where = str(FetchKey(self.name, path, version))
        response = self._call("access_secret_version", path, version)
        data = bytes(response.payload.data)
        # A proto3 `optional` field reads 0 when absent: Google always sends it, an emulator may not.
        if "data_crc32c" in response.payload and crc32c(data) != response.payload.data_crc32c:
            raise TransientError(f"{where}: the payload's CRC32C does not match (corrupted in transit)")
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            # ``from None``: the decode error holds the bytes themselves.
            raise ManifestError(f"{where}: the secret is binary and not UTF-8 text, which an environment variable cannot "
                                "hold; store it base64-encoded and decode it in the application") from None
        return Secret(value=value, version=_number(response.name))

    def current_version(self, path: str) -> str | None:
        """The number the path's version resolves to now, from ``GetSecretVersion`` (no payload read).

        A number in the path is its own answer (it never moves), with no request.
        Raises as ``fetch``: a disabled or destroyed version is ``ManifestError``.
        """
        name = self._name(path, None, str(FetchKey(self.name, path)))
        if name.version.isdigit():
            return name.version
        response = self._call("get_secret_version", path, None)
        state = getattr(response.state, "name", str(response.state))
        if state in ("DISABLED", "DESTROYED"):
            raise _state_error(str(FetchKey(self.name, path)), _number(response.name), state)
        return _number(response.name)

    def close(self) -> None:
        """Close the client's connections; the source is unusable after."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.transport.close()

    def _name(self, path: str, version: str | None, where: str) -> SecretName:
        problem = reference_problem(self.config, Reference(self.name, path, None, version))
        if problem is not None:
            raise ManifestError(f"{where}: {problem}")
        return parse_path(path)

    def _call(self, method: str, path: str, version: str | None) -> Any:
        where = str(FetchKey(self.name, path, version))
        name = self._name(path, version, where)
        try:
            client = self._open()
            project = name.project or self.project
            if project is None:
                raise ManifestError(f"{where}: no project for a short reference: set `project:` on the source or "
                                    f"GOOGLE_CLOUD_PROJECT, or write {self.name}://projects/PROJECT/secrets/{name.secret}")
            timeout = deadline.cut(self.timeout)
            call = getattr(client, method)
            # The SDK's sockets are not the launcher's: give up on the call at the attempt's bound.
            return deadline.within(lambda: call(name=name.resource(project), retry=None, timeout=timeout), name="gcp-request")
        except deadline.OverdueError:
            words = "no answer within the time left (retry.deadline)"
            raise TransientError(f"{where}: {self.endpoint}: {words}", cause=words, where=self.endpoint) from None
        except LauncherError:
            raise
        except Exception as exc:
            if not _is_google_or_transport(exc):
                raise
            raise map_error(exc, where, self.endpoint, self.timeout) from exc

    def _open(self) -> Any:
        """The one client, made on first use (credentials, then the REST or gRPC transport)."""
        from launcher.sources.gcp.client import open_client

        with self._lock:
            if self._client is None:
                self._client, project = open_client(self.endpoint, grpc=self.grpc, anonymous=self.config.credentials == "none",
                                                    pool=MAX_POOL)
                self.project = self.project or project
            return self._client


def map_error(exc: Exception, where: str, server: str, timeout: float = READ_TIMEOUT) -> LauncherError:
    """The launcher error for one exception of google-api-core, google-auth or requests (see the module docstring)."""
    from google.api_core import exceptions as gx
    from google.auth import exceptions as ax

    from launcher.sources.transport import causes, describe

    if isinstance(exc, gx.GoogleAPICallError):
        status, detail = _status(exc), _detail(exc)
        says = f"; Google says: {detail}" if detail else ""
        if status == "NOT_FOUND":
            return NotFoundError(f"{where}: secret or version not found at {server}{says}")
        if status in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
            words = "permission denied" if status == "PERMISSION_DENIED" else "the credentials were refused"
            hint = " (needs secretmanager.versions.access and secretmanager.versions.get)" if status == "PERMISSION_DENIED" else ""
            return AuthError(f"{where}: {words} by {server} ({status}){hint}{says}")
        if status == "FAILED_PRECONDITION" and (state := _STATE_RE.search(detail)):
            return _state_error(where, _number(_resource_in(detail)), state.group(1))
        if status in _INVALID:
            return ManifestError(f"{where}: rejected by {server} ({status}){says}")
        if status in _TRANSIENT:
            return TransientError(f"{where}: {_unanswered(exc, status, detail, server, timeout)}", retry_after=_retry_delay(exc))
        return UnavailableError(f"{where}: unexpected answer {status} from {server}")
    if isinstance(exc, ax.DefaultCredentialsError):
        detail = _detail(exc)
        found = "" if "credentials were not found" in detail else f": {detail}"
        return AuthError(f"{where}: no Google credentials{found} (set GOOGLE_APPLICATION_CREDENTIALS, run on GCE / GKE with "
                         "a service account, or set `credentials: none` for an emulator)")
    if isinstance(exc, ax.GoogleAuthError):
        # The metadata server or the token endpoint did not answer: worth another attempt; a refusal is not.
        unanswered = exc.retryable or any(isinstance(e, ax.TransportError) for e in causes(exc))
        return (TransientError if unanswered else AuthError)(f"{where}: cannot get a Google access token: {_detail(exc)}")
    if type(exc).__module__.startswith("google.protobuf"):  # an answer that is not the message asked for
        return TransientError(f"{where}: unreadable answer from {server}")
    return TransientError(f"{where}: cannot reach {server} ({describe(exc, timeout)})")


def _unanswered(exc: Any, status: str, detail: str, server: str, timeout: float) -> str:
    """A transient failure in plain words: gRPC reports its own connection failures and timeouts as statuses."""
    if hasattr(getattr(exc, "response", None), "json"):  # REST: the server (or a proxy) answered
        return f"{server} answered {status}"
    lowered = detail.lower()
    if "failed to connect" in lowered:
        return f"cannot reach {server} ({'connection refused' if 'connection refused' in lowered else 'cannot connect'})"
    if status == "DEADLINE_EXCEEDED" and lowered == "deadline exceeded":
        why = "within the time left (retry.deadline)" if deadline.expired() else f"timed out after {timeout:g}s"
        return f"no answer from {server} ({why})"
    return f"{server} answered {status}" + (f" ({detail})" if detail else "")


def _is_google_or_transport(exc: Exception) -> bool:
    """True for what ``map_error`` knows: the SDK's and google-auth's errors, and transport failures."""
    module = type(exc).__module__.split(".")[0]
    return module in ("google", "requests", "urllib3", "grpc") or isinstance(exc, OSError)


def _status(exc: Any) -> str:
    """The canonical status name: gRPC's code, or the REST error body's ``status``, or the HTTP status's."""
    grpc_code = getattr(exc, "grpc_status_code", None)
    response = getattr(exc, "response", None)
    if response is not None and hasattr(response, "json"):
        try:
            status = response.json().get("error", {}).get("status")
        except (ValueError, AttributeError):
            status = None
        if isinstance(status, str) and status:
            return status
        code = int(getattr(response, "status_code", 0) or 0)
        return _BY_HTTP.get(code) or ("UNAVAILABLE" if code >= 500 else f"HTTP {code}")
    return str(getattr(grpc_code, "name", grpc_code or "UNKNOWN"))


def _detail(exc: Any) -> str:
    """Google's message, one line, shortened; without the method and URL that REST errors start with."""
    text = str(getattr(exc, "message", None) or exc)
    text = re.sub(r"^[A-Z]+ \S+: ", "", " ".join(text.split()))
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def _resource_in(text: str) -> str:
    match = re.search(r"\[([^\]]+)\]", text)
    return match.group(1) if match else ""


def _number(name: str) -> str | None:
    """The version number a version's resource name ends with."""
    tail = name.rsplit("/", 1)[-1]
    return tail or None


def _state_error(where: str, number: str | None, state: str) -> ManifestError:
    version = f"version {number}" if number else "the version"
    fix = "enable it, or name another version" if state == "DISABLED" else "its data is gone: name another version"
    return ManifestError(f"{where}: {version} is {state} ({fix})")


def _retry_delay(exc: Any) -> float | None:
    """The server's RetryInfo delay, REST (``"1.5s"``) or gRPC (a Duration), when it sent one."""
    for detail in getattr(exc, "details", None) or ():
        delay = detail.get("retryDelay") if isinstance(detail, dict) else getattr(detail, "retry_delay", None)
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(0.0, float(delay[:-1]))
            except ValueError:
                return None
        if delay is not None and hasattr(delay, "seconds"):
            return max(0.0, float(delay.seconds) + float(delay.nanos) / 1e9)
    return None


@cache
def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return tuple(table)


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as Secret Manager checksums payloads: google_crc32c's C code when installed."""
    try:
        import google_crc32c
    except ImportError:
        table, crc = _crc_table(), 0xFFFFFFFF
        for byte in data:  # payloads are at most 64 KiB: a few milliseconds
            crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF
    return int(google_crc32c.value(data))
