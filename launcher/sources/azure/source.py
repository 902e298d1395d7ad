"""The ``azure`` source: Azure Key Vault secrets through azure-keyvault-secrets.

For a declared source ``PATH`` is the secret name (``corp://api-key``); for the
built-in ``azure`` source it is ``VAULT-NAME/SECRET`` for
``https://VAULT-NAME.vault.azure.net``. ``?version=ID`` pins a version;
``#KEY`` into a JSON value is the resolver's job (``select``).

One ``SecretClient`` per vault URL, created on first use and shared by the
resolver's fetch threads (SDK clients are thread-safe); one credential per
source, shared by its clients, so one token serves every vault.

Errors are mapped once, here (``map_error``)::

    404                                   -> NotFoundError (66)
    403 SecretDisabled                    -> NotFoundError (66): the version is disabled
    401, 403, credential failures         -> AuthError (77), never retried
    429, 408, 5xx, connection, timeout    -> TransientError (retried; 69 when spent)
    400                                   -> ManifestError (78)

The SDK's own retries are off (see ``azure_credentials``). No value, token or
client secret is put in a message, a log line or a repr.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError, TransientError, UnavailableError
from launcher.model.refs import FetchKey
from launcher.sources.azure.config import AZURE_VERSION_RE, AzureSourceConfig, locate
from launcher.sources.azure.transport import CONNECTION_TIMEOUT, READ_TIMEOUT
from launcher.sources.base import Secret
from launcher.sources.transport import causes, describe, lasting_tls_failure, retry_after

_MAX_DETAIL = 300
_MIN_REDACT = 8  # scrubbing a shorter string would mangle messages and protect nothing
_MSAL_HTTP_ERROR = re.compile(r"HTTP Error: (\d{3})")


class SecretReader(Protocol):
    """The part of ``SecretClient`` this module uses; tests may pass their own."""

    def get_secret(self, name: str, version: str | None = None) -> Any: ...

    def close(self) -> None: ...


ClientFactory = Callable[[str], SecretReader]


class AzureSource:
    """Reads secrets from one Key Vault (declared source) or from any vault (built-in).

    ``client_factory`` builds the client for a vault URL (default: a ``SecretClient``
    with this source's credential); the timeouts bound one HTTP attempt.
    Construction raises ``AuthError`` when the credential lacks required material.
    """

    def __init__(
        self,
        config: AzureSourceConfig,
        *,
        client_factory: ClientFactory | None = None,
        environ: Mapping[str, str] | None = None,
        connection_timeout: float = CONNECTION_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        from launcher.sources.azure.credentials import OneTokenAtATime, build_credential, secret_of  # the SDK: only now
        from launcher.sources.azure.transport import transport_options

        # azure.identity warns on every failed token request, before our own one-line error says it better.
        logging.getLogger("azure.identity").setLevel(logging.ERROR)
        self.name = config.name
        self.config = config
        self._transport = transport_options(config, connection_timeout, read_timeout)
        self._read_timeout = read_timeout
        self._credential: Any = None
        if client_factory is None:
            self._credential = OneTokenAtATime(build_credential(config, environ, self._transport))
            client_factory = self._secret_client
        self._factory = client_factory
        self._redact = secret_of(config, environ)
        self._clients: dict[str, SecretReader] = {}
        self._lock = threading.Lock()

    def fetch(self, path: str, version: str | None) -> Secret:
        """The secret at ``path`` (latest, or ``version``); value and version id.

        Raises ``NotFoundError`` (missing secret or version, disabled version),
        ``AuthError``, ``TransientError`` (retryable), ``UnavailableError`` or
        ``ManifestError`` (bad name or version).
        """
        if version is not None and not AZURE_VERSION_RE.match(version):
            raise ManifestError(f"{FetchKey(self.name, path, version)}: not a Key Vault version id")
        bundle = self._get(path, version)
        return Secret(value=bundle.value if bundle.value is not None else "", version=bundle.properties.version)

    def current_version(self, path: str) -> str | None:
        """The version id of the latest version (for rotation checks); raises as ``fetch``.

        Key Vault has no cheaper call than one GET of the latest version: listing
        versions is paged and unordered. The value it returns is dropped at once.
        """
        version: str | None = self._get(path, None).properties.version
        return version

    def close(self) -> None:
        """Close every client's sockets and the credential; the source is unusable after."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
        if self._credential is not None:
            self._credential.close()

    def client(self, vault_url: str) -> SecretReader:
        """The one client for ``vault_url``, created on first use."""
        with self._lock:
            client = self._clients.get(vault_url)
            if client is None:
                client = self._clients[vault_url] = self._factory(vault_url)
            return client

    def _secret_client(self, vault_url: str) -> SecretReader:
        from azure.keyvault.secrets import SecretClient

        return SecretClient(
            vault_url,
            self._credential,
            verify_challenge_resource=self.config.verify_challenge_resource,
            **self._transport,
        )

    def _get(self, path: str, version: str | None) -> Any:
        from azure.core.exceptions import AzureError

        vault_url, name = locate(self.config, path)
        where = str(FetchKey(self.name, path, version))
        try:
            return self.client(vault_url).get_secret(name, version)
        except AzureError as exc:
            raise map_error(exc, where, vault_url, self._redact, self._read_timeout) from exc


def map_error(exc: Exception, where: str, vault_url: str, redact: str | None = None,
              read_timeout: float | None = READ_TIMEOUT) -> LauncherError:
    """The launcher error for one azure-core exception (see the module docstring)."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, ClientAuthenticationError):  # 401 from the vault, any credential failure
        # A credential reports an unreachable or overloaded token endpoint as an
        # authentication failure; those are worth another attempt, a refusal is not.
        # (DefaultAzureCredential drops the cause, so through it they stay 77.)
        cause = _network_cause(exc)
        if cause is not None:
            return _unreachable(cause, f"{where}: cannot reach the token endpoint", read_timeout, vault_url,
                                "token endpoint: ")
        status = _token_endpoint_status(exc)
        if status is not None and _retryable(status):
            return TransientError(f"{where}: the token endpoint answered {status}", cause=f"token endpoint: HTTP {status}",
                                  where=vault_url)
        return AuthError(f"{where}: authentication failed: {_detail(exc, redact)}")
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        status, code = exc.status_code, _error_code(exc)
        if status == 404:
            what = "version not found" if "?version=" in where else "secret not found"
            return NotFoundError(f"{where}: {what} in {vault_url}")
        if status == 403 and code == "SecretDisabled":
            return NotFoundError(f"{where}: this version of the secret is disabled in {vault_url}")
        if status in (401, 403):
            return AuthError(f"{where}: permission denied by {vault_url} ({status} {code or 'Forbidden'}; needs secrets/get)")
        if _retryable(status):
            detail = f"HTTP {status} {code or ''}".rstrip()
            return TransientError(f"{where}: {vault_url} answered {detail}", retry_after=_retry_after(exc), cause=detail,
                                  where=vault_url)
        if status == 400:
            return ManifestError(f"{where}: rejected by {vault_url} (400 {code or 'BadRequest'})")
        return UnavailableError(f"{where}: unexpected answer {status} {code or ''} from {vault_url}".rstrip())
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        # ServiceRequestError: never sent (DNS, refused, TLS, connect timeout);
        # ServiceResponseError: sent but no complete answer (read timeout, reset).
        return _unreachable(exc, f"{where}: cannot reach {vault_url}", read_timeout, vault_url)
    return UnavailableError(f"{where}: {type(exc).__name__} talking to {vault_url}")


def _unreachable(exc: BaseException, what: str, read_timeout: float | None, vault_url: str,
                 cause_prefix: str = "") -> LauncherError:
    """No answer: transient, but at once 69 for a TLS failure no retry can heal (a plain-HTTP
    server behind https://, a certificate that does not verify: 69 as before, now not retried)."""
    lasting = lasting_tls_failure(exc)
    if lasting is None:
        words = describe(exc, read_timeout)
        return TransientError(f"{what} ({words})", cause=cause_prefix + words, where=vault_url)
    return UnavailableError(f"{what} ({describe(exc, read_timeout)}{'; check tls.ca_cert' if lasting == 'untrusted' else ''})")


def _retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions behind it (azure-identity wraps MSAL's and azure-core's)."""
    return list(causes(exc))


def _network_cause(exc: BaseException) -> BaseException | None:
    """A connection or timeout error behind a credential failure, if there is one."""
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    return next((e for e in _chain(exc) if isinstance(e, (ServiceRequestError, ServiceResponseError))), None)


def _token_endpoint_status(exc: BaseException) -> int | None:
    """The HTTP status behind a credential failure, when one is recorded.

    azure-identity keeps the response on its own errors; MSAL reports a 5xx/429
    without an OAuth error body only as ``MsalServiceError("HTTP Error: 503")``.
    """
    for err in _chain(exc):
        status = getattr(err, "status_code", None)
        if isinstance(status, int):
            return status
        match = _MSAL_HTTP_ERROR.match(str(err)) if type(err).__name__ == "MsalServiceError" else None
        if match:
            return int(match.group(1))
    return None


def _error_code(exc: Any) -> str | None:
    """Key Vault's innermost error code (``SecretDisabled`` hides in innererror)."""
    error = getattr(exc, "error", None)
    inner = getattr(error, "innererror", None) or {}
    code = inner.get("code") if isinstance(inner, Mapping) else None
    return code or getattr(error, "code", None)


def _retry_after(exc: Any) -> float | None:
    """Retry-After in seconds when the server sent one (real Key Vault 429s do not)."""
    headers = getattr(exc.response, "headers", None) or {}
    return retry_after(headers.get("Retry-After") or headers.get("retry-after"))


def _detail(exc: BaseException, redact: str | None) -> str:
    """The first informative line of an SDK message, shortened, with our client secret scrubbed.

    Entra ID messages carry AADSTS codes that say what is wrong; they never echo
    a secret, but the scrub makes sure of it.
    """
    text = getattr(exc, "message", None) or str(exc)
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    detail = " ".join(lines[:3]) if lines else type(exc).__name__
    detail = detail.removeprefix("Authentication failed: ")  # we say so already
    if redact and len(redact) >= _MIN_REDACT:
        detail = detail.replace(redact, "<redacted>")
    return detail if len(detail) <= _MAX_DETAIL else detail[: _MAX_DETAIL - 3] + "..."
