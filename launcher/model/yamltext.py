"""YAML text, read safely: size-capped files, plain-word decoding errors, composed nodes.

The manifest and the ``file`` source both read YAML written by people; this is
the one place that reads it. Files are read at most to a cap (``/dev/zero``
ends at once), decoded as UTF-8 with a plain-word error (UTF-16 and UTF-32
are recognised), and composed into nodes, not constructed into objects:
every scalar keeps its source text and line, and aliases are shared, never
expanded. Every way the YAML library can fail becomes ``InvalidYamlError``.
"""

from __future__ import annotations

import codecs
import re

import yaml

STR = "tag:yaml.org,2002:str"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"

# libyaml's composer when PyYAML has it: 15x faster than the pure-Python one (6 ms for
# 100 bindings), with the same nodes and line marks.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# What YAML refuses in a stream (PyYAML's reader): found again to name the line and character.
# (Compiled when needed: at 3 ms, it would be the costliest line of a start-up that never uses it.)
_NON_PRINTABLE = r"[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"


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
        return yaml.compose(text, Loader=LOADER)
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


def line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _unprintable(text: str) -> InvalidYamlError:
    m = re.search(_NON_PRINTABLE, text)
    if m is None:
        return InvalidYamlError("a character that YAML does not allow", None)
    code = ord(m.group())
    kind = "control character" if code < 0x20 or 0x7F <= code <= 0x9F else "character"
    problem = f"{kind} U+{code:04X} is not allowed (write it as an escape in a double-quoted string)"
    return InvalidYamlError(problem, line_of(text, m.start()))


def _deepest_line(text: str, limit: int = 100) -> int:
    """The line where collections first nest deeper than ``limit`` (parsing events is iterative)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=LOADER):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > limit and event.start_mark is not None:
                    return int(event.start_mark.line) + 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        pass
    return 1


def is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == NULL


def kind_of(node: yaml.Node) -> str:
    """What a node is, for messages; a scalar's text is never echoed (under env it may be a value)."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == NULL:
        return "null"
    return "a string"
