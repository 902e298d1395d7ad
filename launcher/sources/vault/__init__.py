"""The ``vault`` source: HashiCorp Vault and OpenBao.

``config`` (settings, a leaf), ``connection`` (where and how to reach the server:
the manifest, else the VAULT_* and BAO_* variables), ``http`` (every request, through
one bounded urllib3 pool per source, and what Vault's answers mean), ``adapter``
(hvac on that pool, for logins, token renewal and leases), ``auth`` (the source's
token), ``source`` (reads, versions, leases), ``issued`` (reads that are writes: pki
certificates, transit decryptions). This package's ``BACKEND`` is what the
source registry imports to read a manifest: it imports the settings only; urllib3 and
hvac load when a source is opened, and hvac only when a login or lease needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from launcher.events import EventSink
from launcher.sources.base import Backend
from launcher.sources.vault.config import AuthMethod, TlsConfig, VaultAuth, VaultSourceConfig, reference_problem

if TYPE_CHECKING:
    from launcher.sources.vault.source import VaultSource

__all__ = ["BACKEND", "AuthMethod", "TlsConfig", "VaultAuth", "VaultSourceConfig"]


def _open(config: Any, events: EventSink) -> VaultSource:
    from launcher.sources.vault.source import VaultSource  # urllib3 and the rest: only once a source is opened

    return VaultSource(config, events=events)


BACKEND = Backend(
    type="vault",
    config=VaultSourceConfig,
    open=_open,
    reference_problem=reference_problem,
    loggers=("hvac", "urllib3", "requests"),
    request_data=True,  # pki issue/ROLE and transit decrypt/KEY (``issued``)
    starter="""\
address: https://vault.example.com:8200   # default $VAULT_ADDR (or $BAO_ADDR)
auth: {method: approle, role_id: "${ROLE_ID}", secret_id_file: /run/secrets/sid}   # default: $VAULT_TOKEN
""",
)
