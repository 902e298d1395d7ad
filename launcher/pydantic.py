"""pydantic-settings 2 integration (docs/guides/python.md): settings fields filled from the launcher's secrets.

Install with ``pip install 'secret-launcher[pydantic]'``. Each field of a settings class is routed:

1. ``Field(json_schema_extra={"secret": REF})``: that reference (or ``{{ }}`` template);
2. else the binding (a manifest ``env`` entry, or an inline reference in the environment)
   whose name is the field's environment name as pydantic-settings computes it (``env_prefix``
   and aliases applied; case-insensitive unless ``case_sensitive``);
3. else nothing: the field is left to the other sources.

The routes become the bindings of one small manifest (only what the fields use), resolved by
a ``launcher.Client``: cache, retry, errors and the watcher are the launcher's own. A field
with a default is an optional binding, so a missing secret leaves the default; a missing
required one raises the launcher's ``NotFoundError`` (66) naming where it was asked for,
never a pydantic "field required".
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Generic, TypeVar, cast

try:
    from pydantic import ValidationError
    from pydantic.fields import FieldInfo
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsError
    from pydantic_settings.sources import PydanticBaseEnvSettingsSource
except ImportError as exc:  # the extra is not installed
    raise ImportError("launcher.pydantic needs pydantic-settings 2: pip install 'secret-launcher[pydantic]'") from exc

from launcher.api import Client, ManifestArg, Secrets, find_manifest, load
from launcher.errors import LauncherError, ManifestError
from launcher.model.config import Binding, Manifest
from launcher.model.refs import RefSyntaxError, parse_value, references
from launcher.record import record
from launcher.resolve.resolver import inline_bindings
from launcher.sources.catalog import reference_problem

log = logging.getLogger(__name__)

S = TypeVar("S", bound=BaseSettings)
SECRET_KEY = "secret"  # the json_schema_extra key that names a field's reference


@record
class Route:
    """Where one field's value comes from."""

    field: str  # the field's name
    key: str  # what the value is passed to pydantic under (the name, or the alias it validates by)
    binding: Binding
    complex: bool = False  # reached through an AliasPath: JSON-decoded first


class LauncherSettingsSource(PydanticBaseEnvSettingsSource):
    """A pydantic-settings source that reads the fields it routes (module docstring) from the launcher.

    Add it in ``settings_customise_sources``; ``manifest`` is found as ``launcher.Client`` finds
    it. Nothing is read until pydantic-settings calls it. Errors are the launcher's
    (``NotFoundError``, ``AuthError``, ``UnavailableError``, ``ManifestError``, or
    ``CompoundError`` for several). Set ``hide_input_in_errors=True`` on the settings class so that
    a secret that fails validation is not shown in the ``ValidationError``.
    """

    def __init__(self, settings_cls: type[BaseSettings], manifest: ManifestArg = None, *,
                 environ: Mapping[str, str] | None = None, inline: bool = True,
                 case_sensitive: bool | None = None, env_prefix: str | None = None) -> None:
        super().__init__(settings_cls, case_sensitive=case_sensitive, env_prefix=env_prefix)
        self.manifest = manifest
        self.environ = environ
        self.inline = inline
        self._preset: tuple[list[Route], Secrets] | None = None  # already resolved (``Refreshing``)

    def __repr__(self) -> str:
        return f"LauncherSettingsSource({self.settings_cls.__name__}, manifest={self.manifest!r})"

    def plan(self) -> tuple[Manifest, list[Route]]:
        """The route of every field that has one, and a manifest of just the bindings they use."""
        environ = dict(os.environ if self.environ is None else self.environ)
        manifest = find_manifest(self.manifest, environ)
        found = [*manifest.bindings, *(inline_bindings(environ, manifest) if self.inline else ())]
        by_name: dict[str, Binding] = {}
        for binding in found:
            by_name.setdefault(self._apply_case_sensitive(binding.name), binding)
        routes: list[Route] = []
        for name, field in self.settings_cls.model_fields.items():
            candidates = self._extract_field_info(field, name)  # (key, env name, is complex), as the env source reads it
            ref = _secret_of(field)
            if ref is not None:
                binding = self._secret_binding(manifest, name, ref, optional=not field.is_required())
                routes.append(Route(name, candidates[0][0], binding, candidates[0][2]))
                continue
            for key, env_name, is_complex in candidates:
                binding_or_none = by_name.get(env_name)
                if binding_or_none is not None:
                    if not field.is_required() and binding_or_none.default is None:
                        binding_or_none = replace(binding_or_none, optional=True)  # missing: the field's default
                    routes.append(Route(name, key, binding_or_none, is_complex))
                    break
        bindings: dict[str, Binding] = {}
        for route in routes:  # one binding per name; required when any field using it is
            known = bindings.get(route.binding.name)
            if known is None or (known.optional and not route.binding.optional):
                bindings[route.binding.name] = route.binding
        return replace(manifest, env=tuple(bindings.values()), env_from=(), env_files=()), routes

    def _secret_binding(self, manifest: Manifest, name: str, text: str, optional: bool) -> Binding:
        where, what = f"{self.settings_cls.__name__}.{name}", f"json_schema_extra[{SECRET_KEY!r}]"
        try:
            parts = parse_value(text, manifest.known_sources)
        except RefSyntaxError as exc:
            raise ManifestError(str(exc), where=where, field=what) from None
        refs = references(parts)
        if not refs:  # the text is not echoed: it may be a value pasted in the wrong place
            raise ManifestError("not a reference (expected SOURCE://PATH[#KEY][?version=V])", where=where, field=what)
        for ref in refs:
            problem = reference_problem(manifest, ref)
            if problem is not None:
                raise ManifestError(f"{ref}: {problem}", where=where, field=what)
        # A name no manifest binding can have (a dot), so it never shadows one.
        return Binding(where, parts, optional=optional, where="<settings>")

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: ``__call__`` resolves every routed field at once (one concurrent resolution)."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if self._preset is not None:
            routes, secrets = self._preset
        else:
            manifest, routes = self.plan()
            secrets = load(manifest, environ=self.environ, inline=False) if routes else Secrets({})
        data: dict[str, Any] = {}
        for route in routes:
            if route.binding.name not in secrets:
                continue  # optional and missing: the field keeps its default
            field = self.settings_cls.model_fields[route.field]
            try:
                data[route.key] = self.prepare_field_value(route.field, field, secrets[route.binding.name], route.complex)
            except ValueError:  # not from the exception: a JSON error holds the whole document
                raise SettingsError(f'error parsing value for field "{route.field}" from source "{type(self).__name__}"') from None
        return data


