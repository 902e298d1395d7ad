"""Manifest loading: YAML -> validated ``config.Manifest``, errors with file:line.

The YAML is composed into nodes (not constructed into Python objects) so that
every value keeps its line and its source text: ``0755`` stays ``0755``, and a
boolean or null where a string belongs is refused with a hint to quote it.
Unknown keys anywhere are errors, so a typo never passes silently.
"""

from __future__ import annotations

import difflib
import os
import re
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from launcher.config import (
    DEFAULT_SCRUB,
    ON_CHANGE_ACTIONS,
    AzureSourceConfig,
    Binding,
    CacheConfig,
    EnvFrom,
    FileSourceConfig,
    Manifest,
    ProcessConfig,
    RetryConfig,
    SourceConfig,
    TlsConfig,
    VaultAuth,
    VaultSourceConfig,
    WatchConfig,
)
from launcher.durations import parse_duration, parse_signal
from launcher.errors import ManifestError
from launcher.interpolate import interpolate
from launcher.refs import (
    BUILTIN_SOURCES,
    SOURCE_NAME_RE,
    WELL_KNOWN_SCHEMES,
    RefSyntaxError,
    parse_reference,
    parse_value,
)

__all__ = ["ENV_NAME_RE", "Manifest", "load_manifest", "parse_manifest"]

ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_STR = "tag:yaml.org,2002:str"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
# Tags a plain scalar resolves to; their text is used as written. Anything else
# (``!!binary``, ``!custom``) is refused rather than silently read as text.
_TEXT_TAGS = frozenset({_STR, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"})
Entries = dict[str, tuple[yaml.Node, yaml.Node]]
_TOP_KEYS = ("version", "sources", "env", "env_from", "cache", "retry", "watch", "process")
_VAULT_AUTH_KEYS = {
    "token": ("token_file",),
    "approle": ("role_id", "secret_id", "secret_id_file", "mount"),
    "kubernetes": ("role", "jwt_file", "mount"),
    "jwt": ("role", "jwt_file", "mount"),
}
_AZURE_CREDENTIALS = ("default", "managed_identity", "workload_identity", "client_secret", "cli")
T = TypeVar("T")

# libyaml's composer when PyYAML has it: 15x faster than the pure-Python one (6 ms for
# 100 bindings), with the same nodes and line marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_manifest(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Manifest:
    """Read and validate a manifest file; ``ManifestError`` (78) on any problem."""
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError("manifest not found", where=name) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read manifest: {exc.__class__.__name__}", where=name) from None
    return parse_manifest(text, name, os.environ if environ is None else environ)


def parse_manifest(text: str, filename: str, environ: Mapping[str, str]) -> Manifest:
    """Validate manifest ``text``; relative paths are taken from ``filename``'s directory."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = " ".join(str(exc.problem or exc.context or "syntax error").split())  # one line
        raise ManifestError(f"invalid YAML: {problem}", where=f"{filename}:{line}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"invalid YAML ({exc.__class__.__name__})", where=filename) from None
    if root is None:
        raise ManifestError("empty manifest (at least `version: 1` is required)", where=f"{filename}:1")
    return _Reader(filename, environ).manifest(root)


class _Reader:
    """Walks composed YAML nodes; every error it raises names file:line and field."""

    def __init__(self, filename: str, environ: Mapping[str, str]) -> None:
        self.filename = filename
        self.environ = environ
        self.base = Path(filename).resolve().parent

    # -- error helpers -------------------------------------------------------

    def where(self, node: yaml.Node) -> str:
        return f"{self.filename}:{node.start_mark.line + 1}"

    def fail(self, node: yaml.Node, field: str, message: str) -> ManifestError:
        return ManifestError(message, where=self.where(node), field=field)

    # -- structure -----------------------------------------------------------

    def mapping(self, node: yaml.Node, field: str, allowed: tuple[str, ...] | None = None) -> Entries:
        """Return key -> (key node, value node); refuse duplicates and unknown keys."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, field, f"expected a mapping, got {_kind(node)}")
        out: Entries = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL:
                raise self.fail(key_node, field, "keys must be strings")
            key = str(key_node.value)
            sub = f"{field}.{key}" if field else key
            if key in out:
                raise self.fail(key_node, sub, "duplicate key")
            if allowed is not None and key not in allowed:
                hint = _did_you_mean(key, allowed)
                raise self.fail(key_node, sub, f"unknown key{hint} (allowed: {', '.join(allowed)})")
            out[key] = (key_node, value_node)
        return out

    def section(self, top: Entries, key: str, allowed: tuple[str, ...]) -> Entries:
        if key not in top or _is_null(top[key][1]):
            return {}
        return self.mapping(top[key][1], key, allowed)

    # -- scalars -------------------------------------------------------------

    def text(self, node: yaml.Node, field: str) -> str:
        """A string value, interpolated; numbers keep their source text."""
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, field, f"expected a string, got {_kind(node)}")
        if node.tag == _BOOL:
            raise self.fail(node, field, f"{node.value!r} is read as a boolean; quote it if you mean a string")
        if node.tag == _NULL:
            shown = repr(node.value) if node.value else "an empty value"
            raise self.fail(node, field, f"{shown} is read as null; quote it if you mean a string (\"\" for empty)")
        if node.tag not in _TEXT_TAGS:
            raise self.fail(node, field, f"unsupported YAML tag {node.tag!r}; write a plain or quoted string")
        try:
            return interpolate(str(node.value), self.environ)
        except ValueError as exc:
            raise self.fail(node, field, str(exc)) from None

    def convert(self, node: yaml.Node, field: str, fn: Callable[[str], T]) -> T:
        text = node.value if isinstance(node, yaml.ScalarNode) and node.tag in (_BOOL, _NULL) else self.text(node, field)
        try:
            return fn(str(text))
        except ValueError as exc:
            raise self.fail(node, field, str(exc)) from None

    def boolean(self, node: yaml.Node, field: str) -> bool:
        return self.convert(node, field, _to_bool)

    def duration(self, node: yaml.Node, field: str, minimum: float = 0.0) -> float:
        value = self.convert(node, field, parse_duration)
        if value < minimum or (minimum > 0 and value == 0):
            raise self.fail(node, field, f"must be more than {minimum:g}s" if minimum else "must not be negative")
        return value

    def integer(self, node: yaml.Node, field: str, minimum: int) -> int:
        value = self.convert(node, field, _to_int)
        if value < minimum:
            raise self.fail(node, field, f"must be at least {minimum}")
        return value

    def number(self, node: yaml.Node, field: str, minimum: float) -> float:
        value = self.convert(node, field, _to_float)
        if value < minimum:
            raise self.fail(node, field, f"must be at least {minimum:g}")
        return value

    def choice(self, node: yaml.Node, field: str, choices: tuple[str, ...]) -> str:
        value = self.text(node, field)
        if value not in choices:
            raise self.fail(node, field, f"{value!r} is not one of: {', '.join(choices)}")
        return value

    def signal(self, node: yaml.Node, field: str) -> signal.Signals:
        return self.convert(node, field, parse_signal)

    def path(self, node: yaml.Node, field: str) -> str:
        value = self.text(node, field)
        if not value:
            raise self.fail(node, field, "must not be empty")
        return str(self.base / os.path.expanduser(value))

    def names(self, node: yaml.Node, field: str) -> tuple[str, ...]:
        if _is_null(node):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, field, f"expected a list, got {_kind(node)}")
        out = []
        for item in node.value:
            name = self.text(item, field)
            if not ENV_NAME_RE.match(name):
                raise self.fail(item, field, f"{name!r} is not a valid variable name")
            out.append(name)
        return tuple(out)

    # -- sections ------------------------------------------------------------

    def manifest(self, root: yaml.Node) -> Manifest:
        top = self.mapping(root, "", _TOP_KEYS)
        if "version" not in top:
            raise self.fail(root, "version", "missing (add `version: 1`)")
        version_node = top["version"][1]
        version = self.text(version_node, "version")
        if version.strip() != "1":
            raise self.fail(version_node, "version", f"unsupported version {version!r} (expected 1)")
        sources = self.sources(top)
        known = frozenset(sources) | BUILTIN_SOURCES
        manifest = Manifest(
            path=self.filename,
            sources=sources,
            env=self.env(top, known),
            env_from=self.env_from(top, known),
            cache=self.cache(top),
            retry=self.retry(top),
            watch=self.watch(top),
            process=self.process(top),
        )
        self.check_references(manifest)
        return manifest

    def check_references(self, manifest: Manifest) -> None:
        """Refuse, before any fetch, references their source's type can never serve
        (``?version=`` on a file source, a malformed Key Vault secret name)."""
        located = [(b.where, f"env.{b.name}", r) for b in manifest.env for r in b.refs]
        located += [(e.where, "env_from", e.ref) for e in manifest.env_from]
        for where, field, ref in located:
            problem = manifest.reference_problem(ref)
            if problem is not None:
                raise ManifestError(f"{ref}: {problem}", where=where, field=field)

    def sources(self, top: Entries) -> dict[str, SourceConfig]:
        out: dict[str, SourceConfig] = {}
        for name, (key_node, node) in self._all(top, "sources"):
            field = f"sources.{name}"
            if not SOURCE_NAME_RE.match(name):
                raise self.fail(key_node, field, "source names must match [a-z][a-z0-9_-]*")
            if name.lower() in WELL_KNOWN_SCHEMES:
                raise self.fail(key_node, field, f"{name!r} is a well-known URL scheme and cannot name a source")
            fields = self.mapping(node, field)
            if "type" not in fields:
                raise self.fail(node, f"{field}.type", "missing (one of: vault, azure, file)")
            kind = self.choice(fields["type"][1], f"{field}.type", ("vault", "azure", "file"))
            builders: dict[str, Callable[[str, yaml.Node, str], SourceConfig]] = {
                "vault": self.vault_source, "azure": self.azure_source, "file": self.file_source,
            }
            out[name] = builders[kind](name, node, field)
        return out

    def _all(self, top: Entries, key: str) -> list[tuple[str, tuple[yaml.Node, yaml.Node]]]:
        if key not in top or _is_null(top[key][1]):
            return []
        return list(self.mapping(top[key][1], key).items())

    def vault_source(self, name: str, node: yaml.Node, field: str) -> VaultSourceConfig:
        f = self.mapping(node, field, ("type", "address", "namespace", "auth", "tls", "revoke_on_exit"))
        kw: dict[str, Any] = {}
        for key in ("address", "namespace"):
            if key in f:
                kw[key] = self.text(f[key][1], f"{field}.{key}")
        if "auth" in f:
            kw["auth"] = self.vault_auth(f["auth"][1], f"{field}.auth")
        if "tls" in f:
            kw["tls"] = self.tls(f["tls"][1], f"{field}.tls", ("ca_cert", "ca_path", "client_cert", "client_key", "skip_verify"))
        if "revoke_on_exit" in f:
            kw["revoke_on_exit"] = self.boolean(f["revoke_on_exit"][1], f"{field}.revoke_on_exit")
        return VaultSourceConfig(name=name, **kw)

    def vault_auth(self, node: yaml.Node, field: str) -> VaultAuth:
        f = self.mapping(node, field)
        method = self.choice(f["method"][1], f"{field}.method", tuple(_VAULT_AUTH_KEYS)) if "method" in f else "token"
        f = self.mapping(node, field, ("method", *_VAULT_AUTH_KEYS[method]))
        kw: dict[str, Any] = {"method": method}
        for key, (_, value) in f.items():
            if key == "method":
                continue
            kw[key] = self.path(value, f"{field}.{key}") if key.endswith("_file") else self.text(value, f"{field}.{key}")
        if method == "approle" and "role_id" not in kw:
            raise self.fail(node, f"{field}.role_id", "missing (approle needs role_id and secret_id or secret_id_file)")
        if method == "approle" and "secret_id" in kw and "secret_id_file" in kw:
            raise self.fail(node, f"{field}.secret_id", "give secret_id or secret_id_file, not both")
        if method in ("kubernetes", "jwt") and "role" not in kw:
            raise self.fail(node, f"{field}.role", f"missing ({method} needs a role)")
        return VaultAuth(**kw)

    def tls(self, node: yaml.Node, field: str, allowed: tuple[str, ...]) -> TlsConfig:
        f = self.mapping(node, field, allowed)
        kw: dict[str, Any] = {}
        for key, (_, value) in f.items():
            kw[key] = self.boolean(value, f"{field}.{key}") if key == "skip_verify" else self.path(value, f"{field}.{key}")
        return TlsConfig(**kw)

    def azure_source(self, name: str, node: yaml.Node, field: str) -> AzureSourceConfig:
        keys = ("type", "vault_url", "credential", "tenant_id", "client_id", "client_secret_file", "authority", "tls")
        f = self.mapping(node, field, (*keys, "verify_challenge_resource"))
        if "vault_url" not in f:
            raise self.fail(node, f"{field}.vault_url", "missing (e.g. https://NAME.vault.azure.net/)")
        kw: dict[str, Any] = {}
        for key in ("vault_url", "tenant_id", "client_id", "authority"):
            if key in f:
                kw[key] = self.text(f[key][1], f"{field}.{key}")
        if not kw["vault_url"].startswith("https://"):
            raise self.fail(f["vault_url"][1], f"{field}.vault_url", "must be an https:// URL")
        if "credential" in f:
            kw["credential"] = self.choice(f["credential"][1], f"{field}.credential", _AZURE_CREDENTIALS)
        if "client_secret_file" in f:
            kw["client_secret_file"] = self.path(f["client_secret_file"][1], f"{field}.client_secret_file")
        if "tls" in f:
            kw["ca_cert"] = self.tls(f["tls"][1], f"{field}.tls", ("ca_cert",)).ca_cert
        if "verify_challenge_resource" in f:
            kw["verify_challenge_resource"] = self.boolean(f["verify_challenge_resource"][1], f"{field}.verify_challenge_resource")
        return AzureSourceConfig(name=name, **kw)

    def file_source(self, name: str, node: yaml.Node, field: str) -> FileSourceConfig:
        f = self.mapping(node, field, ("type", "path"))
        if "path" not in f:
            raise self.fail(node, f"{field}.path", "missing (the YAML or JSON file of secrets)")
        return FileSourceConfig(name=name, path=self.path(f["path"][1], f"{field}.path"))

    def env(self, top: Entries, known: frozenset[str]) -> tuple[Binding, ...]:
        out = []
        for name, (key_node, node) in self._all(top, "env"):
            field = f"env.{name}"
            if not ENV_NAME_RE.match(name):
                raise self.fail(key_node, field, "not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)")
            out.append(self.binding(name, node, field, known))
        return tuple(out)

    def binding(self, name: str, node: yaml.Node, field: str, known: frozenset[str]) -> Binding:
        where = self.where(node)
        if isinstance(node, yaml.ScalarNode):
            return Binding(name, self.parts(node, field, known), where=where)
        f = self.mapping(node, field, ("ref", "value", "file", "default", "optional", "on_change"))
        if ("ref" in f) == ("value" in f):
            raise self.fail(node, field, "needs exactly one of `ref` or `value`")
        if "ref" in f:
            parts = self.parts(f["ref"][1], f"{field}.ref", known)
            if len(parts) == 1 and isinstance(parts[0], str):
                raise self.fail(f["ref"][1], f"{field}.ref", "holds a literal, not a reference (use `value:` for literals)")
        else:
            parts = (self.text(f["value"][1], f"{field}.value"),)
        default = self.text(f["default"][1], f"{field}.default") if "default" in f else None
        optional = self.boolean(f["optional"][1], f"{field}.optional") if "optional" in f else False
        on_change = self.choice(f["on_change"][1], f"{field}.on_change", ON_CHANGE_ACTIONS) if "on_change" in f else None
        file = self.boolean(f["file"][1], f"{field}.file") if "file" in f else False
        return Binding(name, parts, file=file, default=default, optional=optional or default is not None, on_change=on_change, where=where)

    def parts(self, node: yaml.Node, field: str, known: frozenset[str]) -> tuple[Any, ...]:
        text = self.text(node, field)
        try:
            return parse_value(text, known)
        except RefSyntaxError as exc:
            raise self.fail(node, field, str(exc)) from None

    def env_from(self, top: Entries, known: frozenset[str]) -> tuple[EnvFrom, ...]:
        if "env_from" not in top or _is_null(top["env_from"][1]):
            return ()
        seq = top["env_from"][1]
        if not isinstance(seq, yaml.SequenceNode):
            raise self.fail(seq, "env_from", f"expected a list, got {_kind(seq)}")
        out = []
        for i, item in enumerate(seq.value):
            field = f"env_from[{i}]"
            f = self.mapping(item, field, ("ref", "prefix"))
            if "ref" not in f:
                raise self.fail(item, f"{field}.ref", "missing")
            ref_node = f["ref"][1]
            try:
                ref = parse_reference(self.text(ref_node, f"{field}.ref"), known)
            except RefSyntaxError as exc:
                raise self.fail(ref_node, f"{field}.ref", str(exc)) from None
            if ref.key is not None:
                raise self.fail(ref_node, f"{field}.ref", "takes a whole secret: drop the #key")
            prefix = self.text(f["prefix"][1], f"{field}.prefix") if "prefix" in f else ""
            if prefix and not ENV_NAME_RE.match(prefix):
                raise self.fail(f["prefix"][1], f"{field}.prefix", f"{prefix!r} cannot start a variable name")
            out.append(EnvFrom(ref, prefix, self.where(item)))
        return tuple(out)

    def cache(self, top: Entries) -> CacheConfig:
        f = self.section(top, "cache", ("ttl", "max_entries"))
        kw: dict[str, Any] = {}
        if "ttl" in f:
            kw["ttl"] = self.duration(f["ttl"][1], "cache.ttl")
        if "max_entries" in f:
            kw["max_entries"] = self.integer(f["max_entries"][1], "cache.max_entries", 1)
        return CacheConfig(**kw)

    def retry(self, top: Entries) -> RetryConfig:
        f = self.section(top, "retry", ("attempts", "initial_delay", "max_delay", "multiplier", "jitter", "deadline"))
        kw: dict[str, Any] = {}
        if "attempts" in f:
            kw["attempts"] = self.integer(f["attempts"][1], "retry.attempts", 1)
        for key in ("initial_delay", "max_delay", "deadline"):
            if key in f:
                kw[key] = self.duration(f[key][1], f"retry.{key}")
        if "multiplier" in f:
            kw["multiplier"] = self.number(f["multiplier"][1], "retry.multiplier", 1.0)
        if "jitter" in f:
            kw["jitter"] = self.choice(f["jitter"][1], "retry.jitter", ("full", "equal", "none"))
        return RetryConfig(**kw)

    def watch(self, top: Entries) -> WatchConfig:
        keys = ("enabled", "interval", "on_change", "signal", "debounce", "splay", "on_error", "max_restarts", "restart_window")
        f = self.section(top, "watch", keys)
        kw: dict[str, Any] = {}
        if "enabled" in f:
            kw["enabled"] = self.boolean(f["enabled"][1], "watch.enabled")
        if "interval" in f:
            kw["interval"] = self.duration(f["interval"][1], "watch.interval", minimum=0.001)
        if "restart_window" in f:
            kw["restart_window"] = self.duration(f["restart_window"][1], "watch.restart_window", minimum=0.001)
        for key in ("debounce", "splay"):
            if key in f:
                kw[key] = self.duration(f[key][1], f"watch.{key}")
        if "on_change" in f:
            kw["on_change"] = self.choice(f["on_change"][1], "watch.on_change", ON_CHANGE_ACTIONS)
        if "signal" in f:
            kw["signal"] = self.signal(f["signal"][1], "watch.signal")
        if "on_error" in f:
            kw["on_error"] = self.choice(f["on_error"][1], "watch.on_error", ("keep", "exit"))
        if "max_restarts" in f:
            kw["max_restarts"] = self.integer(f["max_restarts"][1], "watch.max_restarts", 1)
        return WatchConfig(**kw)

    def process(self, top: Entries) -> ProcessConfig:
        keys = ("stop_signal", "stop_timeout", "pristine", "inherit", "scrub", "passthrough", "signal_target")
        f = self.section(top, "process", keys)
        kw: dict[str, Any] = {}
        if "stop_signal" in f:
            kw["stop_signal"] = self.signal(f["stop_signal"][1], "process.stop_signal")
        if "stop_timeout" in f:
            kw["stop_timeout"] = self.duration(f["stop_timeout"][1], "process.stop_timeout")
        if "pristine" in f:
            kw["pristine"] = self.boolean(f["pristine"][1], "process.pristine")
        for key in ("inherit", "passthrough"):
            if key in f:
                kw[key] = self.names(f[key][1], f"process.{key}")
        if "scrub" in f:
            extra = self.names(f["scrub"][1], "process.scrub")
            kw["scrub"] = DEFAULT_SCRUB + tuple(n for n in extra if n not in DEFAULT_SCRUB)
        if "signal_target" in f:
            kw["signal_target"] = self.choice(f["signal_target"][1], "process.signal_target", ("group", "child"))
        return ProcessConfig(**kw)


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "null"
    return "a string"  # the text is not echoed: under env it may be a value


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL


def _to_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "yes", "on", "1"):
        return True
    if low in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _to_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None


def _to_float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


def _did_you_mean(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
