"""The manifest as frozen dataclasses: every default lives in its dataclass, and only there.

The core sections are here; each backend's source settings live in its own
module (``launcher/sources/<type>``), as a ``SourceConfig`` subclass. Every field
that the manifest can set is made with ``setting`` (``launcher.model.settings``),
which says how it is read, so the manifest package reads sections and sources
from the dataclasses themselves. The CLI overrides a few fields with
``dataclasses.replace``. Nothing here does I/O; of the sources package only the
registry (a leaf of plain data) is asked which names are built in.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import field

from launcher.model.refs import Part, Reference, references, render
from launcher.model.settings import setting
from launcher.model.vocabulary import ACTIONS, JITTERS, ON_ERRORS, SIGNAL_TARGETS, Action, Jitter, OnError, SignalTarget
from launcher.record import record
from launcher.sources.registry import builtins, default_scrub


@record(kw_only=True)
class SourceConfig:
    """What every source has: its name and ``type``; each backend adds its own settings."""

    name: str
    type: str = ""
    # Settings of every type (docs/operations/failover.md): read with each backend's own ones.
    fallback: str | None = setting(None, help="a declared source of the same type holding the same paths, "
                                   "asked when this one is unavailable")
    fallback_hold: float = setting(30.0, "duration", help="after a failover, this source is not asked for this long; then one probe")


@record
class Binding:
    """One environment variable: a literal, a reference or a template of references.

    ``where`` is ``file:line`` (or ``<environment>``), used in error messages.
    """

    name: str
    parts: tuple[Part, ...]
    file: bool = False  # the child gets a file holding the value; the variable holds its path
    default: str | None = field(default=None, repr=False)
    optional: bool = False
    on_change: Action | None = None
    where: str = "<manifest>"
    template: str | None = None  # the template file the parts were read from (for messages and check)
    path: str | None = None  # write the file at this exact path (implies ``file``)
    mode: int = 0o600  # of a file at ``path``
    field: str | None = None  # how messages name it after ``where``; None: ``env.NAME`` (a manifest's binding)

    @property
    def refs(self) -> list[Reference]:
        return references(self.parts)

    @property
    def is_literal(self) -> bool:
        return not self.refs

    @property
    def shown(self) -> str:
        """What ``check`` shows in its REF column: the reference or template, or the template
        file and the references it uses; ``-`` for a literal. Never a value."""
        if self.template is not None:
            return f"{self.template} ({', '.join(dict.fromkeys(str(r) for r in self.refs)) or 'no references'})"
        return render(self.parts) if self.refs else "-"


@record
class EnvFile:
    """A dotenv file of bindings (``env_files:`` or ``--env-file``) and what was read from it.

    Its values are literals, references or ``{{ }}`` templates, as in ``env``; ``bindings``
    is empty for an optional file (``NAME?``) that does not exist. ``where`` says where it
    was named (the manifest's file:line, or the command line); each binding's ``where`` is
    the file's own file:line.
    """

    path: str
    optional: bool = False
    bindings: tuple[Binding, ...] = ()
    where: str = "<manifest>"


@record
class EnvFrom:
    """Every key of one secret, as ``<prefix><KEY>`` variables."""

    ref: Reference
    prefix: str = ""
    where: str = "<manifest>"


@record
class CacheConfig:
    """How long a value read is reused, and how many values are kept."""

    ttl: float = setting(8 * 3600.0, "duration", help="longest a fetched value is reused without a fresh read")
    max_entries: int = setting(500, "integer", minimum=1, help="bound on memory: the least recently used goes first")


@record
class RetryConfig:
    """How a failed read is retried, all within the deadline."""

    attempts: int = setting(4, "integer", minimum=1, help="tries per secret, the first included")
    initial_delay: float = setting(1.0, "duration", help="the first wait")
    max_delay: float = setting(32.0, "duration", help="the longest wait")
    multiplier: float = setting(2.0, "number", minimum=1.0, help="growth of the wait per attempt")
    jitter: Jitter = setting("full", "choice", choices=JITTERS, help="randomness of each wait")
    deadline: float = setting(60.0, "duration", help="hard bound on a resolution, every request included")


@record
class WatchConfig:
    """Rotation checks, and what is done to the child when a secret changes."""

    enabled: bool = setting(False, "bool", help="watch for rotation (or `launcher run --watch`)")
    interval: float = setting(60.0, "duration", positive=True, help="each secret is checked this often")
    on_change: Action = setting("restart", "choice", choices=ACTIONS, help="what a change does to the child")
    signal: signal.Signals = setting(signal.SIGHUP, "signal", help="sent when on_change is signal")
    # The child alone by default, as Vault Agent signals its child: a shell's helpers (a `sleep`,
    # a log shipper) die of a SIGHUP they never asked for. Forwarded signals follow process.signal_target.
    signal_target: SignalTarget = setting("child", "choice", choices=SIGNAL_TARGETS,
                                          help="where the rotation signal goes: the child alone, or its process group")
    debounce: float = setting(2.0, "duration", help="quiet period that batches a burst of changes")
    splay: float = setting(0.0, "duration", help="random delay before acting")
    on_error: OnError = setting("keep", "choice", choices=ON_ERRORS, help="keep the last good values, or exit")
    max_restarts: int = setting(5, "integer", minimum=1, help="restart-storm guard: restarts per window")
    restart_window: float = setting(300.0, "duration", positive=True, help="the storm guard's window")


@record
class ProcessConfig:
    """The child: its environment, signals, secret files and core dumps."""

    stop_signal: signal.Signals = setting(signal.SIGTERM, "signal", help="first signal when stopping the child")
    stop_timeout: float = setting(10.0, "duration", help="then SIGKILL to the process group")
    pristine: bool = setting(False, "bool", help="the child gets only the bindings and `inherit`")
    inherit: tuple[str, ...] = setting(("PATH", "HOME", "LANG", "TZ", "TERM", "USER"), "names", help="kept when pristine")
    # The backends' own credentials plus the names listed, never replacing them: the
    # launcher's credentials reach the child only through ``passthrough`` (docs/reference/manifest.md).
    scrub: tuple[str, ...] = setting(kind="names", factory=default_scrub, extends=True,
                                     help="never passed to the child; added to the backends' own credentials")
    passthrough: tuple[str, ...] = setting((), "names", help="exempted from scrub")
    signal_target: SignalTarget = setting("group", "choice", choices=SIGNAL_TARGETS,
                                          help="where forwarded signals go (the rotation signal: watch.signal_target)")
    files_dir: str | None = setting(None, "path", help="where private secret directories go (default: "
                                    "$XDG_RUNTIME_DIR, else /dev/shm, else the temp dir)")
    mask: bool = setting(False, "bool", help="conceal secret values in the child's output (or `launcher run --mask`)")
    core_dumps: bool = setting(False, "bool", help="let the child write core files (default: RLIMIT_CORE 0, so a crash "
                               "cannot put its secrets on disk)")


# What ``listen_address`` accepts, as a pattern for the manifest's JSON Schema: [HOST]:PORT or PORT, 1-65535.
LISTEN_PATTERN = (r"^\s*(?:(?:\[[0-9A-Fa-f:.]+\]|[^:\[\]\s]*):)?"
                  r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])\s*$")


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[V6]:PORT`` for IPv6) as (host, port); a bare ``PORT`` or ``:PORT`` is
    loopback (127.0.0.1): exposing metrics takes naming a host. ``ValueError`` otherwise."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = "", text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT or a port (1-65535), e.g. 127.0.0.1:9464")
    if ":" in host and not text.strip().startswith("["):
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:9464")
    return host or "127.0.0.1", int(port)


@record
class AuditConfig:
    """Where the JSON-lines audit trail is appended."""

    path: str | None = setting(None, "path", help="JSON-lines audit trail, appended to (or --audit, $LAUNCHER_AUDIT)")


@record
class MetricsConfig:
    """Where /metrics and /healthz are served while run supervises."""

    listen: str | None = setting(None, "text", nullable=True, check=listen_address, pattern=LISTEN_PATTERN,
                                 help="serve /metrics and /healthz during `launcher run` on HOST:PORT (a bare port: loopback)")


@record
class Manifest:
    """A parsed, validated manifest. ``path`` is None when no file was used."""

    path: str | None = None
    sources: Mapping[str, SourceConfig] = field(default_factory=dict)
    env: tuple[Binding, ...] = ()
    env_from: tuple[EnvFrom, ...] = ()
    env_files: tuple[EnvFile, ...] = ()  # the manifest's, then the command line's
    cache: CacheConfig = field(default_factory=CacheConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    @property
    def bindings(self) -> tuple[Binding, ...]:
        """``env``, then the env files' bindings of names ``env`` does not bind (a later file wins
        over an earlier one): what is resolved, before inline references and after ``env_from``."""
        taken = {b.name for b in self.env}
        found: dict[str, Binding] = {}
        for env_file in self.env_files:
            found.update((b.name, b) for b in env_file.bindings if b.name not in taken)
        return (*self.env, *found.values())

    @property
    def known_sources(self) -> frozenset[str]:
        """Declared source names plus the built-ins (asked of the source registry)."""
        return frozenset(self.sources) | builtins()
