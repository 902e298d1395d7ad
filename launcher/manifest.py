"""Manifest loading: YAML -> validated ``config.Manifest``, errors with file:line.

The YAML is composed into nodes (not constructed into Python objects) so that
every value keeps its line and its source text: ``0755`` stays ``0755``, and a
boolean or null where a string belongs is refused with a hint to quote it.
Unknown keys anywhere are errors, so a typo never passes silently.

Independent problems (each source, binding, ``env_from`` entry and section
field) are all collected, in file order, and raised as one ``ManifestError``
whose ``more`` holds the rest (at most ``MAX_PROBLEMS``, then a note of how
many more). Problems that make further reading meaningless (unreadable file,
invalid YAML, a top level that is not a mapping, a missing or unsupported
``version``) stop at once.

Bounds, so that no input can hang or crash the reader: the file is at most
``MAX_MANIFEST_BYTES``; ``${...}`` nesting is capped in ``interpolate``; YAML
nesting is capped by libyaml (1000 levels) and a ``RecursionError`` of the
pure-Python composer is reported as nesting too; aliases may repeat at most
``MAX_ALIAS_EXPANSION`` units (characters and entries) of the manifest.
"""

from __future__ import annotations

import codecs
import difflib
import math
import os
import re
import signal
import types
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

__all__ = [
    "ENV_NAME_RE",
    "MAX_MANIFEST_BYTES",
    "MAX_PROBLEMS",
    "InvalidYamlError",
    "Manifest",
    "compose_yaml",
    "decode_text",
    "load_manifest",
    "parse_manifest",
    "read_capped",
]

ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_PROBLEMS = 20
MAX_COUNTED = 1000  # reading stops after this many problems: each costs microseconds, a file can hold a million
MAX_ALIAS_EXPANSION = 4 * 1024 * 1024
_ENTRY_COST = 16  # an entry costs the reader about what 16 characters of text do
_SHOWN_KEY_LEN = 64  # longer keys are shortened in messages
_STR = "tag:yaml.org,2002:str"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
# Tags a plain scalar resolves to; their text is used as written. Anything else
# (``!!binary``, ``!custom``) is refused rather than silently read as text.
_TEXT_TAGS = frozenset({_STR, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"})
# What YAML refuses in a stream (PyYAML's reader): found again to name the line and character.
_NON_PRINTABLE_RE = re.compile(r"[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
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
Reader = Callable[[yaml.Node, str], Any]

# libyaml's composer when PyYAML has it: 15x faster than the pure-Python one (6 ms for
# 100 bindings), with the same nodes and line marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_capped(path: str, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of ``path`` (so a caller can tell "too large"
    without reading ``/dev/zero`` to the end). Raises ``OSError`` and, for a
    path holding a NUL byte, ``ValueError``."""
    with open(path, "rb") as fh:
        return fh.read(limit + 1)


def decode_text(data: bytes) -> str:
    """``data`` as UTF-8 text (a leading BOM is dropped).

    Raises ``ValueError`` whose message says why in plain words:
    ``not UTF-8 text (it looks like UTF-16; save it as UTF-8)`` or
    ``not UTF-8 text (invalid byte at offset N)``.
    """
    wide = _wide_encoding(data)
    if wide is not None:
        raise ValueError(f"not UTF-8 text (it looks like {wide}; save it as UTF-8)")
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (invalid byte at offset {start + exc.start})") from None


def _wide_encoding(data: bytes) -> str | None:
    """``UTF-16`` or ``UTF-32`` when ``data`` has that BOM or its telltale zero bytes."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "UTF-32"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16"
    sample = data[:1024]
    if len(sample) < 4 or b"\x00" not in sample:
        return None
    # ASCII text as UTF-32 has three zero bytes in every four; as UTF-16, one in every two.
    lanes = [sample[i::4] for i in range(4)]
    zero = [lane.count(0) / len(lane) for lane in lanes]
    if sorted(zero)[1] > 0.9 and min(zero) < 0.1:
        return "UTF-32"
    if (min(zero[1], zero[3]) > 0.9 and max(zero[0], zero[2]) < 0.1) or (min(zero[0], zero[2]) > 0.9 and max(zero[1], zero[3]) < 0.1):
        return "UTF-16"
    return None


def load_manifest(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Manifest:
    """Read and validate a manifest file; ``ManifestError`` (78) on any problem.

    A file that cannot be read as a manifest (missing, a directory, not
    permitted, larger than 4 MiB, not UTF-8) names the file alone as ``where``.
    """
    name = os.fspath(path)
    try:
        data = read_capped(name, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise ManifestError("manifest not found", where=name) from None
    except IsADirectoryError:
        raise ManifestError("is a directory, not a manifest file", where=name) from None
    except PermissionError:
        raise ManifestError("permission denied (cannot read the manifest)", where=name) from None
    except OSError as exc:
        raise ManifestError(f"cannot read manifest ({(exc.strerror or 'read error').lower()})", where=name) from None
    except ValueError:
        raise ManifestError("the manifest path holds a NUL byte", where=name) from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError("larger than 4 MiB; a manifest is a small text file", where=name)
    try:
        text = decode_text(data)
    except ValueError as exc:
        raise ManifestError(str(exc), where=name) from None
    return parse_manifest(text, name, os.environ if environ is None else environ)


def parse_manifest(text: str, filename: str, environ: Mapping[str, str]) -> Manifest:
    """Validate manifest ``text``; relative paths are taken from ``filename``'s directory."""
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError("larger than 4 MiB; a manifest is a small text file", where=filename)
    nul = text.find("\x00")
    if nul >= 0:
        raise ManifestError("holds a NUL byte; a manifest must be text (save it as UTF-8)", where=f"{filename}:{_line_of(text, nul)}")
    try:
        root = compose_yaml(text)
    except InvalidYamlError as exc:
        raise ManifestError(f"invalid YAML: {exc}", where=f"{filename}:{exc.line or 1}") from None
    if root is None:
        raise ManifestError("empty manifest (at least `version: 1` is required)", where=f"{filename}:1")
    return _Reader(filename, environ).manifest(root)


class InvalidYamlError(ValueError):
    """Text that is not YAML: the problem in plain words, one line, and its line (or None)."""

    def __init__(self, problem: str, line: int | None) -> None:
        super().__init__(problem)
        self.line = line


def compose_yaml(text: str) -> yaml.Node | None:
    """``yaml.compose`` with every way it can fail turned into ``InvalidYamlError``.

    Composed nodes share what aliases point to (nothing is expanded); libyaml
    refuses nesting deeper than 1000 levels, and the pure-Python composer's
    ``RecursionError`` is reported as nesting too.
    """
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(exc.problem or exc.context or "syntax error").split())  # one line
        raise InvalidYamlError(problem, mark.line + 1 if mark else None) from None
    except (yaml.reader.ReaderError, UnicodeEncodeError):  # libyaml encodes the text: a lone surrogate
        raise _unprintable(text) from None
    except yaml.YAMLError:
        raise InvalidYamlError("not a YAML document", None) from None
    except RecursionError:
        raise InvalidYamlError("nested too deeply", _deepest_line(text)) from None


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _unprintable(text: str) -> InvalidYamlError:
    m = _NON_PRINTABLE_RE.search(text)
    if m is None:
        return InvalidYamlError("a character that YAML does not allow", None)
    code = ord(m.group())
    kind = "control character" if code < 0x20 or 0x7F <= code <= 0x9F else "character"
    problem = f"{kind} U+{code:04X} is not allowed (write it as an escape in a double-quoted string)"
    return InvalidYamlError(problem, _line_of(text, m.start()))


def _deepest_line(text: str, limit: int = 100) -> int:
    """The line where collections first nest deeper than ``limit`` (parsing events is iterative)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > limit and event.start_mark is not None:
                    return int(event.start_mark.line) + 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        pass
    return 1


class _FatalError(ManifestError):
    """A problem after which reading on would be meaningless."""


class _TooManyError(_FatalError):
    """``MAX_COUNTED`` problems found: enough to stop reading."""


class _Collect:
    """``with reader.unit:`` records a ``ManifestError`` raised inside and goes on."""

    def __init__(self, record: Callable[[ManifestError], None]) -> None:
        self.record = record

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: types.TracebackType | None) -> bool:
        if isinstance(exc, ManifestError) and not isinstance(exc, _FatalError):
            self.record(exc)
            return True
        return False


class _Reader:
    """Walks composed YAML nodes; every error it records names file:line and field."""

    def __init__(self, filename: str, environ: Mapping[str, str]) -> None:
        self.filename = filename
        self.environ = environ
        self.base = Path(filename).resolve().parent
        self.problems: list[ManifestError] = []
        self.stopped = False  # by _TooManyError: the count of problems is a lower bound
        self.unit = _Collect(self.record)
        self.declared: set[str] = set()  # source names, even those whose settings are wrong
        self.seen: set[int] = set()
        self.repeated = 0

    # -- errors ----------------------------------------------------------------

    def where(self, node: yaml.Node) -> str:
        return f"{self.filename}:{node.start_mark.line + 1}"

    def fail(self, node: yaml.Node, field: str, message: str) -> ManifestError:
        return ManifestError(message, where=self.where(node), field=field)

    def record(self, problem: ManifestError) -> None:
        self.problems.append(problem)
        if len(self.problems) >= MAX_COUNTED:
            raise _TooManyError("too many problems")

    def fatal(self, node: yaml.Node, field: str, message: str) -> _FatalError:
        return _FatalError(message, where=self.where(node), field=field)

    def combined(self) -> ManifestError:
        """The first problem in file order, carrying the next ones (and a count of the rest)."""
        ordered = sorted(self.problems, key=self._line)
        first, more = ordered[0], list(ordered[1:MAX_PROBLEMS])
        left = len(ordered) - MAX_PROBLEMS
        if left > 0:
            note = f"... and {left} more problem{'s' if left > 1 else ''}"
            more.append(ManifestError(note + (" (reading stopped there)" if self.stopped else ""), where=self.filename))
        return ManifestError(first.detail, where=first.where, field=first.field, more=more)

    def _line(self, exc: ManifestError) -> int:
        tail = (exc.where or "")[len(self.filename) + 1 :]
        return int(tail) if tail.isdecimal() else 0

    def visit(self, node: yaml.Node) -> None:
        """Count what aliases make the reader see again, and stop an alias bomb.

        Composed nodes are shared, not copied, so an alias costs nothing until
        the reader walks the same node twice; that repeated work is bounded.
        """
        if id(node) not in self.seen:
            self.seen.add(id(node))
            return
        self.repeated += len(node.value) if isinstance(node, yaml.ScalarNode) else _ENTRY_COST * (1 + len(node.value))
        if self.repeated > MAX_ALIAS_EXPANSION:
            raise self.fatal(node, "", "aliases repeat more than 4 MiB of the manifest; use fewer or smaller aliases")

    # -- structure -------------------------------------------------------------

    def mapping(self, node: yaml.Node, field: str, allowed: tuple[str, ...] | None = None) -> Entries:
        """Return key -> (key node, value node). Duplicate, non-string and unknown
        keys are recorded, each as its own problem, and left out."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, field, f"expected a mapping, got {_kind(node)}")
        self.visit(node)
        out: Entries = {}
        for key_node, value_node in node.value:
            with self.unit:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL:
                    raise self.fail(key_node, field, "keys must be strings")
                key = str(key_node.value)
                if key in out:
                    raise self.fail(key_node, _sub(field, key), "duplicate key")
                out[key] = (key_node, value_node)
        return out if allowed is None else self.only(out, field, allowed)

    def only(self, entries: Entries, field: str, allowed: tuple[str, ...]) -> Entries:
        """``entries`` without the keys not in ``allowed``, each of those recorded."""
        out: Entries = {}
        for key, (key_node, value_node) in entries.items():
            if key in allowed:
                out[key] = (key_node, value_node)
                continue
            # Suggestions only while they can be shown: difflib is slow on 100,000 unknown keys.
            hint = _did_you_mean(key, allowed) if len(self.problems) < MAX_PROBLEMS else ""
            self.record(self.fail(key_node, _sub(field, key), f"unknown key{hint} (allowed: {', '.join(allowed)})"))
        return out

    def section(self, top: Entries, key: str, allowed: tuple[str, ...] | None = None) -> Entries:
        if key not in top or _is_null(top[key][1]):
            return {}
        with self.unit:
            return self.mapping(top[key][1], key, allowed)
        return {}

    def fields(self, f: Entries, prefix: str, readers: Mapping[str, Reader]) -> dict[str, Any]:
        """Read each present key of ``f`` with its reader; a failed field is recorded and left out."""
        out: dict[str, Any] = {}
        for key, read in readers.items():
            if key in f:
                with self.unit:
                    out[key] = read(f[key][1], f"{prefix}.{key}")
        return out

    # -- scalars ---------------------------------------------------------------

    def text(self, node: yaml.Node, field: str) -> str:
        """A string value, interpolated; numbers keep their source text."""
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, field, f"expected a string, got {_kind(node)}")
        self.visit(node)
        if node.tag == _BOOL:
            raise self.fail(node, field, f"{node.value!r} is read as a boolean; quote it if you mean a string")
        if node.tag == _NULL:
            shown = repr(node.value) if node.value else "an empty value"
            raise self.fail(node, field, f"{shown} is read as null; quote it if you mean a string (\"\" for empty)")
        if node.tag not in _TEXT_TAGS:
            raise self.fail(node, field, f"unsupported YAML tag {_quoted(node.tag)}; write a plain or quoted string")
        try:
            value = interpolate(str(node.value), self.environ)
        except ValueError as exc:
            raise self.fail(node, field, str(exc)) from None
        if "\x00" in value:
            raise self.fail(node, field, "holds a NUL character, which no variable, path or setting can contain")
        if _SURROGATE_RE.search(value) is not None and not _encodable(value):
            raise self.fail(node, field, "holds a lone UTF-16 surrogate (a \\ud800-\\udfff escape), which is not text")
        return value

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
        if not math.isfinite(value):
            raise self.fail(node, field, "too large")
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
        if not math.isfinite(value):
            raise self.fail(node, field, "must be a finite number")
        if value < minimum:
            raise self.fail(node, field, f"must be at least {minimum:g}")
        return value

    def choice(self, node: yaml.Node, field: str, choices: tuple[str, ...]) -> str:
        value = self.text(node, field)
        if value not in choices:
            raise self.fail(node, field, f"{_quoted(value)} is not one of: {', '.join(choices)}")
        return value

    def signal(self, node: yaml.Node, field: str) -> signal.Signals:
        return self.convert(node, field, parse_signal)

    def path(self, node: yaml.Node, field: str) -> str:
        """A file path, relative to the manifest's directory; never empty, never with a NUL."""
        value = self.text(node, field)
        if not value:
            raise self.fail(node, field, "must not be empty")
        return str(self.base / os.path.expanduser(value))

    def optional_path(self, node: yaml.Node, field: str) -> str | None:
        return None if _is_null(node) else self.path(node, field)

    def names(self, node: yaml.Node, field: str) -> tuple[str, ...]:
        if _is_null(node):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, field, f"expected a list, got {_kind(node)}")
        self.visit(node)
        out = []
        for item in node.value:
            with self.unit:
                name = self.text(item, field)
                if not ENV_NAME_RE.match(name):
                    raise self.fail(item, field, f"{_quoted(name)} is not a valid variable name")
                out.append(name)
        return tuple(out)

    # -- sections --------------------------------------------------------------

    def manifest(self, root: yaml.Node) -> Manifest:
        """The manifest, or ``ManifestError`` carrying every problem found (see module doc)."""
        manifest: Manifest | None = None
        try:
            manifest = self.read(root)
        except _TooManyError:
            self.stopped = True
        except ManifestError as exc:  # a _FatalError one: reading on would be meaningless
            self.problems.append(exc)
        if manifest is None or self.problems:
            raise self.combined()
        return manifest

    def read(self, root: yaml.Node) -> Manifest:
        if not isinstance(root, yaml.MappingNode):
            raise self.fatal(root, "", f"expected a mapping, got {_kind(root)}")
        self.version(root)
        top = self.mapping(root, "", _TOP_KEYS)
        sources = self.sources(top)
        known = frozenset(self.declared) | BUILTIN_SOURCES
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

    def version(self, root: yaml.MappingNode) -> None:
        """``version: 1``, checked first: under another version nothing else can be judged."""
        found = [v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.tag != _NULL and k.value == "version"]
        if not found:
            raise self.fatal(root, "version", "missing (add `version: 1`)")
        try:
            version = self.text(found[0], "version")
        except ManifestError as exc:
            raise _FatalError(exc.detail, where=exc.where, field=exc.field) from None
        if version.strip() != "1":
            raise self.fatal(found[0], "version", f"unsupported version {_quoted(version)} (expected 1)")

    def check_references(self, manifest: Manifest) -> None:
        """Refuse, before any fetch, references their source's type can never serve
        (``?version=`` on a file source, a malformed Key Vault secret name)."""
        located = [(b.where, f"env.{b.name}", r) for b in manifest.env for r in b.refs]
        located += [(e.where, "env_from", e.ref) for e in manifest.env_from]
        for where, field, ref in located:
            if ref.source not in manifest.known_sources:
                continue  # a declared source whose settings are wrong: already recorded
            problem = manifest.reference_problem(ref)
            if problem is not None:
                self.record(ManifestError(f"{ref}: {problem}", where=where, field=field))

    def sources(self, top: Entries) -> dict[str, SourceConfig]:
        out: dict[str, SourceConfig] = {}
        for name, (key_node, node) in self.section(top, "sources").items():
            field = _sub("sources", name)
            with self.unit:
                if not SOURCE_NAME_RE.match(name):
                    raise self.fail(key_node, field, "source names must match [a-z][a-z0-9_-]*")
                if name.lower() in WELL_KNOWN_SCHEMES:
                    raise self.fail(key_node, field, f"{name!r} is a well-known URL scheme and cannot name a source")
                self.declared.add(name)
                out[name] = self.source(name, node, field)
        return out

    def source(self, name: str, node: yaml.Node, field: str) -> SourceConfig:
        f = self.mapping(node, field)
        if "type" not in f:
            raise self.fail(node, f"{field}.type", "missing (one of: vault, azure, file)")
        kind = self.choice(f["type"][1], f"{field}.type", ("vault", "azure", "file"))
        if kind == "vault":
            return self.vault_source(name, f, field)
        if kind == "azure":
            return self.azure_source(name, node, f, field)
        return self.file_source(name, node, f, field)

    def vault_source(self, name: str, f: Entries, field: str) -> VaultSourceConfig:
        f = self.only(f, field, ("type", "address", "namespace", "auth", "tls", "revoke_on_exit"))
        tls_keys = ("ca_cert", "ca_path", "client_cert", "client_key", "skip_verify")
        kw = self.fields(f, field, {
            "address": self.text,
            "namespace": self.text,
            "auth": self.vault_auth,
            "tls": lambda node, sub: self.tls(node, sub, tls_keys),
            "revoke_on_exit": self.boolean,
        })
        return VaultSourceConfig(name=name, **kw)

    def vault_auth(self, node: yaml.Node, field: str) -> VaultAuth:
        f = self.mapping(node, field)
        method = self.choice(f["method"][1], f"{field}.method", tuple(_VAULT_AUTH_KEYS)) if "method" in f else "token"
        f = self.only(f, field, ("method", *_VAULT_AUTH_KEYS[method]))
        kw: dict[str, Any] = {"method": method}
        for key, (_, value) in f.items():
            if key != "method":
                with self.unit:
                    kw[key] = self.path(value, f"{field}.{key}") if key.endswith("_file") else self.text(value, f"{field}.{key}")
        if method == "approle" and "role_id" not in f:
            raise self.fail(node, f"{field}.role_id", "missing (approle needs role_id and secret_id or secret_id_file)")
        if method == "approle" and "secret_id" in f and "secret_id_file" in f:
            raise self.fail(node, f"{field}.secret_id", "give secret_id or secret_id_file, not both")
        if method in ("kubernetes", "jwt") and "role" not in f:
            raise self.fail(node, f"{field}.role", f"missing ({method} needs a role)")
        return VaultAuth(**kw)

    def tls(self, node: yaml.Node, field: str, allowed: tuple[str, ...]) -> TlsConfig:
        f = self.mapping(node, field, allowed)
        kw: dict[str, Any] = {}
        for key, (_, value) in f.items():
            with self.unit:
                kw[key] = self.boolean(value, f"{field}.{key}") if key == "skip_verify" else self.path(value, f"{field}.{key}")
        return TlsConfig(**kw)

    def azure_source(self, name: str, node: yaml.Node, f: Entries, field: str) -> AzureSourceConfig:
        keys = ("type", "vault_url", "credential", "tenant_id", "client_id", "client_secret_file", "authority", "tls")
        f = self.only(f, field, (*keys, "verify_challenge_resource"))
        if "vault_url" not in f:
            raise self.fail(node, f"{field}.vault_url", "missing (e.g. https://NAME.vault.azure.net/)")
        kw = self.fields(f, field, {
            "vault_url": self.https_url,
            "tenant_id": self.text,
            "client_id": self.text,
            "authority": self.text,
            "credential": lambda node, sub: self.choice(node, sub, _AZURE_CREDENTIALS),
            "client_secret_file": self.path,
            "verify_challenge_resource": self.boolean,
        })
        if "tls" in f:
            with self.unit:
                kw["ca_cert"] = self.tls(f["tls"][1], f"{field}.tls", ("ca_cert",)).ca_cert
        return AzureSourceConfig(name=name, **kw)

    def https_url(self, node: yaml.Node, field: str) -> str:
        value = self.text(node, field)
        if not value.startswith("https://"):
            raise self.fail(node, field, "must be an https:// URL")
        return value

    def file_source(self, name: str, node: yaml.Node, f: Entries, field: str) -> FileSourceConfig:
        f = self.only(f, field, ("type", "path"))
        if "path" not in f:
            raise self.fail(node, f"{field}.path", "missing (the YAML or JSON file of secrets)")
        return FileSourceConfig(name=name, path=self.path(f["path"][1], f"{field}.path"))

    def env(self, top: Entries, known: frozenset[str]) -> tuple[Binding, ...]:
        out = []
        for name, (key_node, node) in self.section(top, "env").items():
            field = _sub("env", name)
            with self.unit:
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
        kw = self.fields(f, field, {
            "default": self.text,
            "optional": self.boolean,
            "on_change": lambda node, sub: self.choice(node, sub, ON_CHANGE_ACTIONS),
            "file": self.boolean,
        })
        if "ref" in f:
            parts = self.parts(f["ref"][1], f"{field}.ref", known)
            if len(parts) == 1 and isinstance(parts[0], str):
                raise self.fail(f["ref"][1], f"{field}.ref", "holds a literal, not a reference (use `value:` for literals)")
        else:
            parts = (self.text(f["value"][1], f"{field}.value"),)
        default = kw.get("default")
        optional = bool(kw.get("optional", False)) or default is not None
        file = bool(kw.get("file", False))
        return Binding(name, parts, file=file, default=default, optional=optional, on_change=kw.get("on_change"), where=where)

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
            self.record(self.fail(seq, "env_from", f"expected a list, got {_kind(seq)}"))
            return ()
        self.visit(seq)
        out = []
        for i, item in enumerate(seq.value):
            with self.unit:
                out.append(self.env_from_entry(item, f"env_from[{i}]", known))
        return tuple(out)

    def env_from_entry(self, item: yaml.Node, field: str, known: frozenset[str]) -> EnvFrom:
        f = self.mapping(item, field, ("ref", "prefix"))
        if "ref" not in f:
            raise self.fail(item, f"{field}.ref", "missing")
        prefix = ""
        if "prefix" in f:
            with self.unit:
                prefix = self.text(f["prefix"][1], f"{field}.prefix")
                if prefix and not ENV_NAME_RE.match(prefix):
                    raise self.fail(f["prefix"][1], f"{field}.prefix", f"{_quoted(prefix)} cannot start a variable name")
        ref_node = f["ref"][1]
        try:
            ref = parse_reference(self.text(ref_node, f"{field}.ref"), known)
        except RefSyntaxError as exc:
            raise self.fail(ref_node, f"{field}.ref", str(exc)) from None
        if ref.key is not None:
            raise self.fail(ref_node, f"{field}.ref", "takes a whole secret: drop the #key")
        return EnvFrom(ref, prefix, self.where(item))

    def cache(self, top: Entries) -> CacheConfig:
        f = self.section(top, "cache", ("ttl", "max_entries"))
        return CacheConfig(**self.fields(f, "cache", {
            "ttl": self.duration,
            "max_entries": lambda node, sub: self.integer(node, sub, 1),
        }))

    def retry(self, top: Entries) -> RetryConfig:
        f = self.section(top, "retry", ("attempts", "initial_delay", "max_delay", "multiplier", "jitter", "deadline"))
        return RetryConfig(**self.fields(f, "retry", {
            "attempts": lambda node, sub: self.integer(node, sub, 1),
            "initial_delay": self.duration,
            "max_delay": self.duration,
            "deadline": self.duration,
            "multiplier": lambda node, sub: self.number(node, sub, 1.0),
            "jitter": lambda node, sub: self.choice(node, sub, ("full", "equal", "none")),
        }))

    def watch(self, top: Entries) -> WatchConfig:
        keys = ("enabled", "interval", "on_change", "signal", "debounce", "splay", "on_error", "max_restarts", "restart_window")
        f = self.section(top, "watch", keys)
        return WatchConfig(**self.fields(f, "watch", {
            "enabled": self.boolean,
            "interval": lambda node, sub: self.duration(node, sub, minimum=0.001),
            "restart_window": lambda node, sub: self.duration(node, sub, minimum=0.001),
            "debounce": self.duration,
            "splay": self.duration,
            "on_change": lambda node, sub: self.choice(node, sub, ON_CHANGE_ACTIONS),
            "signal": self.signal,
            "on_error": lambda node, sub: self.choice(node, sub, ("keep", "exit")),
            "max_restarts": lambda node, sub: self.integer(node, sub, 1),
        }))

    def process(self, top: Entries) -> ProcessConfig:
        keys = ("stop_signal", "stop_timeout", "pristine", "inherit", "scrub", "passthrough", "signal_target", "files_dir")
        f = self.section(top, "process", keys)
        kw = self.fields(f, "process", {
            "stop_signal": self.signal,
            "stop_timeout": self.duration,
            "pristine": self.boolean,
            "inherit": self.names,
            "passthrough": self.names,
            "scrub": self.names,
            "signal_target": lambda node, sub: self.choice(node, sub, ("group", "child")),
            "files_dir": self.optional_path,
        })
        if "scrub" in kw:
            kw["scrub"] = DEFAULT_SCRUB + tuple(n for n in kw["scrub"] if n not in DEFAULT_SCRUB)
        return ProcessConfig(**kw)


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "null"
    return "a string"  # the text is not echoed: under env it may be a value


def _encodable(value: str) -> bool:
    """Whether ``value`` can reach a child: what ``os.environ`` holds (``surrogateescape``) can."""
    try:
        value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL


def _sub(field: str, key: str) -> str:
    """``field.key``, with a very long key shortened (it is shown, not parsed)."""
    shown = key if len(key) <= _SHOWN_KEY_LEN else key[: _SHOWN_KEY_LEN - 3] + "..."
    return f"{field}.{shown}" if field else shown


def _quoted(text: str) -> str:
    """``repr(text)``, shortened when long: a message stays readable."""
    return repr(text) if len(text) <= _SHOWN_KEY_LEN else repr(text[: _SHOWN_KEY_LEN - 3]) + "..."


def _to_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "yes", "on", "1"):
        return True
    if low in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"expected true or false, got {_quoted(text)}")


def _to_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {_quoted(text)}") from None


def _to_float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {_quoted(text)}") from None


def _did_you_mean(key: str, allowed: tuple[str, ...]) -> str:
    if len(key) > _SHOWN_KEY_LEN:  # difflib is quadratic; a long key is no typo
        return ""
    close = difflib.get_close_matches(key, allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