def _secret_of(field: FieldInfo) -> str | None:
    extra = field.json_schema_extra
    value = extra.get(SECRET_KEY) if isinstance(extra, dict) else None
    return value if isinstance(value, str) else None


class Refreshing(Generic[S]):
    """Settings kept up to date as the secrets they use rotate.

    Builds ``settings_cls()`` with a ``LauncherSettingsSource`` (yours from
    ``settings_customise_sources``, else one right after the init arguments) fed by a
    ``launcher.Client`` watch of the routed secrets. ``current`` is the newest valid
    instance; a rotation that fails validation keeps the old one and logs one warning
    (until a valid one comes). Inputs are hidden from validation errors. ``interval``
    overrides ``watch.interval``. Close it (or use ``with``) to stop watching.
    """

    def __init__(self, settings_cls: type[S], manifest: ManifestArg = None, *, interval: float | None = None,
                 environ: Mapping[str, str] | None = None, inline: bool = True) -> None:
        self._planner = LauncherSettingsSource(settings_cls, manifest, environ=environ, inline=inline)
        small, self._routes = self._planner.plan()
        self._bound = _with_source(settings_cls, self._source)
        self._callbacks: list[Callable[[S], None]] = []
        self._lock = threading.Lock()
        self._failing = False
        self._client = Client(small, environ=environ, inline=False)
        try:
            with self._lock:  # a rotation seen meanwhile waits for the first instance
                self._handle = self._client.watch(on_change=self._changed, interval=interval)
                self._current: S = self._bound()
        except BaseException:
            self._client.close()
            raise

    @property
    def current(self) -> S:
        return self._current

    def on_change(self, fn: Callable[[S], None]) -> Callable[[S], None]:
        """Call ``fn(new_settings)`` after each refresh (on the watcher's thread); usable as a decorator."""
        with self._lock:
            self._callbacks.append(fn)
        return fn

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Refreshing[S]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _source(self, settings_cls: type[BaseSettings]) -> PydanticBaseSettingsSource:
        source = copy.copy(self._planner)
        source._preset = (self._routes, self._handle.secrets)
        return source

    def _changed(self, names: frozenset[str], secrets: Secrets) -> None:
        with self._lock:
            try:
                new = self._bound()
            except Exception as exc:  # invalid values (or another source failing): keep what works
                if not self._failing:
                    self._failing = True
                    log.warning("%s: the new values of %s do not make valid settings (%s); keeping the current settings",
                                self._bound.__name__, ", ".join(sorted(names)), _summary(exc))
                return
            self._failing = False
            self._current = new
            callbacks = list(self._callbacks)
        for fn in callbacks:
            try:
                fn(new)
            except Exception:  # the callback's own bug: reported, and refreshing goes on
                log.error("the on_change callback %s raised", getattr(fn, "__qualname__", repr(fn)), exc_info=True)


def _summary(exc: Exception) -> str:
    """What failed, without any input value: field locations and error types, or the launcher's message."""
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or '-'}: {e['type']}" for e in errors)
    if isinstance(exc, LauncherError):
        return exc.message
    return type(exc).__name__


def _with_source(base: type[S], make: Callable[[type[BaseSettings]], PydanticBaseSettingsSource]) -> type[S]:
    """A subclass of ``base`` (same name) whose launcher source is ``make(cls)``."""

    def customise(cls: type[BaseSettings], settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                  env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                  file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        # The class's own choice of sources, kept (``cls`` is the one it was written for).
        chosen = base.settings_customise_sources(settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings)
        ours = make(settings_cls)
        if any(isinstance(s, LauncherSettingsSource) for s in chosen):
            return tuple(ours if isinstance(s, LauncherSettingsSource) else s for s in chosen)
        at = chosen.index(init_settings) + 1 if init_settings in chosen else 0
        return (*chosen[:at], ours, *chosen[at:])

    namespace = {
        "__module__": base.__module__,
        "__qualname__": base.__qualname__,
        "model_config": {**base.model_config, "hide_input_in_errors": True},
        "settings_customise_sources": classmethod(customise),
    }
    return cast("type[S]", type(base.__name__, (base,), namespace))
