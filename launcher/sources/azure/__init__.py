"""The ``azure`` source: Azure Key Vault secrets through azure-keyvault-secrets.

``config`` (settings and reference rules, a leaf), ``transport`` (the SDK's requests
through the launcher's bounded pools), ``credentials`` (azure-identity), ``source``
(reads, versions, error mapping). This package's ``BACKEND`` is what the source
registry imports to read a manifest: it imports the settings only; the Azure SDK
loads when a source is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from launcher.events import EventSink
from launcher.sources.azure.config import AzureSourceConfig, AzureTls, Credential, reference_problem
from launcher.sources.base import Backend

if TYPE_CHECKING:
    from launcher.sources.azure.source import AzureSource

__all__ = ["BACKEND", "AzureSourceConfig", "AzureTls", "Credential"]


def _open(config: Any, events: EventSink) -> AzureSource:
    from launcher.sources.azure.source import AzureSource  # the Azure SDK: only once a source is opened

    return AzureSource(config)


BACKEND = Backend(
    type="azure",
    config=AzureSourceConfig,
    open=_open,
    reference_problem=reference_problem,
    loggers=("azure", "msal", "msal_extensions"),
    starter="""\
vault_url: https://corp-kv.vault.azure.net/
credential: default   # default | managed_identity | workload_identity | client_secret | cli
""",
)
