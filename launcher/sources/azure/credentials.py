"""Credentials for the ``azure`` source.

``build_credential`` turns an ``AzureSourceConfig`` into an azure-identity
credential, on the source's transport (``launcher.sources.azure.transport``), so
that *our* retry policy and deadline govern token requests too.

Imported only when an Azure source is opened: a file-only or Vault-only run never
loads the Azure SDK.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from azure.identity import (
    AzureCliCredential,
    ClientSecretCredential,
    DefaultAzureCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)

from launcher.errors import AuthError
from launcher.sources.azure.config import AzureSourceConfig
from launcher.sources.azure.transport import transport_options

# `az account get-access-token` can be slow on a cold start; the SDK's default is 10 s.
CLI_PROCESS_TIMEOUT = 15

# Entra ID hosts MSAL knows; any other authority (Azure Stack, ADFS, the test
# emulator) fails MSAL's instance discovery unless it is turned off.
KNOWN_AUTHORITY_HOSTS = frozenset({"login.microsoftonline.com", "login.chinacloudapi.cn", "login.microsoftonline.us"})


def authority_options(config: AzureSourceConfig, environ: Mapping[str, str]) -> dict[str, Any]:
    """``authority`` (from the config, else $AZURE_AUTHORITY_HOST) and, for a host
    MSAL does not know, ``disable_instance_discovery=True``; {} for the default cloud."""
    authority = config.authority or environ.get("AZURE_AUTHORITY_HOST") or ""
    if not authority:
        return {}
    host = urlsplit(authority if "://" in authority else f"https://{authority}").hostname or ""
    options: dict[str, Any] = {"authority": authority}
    if host.lower() not in KNOWN_AUTHORITY_HOSTS:
        options["disable_instance_discovery"] = True
    return options


def build_credential(
    config: AzureSourceConfig,
    environ: Mapping[str, str] | None = None,
    transport: Mapping[str, Any] | None = None,
) -> Any:
    """The azure-identity credential named by ``config.credential``.

    ``tenant_id``/``client_id`` default to AZURE_TENANT_ID / AZURE_CLIENT_ID;
    the client secret is read from ``client_secret_file``, else AZURE_CLIENT_SECRET.
    No I/O happens here except reading that file: tokens are requested on first use.
    Raises ``AuthError`` (77) when required credential material is missing.
    """
    env = os.environ if environ is None else environ
    pipeline = dict(transport if transport is not None else transport_options(config))
    kind = config.credential
    tenant_id = config.tenant_id or env.get("AZURE_TENANT_ID")
    client_id = config.client_id or env.get("AZURE_CLIENT_ID")
    where = f"source {config.name!r} (credential: {kind})"

    if kind == "client_secret":
        secret = _client_secret(config, env, where)
        if not tenant_id or not client_id:
            missing = [n for n, v in (("tenant_id / AZURE_TENANT_ID", tenant_id), ("client_id / AZURE_CLIENT_ID", client_id)) if not v]
            raise AuthError(f"{where}: missing {' and '.join(missing)}")
        return ClientSecretCredential(tenant_id, client_id, secret, **authority_options(config, env), **pipeline)
    if kind == "workload_identity":
        # The Kubernetes webhook injects AZURE_TENANT_ID, AZURE_CLIENT_ID and
        # AZURE_FEDERATED_TOKEN_FILE; the credential re-reads that file as it rotates.
        token_file = env.get("AZURE_FEDERATED_TOKEN_FILE")
        needed = (("AZURE_TENANT_ID", tenant_id), ("AZURE_CLIENT_ID", client_id), ("AZURE_FEDERATED_TOKEN_FILE", token_file))
        missing = [n for n, v in needed if not v]
        if missing:
            raise AuthError(f"{where}: missing {', '.join(missing)} (set by the workload identity webhook)")
        return WorkloadIdentityCredential(
            tenant_id=tenant_id, client_id=client_id, token_file_path=token_file, **authority_options(config, env), **pipeline
        )
    if kind == "managed_identity":
        # client_id picks a user-assigned identity; without one the system-assigned identity is used.
        return ManagedIdentityCredential(client_id=config.client_id, **pipeline)
    if kind == "cli":
        # Runs `az` as a subprocess: for local use only (under `run` the reaper owns waitpid: docs/reference/supervision.md).
        return AzureCliCredential(tenant_id=config.tenant_id or "", process_timeout=CLI_PROCESS_TIMEOUT)
    # default: the SDK's chain (environment, workload identity, managed identity,
    # developer tools) with nothing that opens a browser or waits for a user.
    return DefaultAzureCredential(
        exclude_interactive_browser_credential=True,
        managed_identity_client_id=config.client_id,
        **({"workload_identity_tenant_id": config.tenant_id} if config.tenant_id else {}),
        **authority_options(config, env),
        **pipeline,
    )


def _client_secret(config: AzureSourceConfig, env: Mapping[str, str], where: str) -> str:
    """The client secret from ``client_secret_file`` (trailing newline dropped), else the environment."""
    if config.client_secret_file:
        try:
            with open(config.client_secret_file, encoding="utf-8") as fh:
                secret = fh.read().rstrip("\r\n")
        except OSError as exc:
            raise AuthError(f"{where}: cannot read client_secret_file {config.client_secret_file} ({exc.strerror})") from None
        if not secret:
            raise AuthError(f"{where}: client_secret_file {config.client_secret_file} is empty")
        return secret
    secret = env.get("AZURE_CLIENT_SECRET", "")
    if not secret:
        raise AuthError(f"{where}: no client secret (set AZURE_CLIENT_SECRET or client_secret_file)")
    return secret


def secret_of(config: AzureSourceConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """The client secret this source would use, if any: error messages are scrubbed of it."""
    env = os.environ if environ is None else environ
    if config.credential not in ("client_secret", "default"):
        return None
    try:
        return _client_secret(config, env, "")
    except AuthError:
        return None


class OneTokenAtATime:
    """A credential wrapper that lets one thread at a time ask for a token.

    The resolver's first fetches start together; unserialized, each would miss
    the credential's token cache and ask Entra ID for a token of its own (a
    30-secret manifest, 30 token requests). Serialized, the first one fetches
    and the others find its token in the cache.
    """

    def __init__(self, credential: Any) -> None:
        self._credential = credential
        self._lock = threading.Lock()

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        with self._lock:
            return self._credential.get_token(*scopes, **kwargs)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        with self._lock:
            if hasattr(self._credential, "get_token_info"):
                return self._credential.get_token_info(*scopes, options=options)
            opts = dict(options or {})
            return self._credential.get_token(*scopes, **opts)

    def close(self) -> None:
        if hasattr(self._credential, "close"):
            self._credential.close()
