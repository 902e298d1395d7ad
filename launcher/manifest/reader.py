"""Reading composed YAML nodes into values and settings, with every problem collected.

``Reader`` is the manifest reader's machinery: values of every kind (text
with ``${VAR}`` interpolated, paths relative to the manifest, durations,
signals...) and mappings with unknown and duplicate keys refused; settings
dataclasses are read field by field by ``launcher.manifest.settings``.
Independent problems are recorded (``with reader.unit:``) rather than raised,
so one run reports them all in file order; ``MAX_PROBLEMS`` are shown.
Aliases may make the reader walk the same nodes again: that repeated work is
bounded (``MAX_ALIAS_EXPANSION``), so an alias bomb ends at once.
"""

from __future__ import annotations

import math
import os
import re
import signal
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from launcher.errors import ManifestError
from launcher.manifest.interpolate import interpolate
from launcher.model.durations import parse_duration, parse_signal
from launcher.model.refs import ENV_NAME_RE
from launcher.model.yamltext import BOOL, NULL, STR, is_null, kind_of

MAX_PROBLEMS = 20
MAX_COUNTED = 1000  # reading stops after this many problems: each costs microseconds, a file can hold a million
MAX_ALIAS_EXPANSION = 4 * 1024 * 1024
_ENTRY_COST = 16  # an entry costs the reader about what 16 characters of text do
_SHOWN_KEY_LEN = 64  # longer keys are shortened in messages
# Tags a plain scalar resolves to; their text is used as written. Anything else
# (``!!binary``, ``!custom``) is refused rather than silently read as text.
_TEXT_TAGS = frozenset({STR, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"})
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
Entries = dict[str, tuple[yaml.Node, yaml.Node]]
ValueReader = Callable[[yaml.Node, str], Any]
T = TypeVar("T")
W = TypeVar("W", bound=str)  # a word of a closed vocabulary


class FatalError(ManifestError):
    """A problem after which reading on would be meaningless."""


class TooManyError(FatalError):
    """``MAX_COUNTED`` problems found: enough to stop reading."""


class _Collect:
    """``with reader.unit:`` records a ``ManifestError`` raised inside and goes on."""

    def __init__(self, record: Callable[[ManifestError], None]) -> None:
        self.record = record

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: types.TracebackType | None) -> bool:
        if isinstance(exc, ManifestError) and not isinstance(exc, FatalError):
            self.record(exc)
            return True
        return False


class Reader:
    """Walks composed YAML nodes; every error it records names file:line and field.

    Readers of single values (``text``, ``path``, ``duration``...) and of
    mappings; ``SettingsReader`` adds the settings dataclasses.
    """

    def __init__(self, filename: str, environ: Mapping[str, str]) -> None:
        self.filename = filename
        self.environ = environ
        self.base = Path(filename).resolve().parent
        self.problems: list[ManifestError] = []
        self.stopped = False  # by TooManyError: the count of problems is a lower bound
        self.unit = _Collect(self.record)
        self.seen: set[int] = set()
        self.repeated = 0
        self.named_at: dict[str, int] = {}  # another file the manifest names (an env file) -> that line: its problems sort there

    # -- errors ----------------------------------------------------------------

    def where(self, node: yaml.Node) -> str:
        """``file:line`` of ``node``; the name alone for a node without a place (a manifest given as a mapping)."""
        if node.start_mark is None:
            return self.filename
        return f"{self.filename}:{node.start_mark.line + 1}"

    def fail(self, node: yaml.Node, field: str, message: str) -> ManifestError:
        return ManifestError(message, where=self.where(node), field=field)

    def record(self, problem: ManifestError) -> None:
        self.problems.append(problem)
        if len(self.problems) >= MAX_COUNTED:
            raise TooManyError("too many problems")

    def fatal(self, node: yaml.Node, field: str, message: str) -> FatalError:
        return FatalError(message, where=self.where(node), field=field)

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
        name, _, line = (exc.where or "").rpartition(":")
        if name != self.filename:
            return self.named_at.get(name, 0)
        return int(line) if line.isdecimal() else 0

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
            raise self.fail(node, field, f"expected a mapping, got {kind_of(node)}")
        self.visit(node)
        out: Entries = {}
        for key_node, value_node in node.value:
            with self.unit:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == NULL:
                    raise self.fail(key_node, field, "keys must be strings")
                key = str(key_node.value)
                if key in out:
                    raise self.fail(key_node, sub(field, key), "duplicate key")
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
            self.record(self.fail(key_node, sub(field, key), f"unknown key{hint} (allowed: {', '.join(allowed)})"))
        return out

    def fields(self, f: Entries, prefix: str, readers: Mapping[str, ValueReader]) -> dict[str, Any]:
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
            raise self.fail(node, field, f"expected a string, got {kind_of(node)}")
        self.visit(node)
        if node.tag == BOOL:
            raise self.fail(node, field, f"{node.value!r} is read as a boolean; quote it if you mean a string")
        if node.tag == NULL:
            shown = repr(node.value) if node.value else "an empty value"
            raise self.fail(node, field, f"{shown} is read as null; quote it if you mean a string (\"\" for empty)")
        if node.tag not in _TEXT_TAGS:
            raise self.fail(node, field, f"unsupported YAML tag {quoted(node.tag)}; write a plain or quoted string")
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
        text = node.value if isinstance(node, yaml.ScalarNode) and node.tag in (BOOL, NULL) else self.text(node, field)
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

    def choice(self, node: yaml.Node, field: str, choices: tuple[W, ...]) -> W:
        """One word of a closed vocabulary (returned as the vocabulary's own, so typed as it)."""
        value = self.text(node, field)
        if value not in choices:
            raise self.fail(node, field, f"{quoted(value)} is not one of: {', '.join(choices)}")
        return choices[choices.index(value)]

    def signal(self, node: yaml.Node, field: str) -> signal.Signals:
        return self.convert(node, field, parse_signal)

    def path(self, node: yaml.Node, field: str) -> str:
        """A file path, relative to the manifest's directory; never empty, never with a NUL."""
        value = self.text(node, field)
        if not value:
            raise self.fail(node, field, "must not be empty")
        return str(self.base / os.path.expanduser(value))

    def names(self, node: yaml.Node, field: str) -> tuple[str, ...]:
        if is_null(node):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, field, f"expected a list, got {kind_of(node)}")
        self.visit(node)
        out = []
        for item in node.value:
            with self.unit:
                name = self.text(item, field)
                if not ENV_NAME_RE.match(name):
                    raise self.fail(item, field, f"{quoted(name)} is not a valid variable name")
                out.append(name)
        return tuple(out)

    def url(self, node: yaml.Node, field: str, scheme: str | None) -> str:
        value = self.text(node, field)
        if scheme is not None and not value.startswith(f"{scheme}://"):
            raise self.fail(node, field, f"must be an {scheme}:// URL")
        return value


def _encodable(value: str) -> bool:
    """Whether ``value`` can reach a child: what ``os.environ`` holds (``surrogateescape``) can."""
    try:
        value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


def sub(field: str, key: str) -> str:
    """``field.key``, with a very long key shortened (it is shown, not parsed)."""
    shown = key if len(key) <= _SHOWN_KEY_LEN else key[: _SHOWN_KEY_LEN - 3] + "..."
    return f"{field}.{shown}" if field else shown


def quoted(text: str) -> str:
    """``repr(text)``, shortened when long: a message stays readable."""
    return repr(text) if len(text) <= _SHOWN_KEY_LEN else repr(text[: _SHOWN_KEY_LEN - 3]) + "..."


def _to_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "yes", "on", "1"):
        return True
    if low in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"expected true or false, got {quoted(text)}")


def _to_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {quoted(text)}") from None


def _to_float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {quoted(text)}") from None


def _did_you_mean(key: str, allowed: tuple[str, ...]) -> str:
    if len(key) > _SHOWN_KEY_LEN:  # difflib is quadratic; a long key is no typo
        return ""
    import difflib

    close = difflib.get_close_matches(key, allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
