"""The byte strings output masking looks for: each value, its lines, and the ways JSON encoders write them.

For each value of 4 or more characters (not only whitespace): the value itself;
when it has several lines, each stripped line of 4 or more characters (a PEM
key printed line by line, re-indented or with CRLF endings, as CI systems mask
it); and for each of those, the forms common JSON encoders write inside a
string, which differ only where the value has a character outside printable
ASCII, a quote, a backslash, ``/``, ``<``, ``>`` or ``&``:

- non-ASCII as itself (Go, JavaScript, ``ensure_ascii=False``) or as ``\\uXXXX``
  (Python's default, PHP, Java and .NET encoders);
- the hex digits of ``\\uXXXX`` in lower case (Python, Go, PHP) or upper case
  (.NET, some Java encoders): ``\\u00c4`` and ``\\u00C4``;
- ``<``, ``>`` and ``&`` as themselves or as ``\\u003c``, ``\\u003e``, ``\\u0026``
  (Go's default, .NET's); Go writes U+2028 and U+2029 escaped too;
- ``/`` as itself or as ``\\/`` (PHP's default).

Every combination is kept (at most 16 forms per piece, usually 1 or 2), as UTF-8
bytes (lone surrogates through surrogateescape). Values shorter than 4
characters would garble ordinary output, and are left alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

MIN_CHARS = 4  # shorter values are not masked

# A piece with none of these is written the same by every JSON encoder.
_ESCAPED_SOMEWHERE = re.compile(r'[^\x20-\x7e]|["\\/<>&]')
_ESCAPE = re.compile(r"\\(u[0-9a-f]{4}|.)")  # one escape of json.dumps' output: a backslash and what follows
_HTML = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_HTML_RE = re.compile("[<>&\u2028\u2029]")


def secret_patterns(values: Iterable[str]) -> list[bytes]:
    """The byte strings to conceal for ``values``, longest first (see the module docstring)."""
    forms: set[str] = set()
    for value in values:
        lines = [line.strip() for line in value.splitlines()] if "\n" in value or "\r" in value else []
        for piece in (value, *lines):
            if len(piece) < MIN_CHARS or not piece.strip():
                continue
            forms.add(piece)
            if _ESCAPED_SOMEWHERE.search(piece):
                forms.update(json_forms(piece))
    out = set()
    for form in forms:
        try:
            out.add(form.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:  # a lone high surrogate: no child prints it as UTF-8 anyway
            out.add(form.encode("utf-8", "surrogatepass"))
    return sorted(sorted(out), key=len, reverse=True)  # longest first; equal lengths in byte order (stable)


def json_forms(piece: str) -> set[str]:
    """``piece`` as common JSON encoders write it between the quotes of a string (module docstring)."""
    forms = set()
    for ascii_only in (True, False):
        written = json.dumps(piece, ensure_ascii=ascii_only)[1:-1]
        for html in (written, _HTML_RE.sub(lambda m: _HTML[m.group()], written)):
            for slash in (html, _escape_slashes(html)):
                forms.add(slash)
                forms.add(_ESCAPE.sub(_upper_hex, slash))
    return forms


def _escape_slashes(written: str) -> str:
    # json.dumps writes no "\/" itself, so every "/" in its output is the value's own.
    return written.replace("/", "\\/")


def _upper_hex(m: re.Match[str]) -> str:
    escape = m.group(1)
    return "\\" + (escape.upper().replace("U", "u", 1) if escape.startswith("u") and len(escape) == 5 else escape)
