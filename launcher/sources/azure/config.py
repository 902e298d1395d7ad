"""The ``azure`` source's settings and reference rules: what a manifest may say about Azure Key Vault.

A leaf of the backend: the config dataclass (``setting`` declarations the manifest
package reads), the credential vocabulary, and the rules a reference must obey
(checked before any request, by the manifest reader and by the source).
"""

from __future__ import annotations

import re
from typing import Literal, get_args

from launcher.errors import ManifestError
from launcher.model.config import SourceConfig
from launcher.model.refs import Reference
from launcher.model.settings import setting
from launcher.record import record

# How a source obtains its token (``credential``).
Credential = Literal["default", "managed_identity", "workload_identity", "client_secret", "cli"]
CREDENTIALS: tuple[Credential, ...] = get_args(Credential)

# https://learn.microsoft.com/azure/key-vault/general/about-keys-secrets-certificates#object-identifiers
BUILTIN_VAULT_SUFFIX = ".vault.azure.net"


@record
class AzureTls:
    ca_cert: str | None = setting(None, "path", help="a CA trusted in addition to the system roots (private endpoints)")


@record(kw_only=True)
class AzureSourceConfig(SourceConfig):
    """An Azure Key Vault source; ``vault_url`` None means the built-in ``azure://VAULT/SECRET``."""

    vault_url: str | None = setting(None, "url", scheme="https", required=True, missing="e.g. https://NAME.vault.azure.net/",
                                    help="https://NAME.vault.azure.net/")
    credential: Credential = setting("default", "choice", choices=CREDENTIALS, help="how to obtain a token")
    tenant_id: str | None = setting(None, help="default $AZURE_TENANT_ID")
    client_id: str | None = setting(None, help="default $AZURE_CLIENT_ID (a user-assigned identity's, for managed_identity)")
    client_secret_file: str | None = setting(None, "path", help="default $AZURE_CLIENT_SECRET (credential: client_secret)")
    authority: str | None = setting(None, help="Entra ID host (default $AZURE_AUTHORITY_HOST); sovereign clouds")
    tls: AzureTls = setting(kind="section", factory=AzureTls, cls=AzureTls, help="TLS settings")
    verify_challenge_resource: bool = setting(True, "bool", help="false only for a vault_url outside *.vault.azure.net")
    type: str = "azure"


AZURE_SECRET_NAME_RE = re.compile(r"[0-9A-Za-z-]{1,127}\Z")
# Lenient on purpose (a DNS label): Azure's own 3-24 character rule is its to enforce.
AZURE_VAULT_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
AZURE_VERSION_RE = re.compile(r"[0-9A-Za-z]{1,64}\Z")


def azure_path_problem(path: str, version: str | None, builtin: bool) -> str | None:
    """Why ``path`` cannot name a Key Vault secret (None when it can).

    ``builtin``: the path is ``VAULT-NAME/SECRET`` (the built-in ``azure`` source).
    """
    name = path
    if builtin:
        vault, sep, name = path.partition("/")
        if not sep or not AZURE_VAULT_NAME_RE.match(vault):
            return "expected azure://VAULT-NAME/SECRET-NAME (vault names: letters, digits, -)"
    if not AZURE_SECRET_NAME_RE.match(name):
        return f"{name!r} is not a Key Vault secret name (1-127 letters, digits, -)"
    if version is not None and not AZURE_VERSION_RE.match(version):
        return f"{version!r} is not a Key Vault version id"
    return None


def reference_problem(config: AzureSourceConfig, ref: Reference) -> str | None:
    return azure_path_problem(ref.path, ref.version, builtin=config.vault_url is None)


def locate(config: AzureSourceConfig, path: str) -> tuple[str, str]:
    """Split a reference path into (vault URL, secret name).

    Raises ``ManifestError`` (78) for a path that cannot name a Key Vault secret
    (the manifest refuses those already; inline references reach here too).
    """
    problem = azure_path_problem(path, None, builtin=config.vault_url is None)
    if problem is not None:
        raise ManifestError(f"{config.name}://{path}: {problem}")
    if config.vault_url is None:
        vault, _, name = path.partition("/")
        return f"https://{vault.lower()}{BUILTIN_VAULT_SUFFIX}", name
    return config.vault_url.rstrip("/"), path
