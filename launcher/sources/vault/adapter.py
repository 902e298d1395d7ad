"""hvac on the source's own pool: logins, token renewal and lease operations, through ``VaultHTTP``.

hvac stays the project's Vault client for the calls it knows how to shape (the
login payloads of each auth method, renew-self, lease renewal and revocation),
but none of its requests goes through its own requests session: ``PoolAdapter``
is an hvac adapter whose ``request`` is ``VaultHTTP.request``, so every request
of a source shares one pool, one set of TLS and proxy settings, one deadline and
one error mapping (``launcher.sources.vault.http.vault_errors``, around each call).

This module imports hvac, so it is imported only when a login, renewal or lease
operation is first needed: a run with a plain token that is not due for renewal
never loads it (about 30 ms).
"""

from __future__ import annotations

from typing import Any

import hvac
import hvac.adapters

from launcher.sources.vault.http import VaultHTTP


class PoolAdapter(hvac.adapters.Adapter):  # type: ignore[misc]  # hvac ships no type information
    """An hvac adapter that sends through ``VaultHTTP`` and returns the decoded JSON body.

    Errors are ``VaultAnswerError`` / ``VaultTransportError``, never hvac's: the
    caller maps them with ``vault_errors``, naming the operation.
    """

    def __init__(self, http: VaultHTTP, **_ignored: Any) -> None:
        # Not hvac's __init__: it would build a requests session that nothing here uses.
        self._http = http
        self.base_uri = http.address
        self.namespace = http.namespace
        self.token = ""
        self.session = None
        self.allow_redirects = True
        self.ignore_exceptions = False
        self.strict_http = False
        self.request_header = True

    def close(self) -> None:
        """Nothing of its own to close: the pool is the source's."""

    def get_login_token(self, response: dict[str, Any]) -> str:
        return str((response.get("auth") or {}).get("client_token") or "")

    def request(self, method: str, url: str, headers: dict[str, str] | None = None, raise_exception: bool = True,
                **kwargs: Any) -> dict[str, Any]:
        extra = dict(headers or {})
        if kwargs.get("wrap_ttl"):
            extra["X-Vault-Wrap-TTL"] = str(kwargs["wrap_ttl"])
        path = url.split("/v1/", 1)[1] if url.startswith("/v1/") else url
        return self._http.request(method.upper(), path, self.token, params=kwargs.get("params"), body=kwargs.get("json"),
                                  headers=extra)


def open_client(http: VaultHTTP) -> Any:
    """An ``hvac.Client`` whose every request goes through ``http``; it holds no token yet."""
    adapter = PoolAdapter(http)
    # token="" (not None): hvac would otherwise read VAULT_TOKEN / ~/.vault-token itself.
    return hvac.Client(url=http.address, token="", namespace=http.namespace, adapter=lambda **_: adapter)
