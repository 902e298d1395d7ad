"""The Python API (docs/guides/python.md): the engine the command line runs, for programs in-process.

A ``Client`` holds one ``Resolver`` (sources, TTL cache, retry): ``load`` resolves every
binding as ``launcher run`` does, ``get`` one reference, and ``watch`` runs the watcher of
``launcher run --watch`` with a ``WatchHandle`` receiving its events instead of the
supervisor. Nothing here fetches, caches, retries or checks on its own, and the errors
raised are the ones the CLI prints. Values live only in ``Secrets`` (whose repr lists
names) and in what ``get`` returns; no log line or error of this module holds one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from launcher import deadline
from launcher.clock import Clock
from launcher.errors import LauncherError, ManifestError
from launcher.events import NOTHING, EventSink
from launcher.manifest import find
from launcher.model.config import Manifest
from launcher.model.refs import FetchKey, Reference, RefSyntaxError, parse_reference
from launcher.observe.observers import api_audit
from launcher.resolve.resolution import Resolution
from launcher.resolve.resolver import Resolver, SourceFactory, env_from_name, log_resolved, secret_fields, select
from launcher.resolve.watcher import CHECK_BOUND, Outage, Rotation, Watcher
from launcher.sources.base import Secret, Versioned
from launcher.sources.catalog import reference_problem

log = logging.getLogger(__name__)

# A path, a mapping (the parsed YAML of a manifest), a ``Manifest`` (``read_manifest``), or None.
ManifestArg = str | os.PathLike[str] | Mapping[str, Any] | Manifest | None


def find_manifest(manifest: ManifestArg, environ: Mapping[str, str]) -> Manifest:
    """The manifest as the command line finds it (``manifest.find``), or the one given."""
    if isinstance(manifest, Manifest):
        return manifest
    return find(manifest if manifest is not None else environ.get("LAUNCHER_MANIFEST") or None, environ)


def read_manifest(manifest: ManifestArg = None, *, environ: Mapping[str, str] | None = None) -> Manifest:
    """The validated manifest ``load``, ``get`` and ``Client`` would use: read once, passed to each.

    ``manifest``: a path, a mapping (parsed YAML: the same keys and checks; a problem names
    ``<mapping>`` and the field), or None (found as ``Client`` finds it). No secret is read.
    Raises ``ManifestError`` (78) with every problem found.
    """
    return find_manifest(manifest, dict(os.environ if environ is None else environ))


class Secrets(Mapping[str, str]):
    """A read-only mapping of variable name -> value; ``version(name)`` tells the secret's version.

    Its repr and str show the names only. A ``file: true`` binding holds the value
    itself here (the API writes no files).
    """

    __slots__ = ("_values", "_versions")

    def __init__(self, values: Mapping[str, str], versions: Mapping[str, str | None] | None = None) -> None:
        self._values = dict(values)
        self._versions = dict(versions or {})

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def version(self, name: str) -> str | None:
        """The version ``name``'s value was read at: None for literals and unversioned secrets,
        comma-separated for a template of several secrets. KeyError for an unknown name."""
        return self._versions.get(name) if name in self._values else self._versions[name]

    def __repr__(self) -> str:
        return f"Secrets(names={sorted(self._values)!r})"

    __str__ = __repr__


OnChange = Callable[[frozenset[str], Secrets], None]
OnError = Callable[[LauncherError], None]


def secrets_of(manifest: Manifest, resolution: Resolution) -> Secrets:
    """The values of ``resolution`` with the version of each (``env_from`` names: their secret's)."""
    versions: dict[str, str | None] = {}
    for entry in manifest.env_from:  # lowest precedence first, as the resolver applies them
        secret = resolution.secrets.get(entry.ref.fetch_key)
        if secret is None:
            continue
        try:
            fields = secret_fields(secret, entry.ref)
        except LauncherError:
            continue
        for key in fields or ():
            versions[env_from_name(entry.prefix, key)] = secret.version
    versions.update((r.name, r.version) for r in resolution.results if not r.name.endswith("*"))
    return Secrets(resolution.values, {name: versions.get(name) for name in resolution.values})


def raise_for(resolution: Resolution) -> None:
    """All or nothing, with the verdict the CLI uses (``Resolution.failure``)."""
    failure = resolution.failure()
    if failure is not None:
        raise failure


class Client:
    """Sources, cache and retry of one manifest, shared by threads; close it (or use ``with``).

    ``manifest``: a path, a mapping (parsed YAML), a ``Manifest`` (``read_manifest``), or None
    (``$LAUNCHER_MANIFEST``, else ``./launcher.yaml`` when it exists, else the built-in sources).
    ``environ`` (default ``os.environ``, copied) is used for ``${VAR}`` in the manifest and
    inline references; ``inline=False`` ignores those.
    Sources read their own variables (``VAULT_ADDR``...) from ``os.environ``, as on the command line.
    """

    def __init__(self, manifest: ManifestArg = None, *, environ: Mapping[str, str] | None = None, inline: bool = True,
                 source_factory: SourceFactory | None = None, clock: Clock | None = None) -> None:
        self._environ = dict(os.environ if environ is None else environ)
        self._inline = inline
        self.manifest = find_manifest(manifest, self._environ)
        # The audit trail, as on the command line: $LAUNCHER_AUDIT, else the manifest's audit.path.
        self._audit = api_audit(self.manifest, self._environ)
        events: EventSink = self._audit if self._audit is not None else NOTHING
        if source_factory is None:
            self.resolver = Resolver(self.manifest, clock=clock, events=events)
        else:
            self.resolver = Resolver(self.manifest, source_factory=source_factory, clock=clock, events=events)
        self._lock = threading.Lock()
        self._seen: dict[FetchKey, str | None] = {}  # the version last read of each secret
        self._handles: list[WatchHandle] = []
        self._closed = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, ref: str) -> str:
        """The value of one reference (``SOURCE://PATH[#KEY][?version=V]``), from the cache for ``cache.ttl``.

        Concurrent gets of one secret share one read. Raises ``NotFoundError`` (66),
        ``AuthError`` (77), ``UnavailableError`` (69) or ``ManifestError`` (78).
        """
        reference = self._parse(ref)
        return select(self._fetch(reference.fetch_key), reference)

    async def aget(self, ref: str) -> str:
        """``get`` on a worker thread: the event loop runs on while the secret is read."""
        import asyncio

        return await asyncio.to_thread(self.get, ref)

    def load(self) -> Secrets:
        """Every binding of the manifest (and inline references), resolved all or nothing, as ``launcher run`` would."""
        started = time.monotonic()
        resolution = self._resolve()
        raise_for(resolution)
        log_resolved(resolution, started)
        return secrets_of(self.manifest, resolution)

    async def aload(self) -> Secrets:
        """``load`` on a worker thread."""
        import asyncio

        return await asyncio.to_thread(self.load)

    def has_rotated(self, ref: str) -> bool:
        """True when the secret's current version differs from the one this client last read.

        The watcher's cheap check, one attempt (KV v2 metadata, Azure's latest version,
        a file's hash); a secret not read yet is read now (False). When True, the cached
        value is dropped, so the next ``get`` or ``load`` reads the new one. Pinned
        versions, leased and issued secrets never report rotation (a certificate is cached
        until 2/3 of its lifetime, then issued again). Raises as ``get`` does.
        """
        key = self._parse(ref).fetch_key
        if key.version is not None or key.data:  # pinned, or a write (issued, decrypted): nothing to compare
            return False
        with self._lock:
            known, last = key in self._seen, self._seen.get(key)
        if not known:
            self._fetch(key)
            return False
        source = self.resolver.source(key.source)
        if not isinstance(source, Versioned):
            return False
        with deadline.bound(min(self.manifest.retry.deadline, CHECK_BOUND)):  # one attempt, bounded as the watcher's
            current = source.current_version(key.path)
        rotated = current is not None and current != last
        if rotated:
            self.resolver.cache.invalidate(key)
        return rotated

    def invalidate(self, ref: str | None = None) -> None:
        """Drop the cached secret of ``ref``, or every cached secret: the next use reads it again."""
        if ref is not None:
            keys = [self._parse(ref).fetch_key]
        else:
            with self._lock:
                keys = [*self._seen, *(r.fetch_key for b in self.manifest.bindings for r in b.refs),
                        *(e.ref.fetch_key for e in self.manifest.env_from)]
        for key in keys:
            self.resolver.cache.invalidate(key)

    def stats(self) -> dict[str, int]:
        """Cache counters: hits, misses, fetches (backend reads), evictions, expirations, size."""
        counts = self.resolver.cache.stats
        return {"hits": counts.hits, "misses": counts.misses, "fetches": self.resolver.fetches,
                "evictions": counts.evictions, "expirations": counts.expirations, "size": len(self.resolver.cache)}

    def watch(self, on_change: OnChange | None = None, *, on_error: OnError | None = None,
              interval: float | None = None) -> WatchHandle:
        """Watch the manifest's secrets as ``launcher run --watch`` does, on a thread of their own.

        Resolves first (all or nothing, raising as ``load``). Then ``on_change(changed_names,
        secrets)`` is called on the watcher's thread whenever a value changed, and
        ``on_error(error)`` on each failed check (the values stay; one warning per outage
        is logged). ``interval`` overrides ``watch.interval``. Stop it with ``handle.stop()``.
        """
        if interval is not None and interval <= 0:
            raise ValueError("interval must be positive")
        resolution = self._resolve()
        raise_for(resolution)
        watching = self.manifest
        if interval is not None:
            watching = replace(watching, watch=replace(watching.watch, interval=float(interval)))
        handle = WatchHandle(self, secrets_of(self.manifest, resolution), on_change, on_error)
        watcher = Watcher(watching, self.resolver, self._environ, handle._post, self._inline, clock=self.resolver.clock,
                          events=self.resolver.events, kept="the watch keeps its last good values (handle.secrets)")
        watcher.track(resolution)
        with self._lock:
            self._check_open()
            self._handles.append(handle)
        handle._start(watcher)
        return handle

    def close(self) -> None:
        """Stop every watch and close the sources (revoking leases when ``revoke_on_exit``)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            handles, self._handles = self._handles, []
        for handle in handles:
            handle.stop()
        self.resolver.close()  # may revoke leases (revoke_on_exit): audited before the trail closes
        if self._audit is not None:
            self._audit.close()

    # -- internals ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the launcher client is closed")

    def _parse(self, text: str) -> Reference:
        self._check_open()
        try:
            reference = parse_reference(text, self.manifest.known_sources)
        except RefSyntaxError as exc:
            raise ManifestError(str(exc)) from None
        problem = reference_problem(self.manifest, reference)
        if problem is not None:
            raise ManifestError(f"{reference}: {problem}")
        return reference

    def _fetch(self, key: FetchKey) -> Secret:
        try:
            secret = self.resolver.fetch(key)
        except LauncherError:
            raise
        except Exception as exc:  # a bug in a backend: reported as the resolver reports it, without its text
            log.debug("unexpected error fetching %s", key, exc_info=True)
            raise LauncherError(f"{key}: internal error ({exc.__class__.__name__}); rerun with debug logging") from None
        with self._lock:
            self._seen[key] = secret.version
        return secret

    def _resolve(self) -> Resolution:
        self._check_open()
        resolution = self.resolver.resolve(self._environ, inline=self._inline)
        self._remember(resolution)
        return resolution

    def _remember(self, resolution: Resolution) -> None:
        with self._lock:
            self._seen.update((key, secret.version) for key, secret in resolution.secrets.items())

    def _forget(self, handle: WatchHandle) -> None:
        with self._lock:
            if handle in self._handles:
                self._handles.remove(handle)


class WatchHandle:
    """A running watch: ``secrets`` always holds the latest good values; ``stop()`` ends it."""

    def __init__(self, client: Client, secrets: Secrets, on_change: OnChange | None, on_error: OnError | None) -> None:
        self._client = client
        self._secrets = secrets
        self._on_change = on_change
        self._on_error = on_error
        self._watcher: Watcher | None = None
        self._stopped = threading.Event()
        self._ident: int | None = None  # the watcher thread's, seen on its first event

    @property
    def secrets(self) -> Secrets:
        return self._secrets

    def __enter__(self) -> WatchHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop watching; returns within a second, even while a check waits on a stalled server."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._client._forget(self)
        watcher = self._watcher
        if watcher is None:
            return
        if threading.get_ident() == self._ident:  # called from a callback: the thread cannot join itself
            threading.Thread(target=watcher.stop, name="watcher-stop", daemon=True).start()
        else:
            watcher.stop(wait=0.5)

    def _start(self, watcher: Watcher) -> None:
        self._watcher = watcher
        watcher.start()

    def _post(self, event: Rotation | Outage) -> None:
        """The watcher's receiver, on its thread: keep the latest good values, call back."""
        self._ident = threading.get_ident()
        if self._stopped.is_set():
            return
        if isinstance(event, Outage):  # the watcher logged it (once per outage); the values stay
            self._call("on_error", self._on_error, event.error)
            return
        self._client._remember(event.resolution)
        old = self._secrets
        self._secrets = new = secrets_of(self._client.manifest, event.resolution)
        changed = frozenset(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))
        if not changed:
            log.debug("checked %s: new version, same values", ", ".join(map(str, event.keys)))
            return
        log.info("secrets changed: %s", ", ".join(sorted(changed)), extra={"fields": {"variables": sorted(changed)}})
        self._call("on_change", self._on_change, changed, new)

    def _call(self, what: str, fn: Callable[..., None] | None, *args: Any) -> None:
        try:
            if fn is not None:
                fn(*args)
        except Exception:  # the callback's own bug: reported, and the watcher goes on
            log.error("the %s callback %s raised; watching goes on", what, getattr(fn, "__qualname__", repr(fn)), exc_info=True)


def load(manifest: ManifestArg = None, *, environ: Mapping[str, str] | None = None, inline: bool = True) -> Secrets:
    """Resolve every binding of ``manifest`` once (see ``Client``); for repeated use keep a ``Client``."""
    with Client(manifest, environ=environ, inline=inline) as client:
        return client.load()


def get(ref: str, manifest: ManifestArg = None, *, environ: Mapping[str, str] | None = None) -> str:
    """The value of one reference: built-in sources, or those declared in ``manifest``."""
    with Client(manifest, environ=environ) as client:
        return client.get(ref)


async def aload(manifest: ManifestArg = None, *, environ: Mapping[str, str] | None = None, inline: bool = True) -> Secrets:
    """``load`` on a worker thread, so the event loop runs on while secrets are read."""
    import asyncio

    return await asyncio.to_thread(load, manifest, environ=environ, inline=inline)
