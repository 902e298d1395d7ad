"""The manifest as frozen dataclasses: every default lives here, and only here.

``manifest.py`` builds these from YAML; the CLI overrides a few fields with
``dataclasses.replace``. Nothing in this module does I/O.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass, field

from launcher.refs import BUILTIN_SOURCES, Part, Reference, azure_path_problem, references

ON_CHANGE_ACTIONS = ("ignore", "signal", "restart", "exit")  # weakest to strongest
DEFAULT_SCRUB = ("VAULT_TOKEN", "BAO_TOKEN", "VAULT_SECRET_ID", "AZURE_CLIENT_SECRET")


@dataclass(frozen=True)
class TlsConfig:
    """TLS settings of a source; None means "use the standard variable or system default"."""

    ca_cert: str | None = None
    ca_path: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    skip_verify: bool | None = None


@dataclass(frozen=True)
class VaultAuth:
    """How a Vault source logs in. ``token`` reads VAULT_TOKEN, token_file, ~/.vault-token."""

    method: str = "token"
    token_file: str | None = None
    role_id: str | None = None
    secret_id: str | None = field(default=None, repr=False)
    secret_id_file: str | None = None
    role: str | None = None
    jwt_file: str | None = None
    mount: str | None = None


@dataclass(frozen=True)
class VaultSourceConfig:
    """A HashiCorp Vault / OpenBao source; None fields fall back to the VAULT_* variables."""

    name: str
    address: str | None = None
    namespace: str | None = None
    auth: VaultAuth = field(default_factory=VaultAuth)
    tls: TlsConfig = field(default_factory=TlsConfig)
    revoke_on_exit: bool = False
    type: str = "vault"


@dataclass(frozen=True)
class AzureSourceConfig:
    """An Azure Key Vault source; ``vault_url`` None means the built-in ``azure://VAULT/SECRET``."""

    name: str
    vault_url: str | None = None
    credential: str = "default"
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret_file: str | None = None
    authority: str | None = None
    ca_cert: str | None = None
    verify_challenge_resource: bool = True
    type: str = "azure"


@dataclass(frozen=True)
class FileSourceConfig:
    """A local YAML or JSON file of secrets: the offline source for demos and tests."""

    name: str
    path: str
    type: str = "file"


SourceConfig = VaultSourceConfig | AzureSourceConfig | FileSourceConfig


@dataclass(frozen=True)
class Binding:
    """One environment variable: a literal, a reference or a template of references.

    ``where`` is ``file:line`` (or ``<environment>``), used in error messages.
    """

    name: str
    parts: tuple[Part, ...]
    file: bool = False
    default: str | None = field(default=None, repr=False)
    optional: bool = False
    on_change: str | None = None
    where: str = "<manifest>"

    @property
    def refs(self) -> list[Reference]:
        return references(self.parts)

    @property
    def is_literal(self) -> bool:
        return not self.refs


@dataclass(frozen=True)
class EnvFrom:
    """Every key of one secret, as ``<prefix><KEY>`` variables."""

    ref: Reference
    prefix: str = ""
    where: str = "<manifest>"


@dataclass(frozen=True)
class CacheConfig:
    ttl: float = 8 * 3600.0
    max_entries: int = 500


@dataclass(frozen=True)
class RetryConfig:
    attempts: int = 4
    initial_delay: float = 1.0
    max_delay: float = 32.0
    multiplier: float = 2.0
    jitter: str = "full"  # full | equal | none
    deadline: float = 60.0


@dataclass(frozen=True)
class WatchConfig:
    enabled: bool = False
    interval: float = 60.0
    on_change: str = "restart"
    signal: signal.Signals = signal.SIGHUP
    debounce: float = 2.0
    splay: float = 0.0
    on_error: str = "keep"  # keep | exit
    max_restarts: int = 5
    restart_window: float = 300.0


@dataclass(frozen=True)
class ProcessConfig:
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout: float = 10.0
    pristine: bool = False
    inherit: tuple[str, ...] = ("PATH", "HOME", "LANG", "TZ", "TERM", "USER")
    # Added to DEFAULT_SCRUB, never replacing it: the launcher's own credentials
    # reach the child only through ``passthrough`` (DESIGN 6).
    scrub: tuple[str, ...] = DEFAULT_SCRUB
    passthrough: tuple[str, ...] = ()
    signal_target: str = "group"  # group | child
    # Where private secret directories go; None: $XDG_RUNTIME_DIR, else /dev/shm, else the temp dir.
    files_dir: str | None = None


@dataclass(frozen=True)
class Manifest:
    """A parsed, validated manifest. ``path`` is None when no file was used."""

    path: str | None = None
    sources: Mapping[str, SourceConfig] = field(default_factory=dict)
    env: tuple[Binding, ...] = ()
    env_from: tuple[EnvFrom, ...] = ()
    cache: CacheConfig = field(default_factory=CacheConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)

    @property
    def known_sources(self) -> frozenset[str]:
        """Declared source names plus the built-ins."""
        return frozenset(self.sources) | BUILTIN_SOURCES

    def reference_problem(self, ref: Reference) -> str | None:
        """What is wrong with ``ref`` for its source's type, found without any request."""
        config = self.source_config(ref.source)
        if isinstance(config, AzureSourceConfig):
            return azure_path_problem(ref.path, ref.version, builtin=config.vault_url is None)
        if isinstance(config, FileSourceConfig) and ref.version is not None:
            return f"{ref.source}:// is a file source, which has no versions: drop ?version="
        return None

    def source_config(self, name: str) -> SourceConfig:
        """The declared source, or the built-in of that name."""
        if name in self.sources:
            return self.sources[name]
        if name == "vault":
            return VaultSourceConfig(name="vault")
        if name == "azure":
            return AzureSourceConfig(name="azure")
        raise KeyError(name)
