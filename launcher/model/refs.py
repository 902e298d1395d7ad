"""Secret references: ``SOURCE://PATH[#KEY][?version=V | ?label=L | ?NAME=VALUE&...]`` and ``{{ ref }}`` templates.

A query is ``?version=V`` (a pinned version), ``?label=L`` (a moving label) or request
data: ``NAME=VALUE`` pairs sent with a read that is a write (Vault's pki ``issue/ROLE``
and transit ``decrypt/KEY``, docs/guides/issued-certificates.md). Values are percent-decoded and otherwise
literal: ``+`` stays ``+`` (base64 needs it). Request data is part of the fetch key, so
references that differ only in ``#KEY`` are one request and references that differ in
data are two.

This module knows the grammar and nothing about manifests, files or backends
(it asks the source registry which names are built in, for its messages only).
Errors are ``RefSyntaxError`` (a plain ``ValueError``) so callers can add their
own file:line context.

``?version=V`` pins a version: it is the key's ``version``, and a pinned key is
never watched for rotation. ``?label=L`` names whatever version a label points
at now, which moves when the label is moved (SSM Parameter Store labels), so it
must be watched like a reference without a version: it becomes part of the
path, as ``PATH:L`` (the selector form SSM itself uses), and the key has no
version. A backend without labels refuses or does not find such a path.
"""

from __future__ import annotations

import re
import urllib.parse

from launcher.record import record

# A NAME:// prefix with one of these schemes is an ordinary URL, hence a literal,
# and no source may take one of these names (docs/reference/references.md).
WELL_KNOWN_SCHEMES = frozenset(
    """http https postgres postgresql mysql redis rediss amqp amqps mongodb
    mongodb+srv s3 gs ftp sftp ssh ws wss file tcp udp unix smtp ldap ldaps
    nats kafka""".split()
)

SOURCE_NAME_RE = re.compile(r"[a-z][a-z0-9_-]*\Z")
# An environment variable name, as the manifest, inline references and ${VAR} accept it.
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PREFIX_RE = re.compile(r"([A-Za-z][A-Za-z0-9+._-]*)://")
_LISTED_SOURCES = 10  # an error lists at most this many declared sources
_SUGGEST_MAX_LEN = 64  # names longer than this get no "did you mean" (difflib is quadratic)


class RefSyntaxError(ValueError):
    """A reference or template is malformed, or names an unknown source."""


class UnclosedPlaceholderError(RefSyntaxError):
    """A template's ``{{`` is never closed by ``}}``."""


Data = tuple[tuple[str, str], ...]
"""Request data: (name, value) pairs sorted by name, so the order they were written in does not matter."""


@record
class FetchKey:
    """What one backend read is keyed on: dedupe, cache and single flight use it.

    ``data``: the request data of a read that is a write (empty for a plain read).
    """

    source: str
    path: str
    version: str | None = None
    data: Data = ()

    def __str__(self) -> str:
        return f"{self.source}://{_escape(self.path)}{_query(self.version, self.data)}"


@record
class Reference:
    """A parsed reference; ``text`` is what the user wrote (it holds no value)."""

    source: str
    path: str
    key: str | None = None
    version: str | None = None
    data: Data = ()

    @property
    def fetch_key(self) -> FetchKey:
        return FetchKey(self.source, self.path, self.version, self.data)

    def __str__(self) -> str:
        out = f"{self.source}://{_escape(self.path)}{_query(self.version, self.data)}"
        if self.key is not None:
            out += f"#{_escape(self.key)}"
        return out


Part = str | Reference
"""A template is a tuple of parts: literal text and references."""


def _escape(text: str) -> str:
    return text.replace("#", "%23").replace("?", "%3F")


def _query(version: str | None, data: Data) -> str:
    """``?version=V``, or the request data as ``?NAME=VALUE&...`` (what parses back to the same), or nothing."""
    if version is not None:
        return f"?version={version}"
    if not data:
        return ""
    return "?" + "&".join(f"{_escape_data(name, '=')}={_escape_data(value)}" for name, value in data)


def _escape_data(text: str, also: str = "") -> str:
    # Only what would change the parse; everything else (``+``, ``/``, ``:``) stays literal.
    for ch in "%&#" + also:
        text = text.replace(ch, f"%{ord(ch):02X}")
    return text


def _unescape(text: str) -> str:
    return re.sub("%23", "#", re.sub("%3[Ff]", "?", text))


def scheme_of(text: str) -> str | None:
    """Return NAME when ``text`` starts with ``NAME://``, else None."""
    m = _PREFIX_RE.match(text)
    return m.group(1) if m else None


def parse_reference(text: str, known: frozenset[str] | set[str]) -> Reference:
    """Parse ``SOURCE://PATH[?QUERY][#KEY]`` (either order of ``?`` and ``#``); QUERY is
    ``version=V`` or request data (``NAME=VALUE&...``), see the module docstring.

    ``known`` is the set of declared plus built-in source names. Raises
    ``RefSyntaxError`` for anything malformed or an unknown source.
    """
    text = text.strip()
    name = scheme_of(text)
    if name is None:
        # The text is not echoed: a value pasted where a reference belongs must not reach a log.
        raise RefSyntaxError("not a reference (expected SOURCE://PATH[#KEY][?version=V])")
    if name not in known:
        if name.lower() in WELL_KNOWN_SCHEMES:
            raise RefSyntaxError(f"{name}:// is a URL, not a secret reference (sources: {_source_list(known)})")
        raise RefSyntaxError(_unknown_source(name, known))
    rest = text[len(name) + 3 :]
    path, key, query = _split(rest)
    version, label, data = _parse_query(query) if query is not None else (None, None, ())
    if not path.strip("/"):
        raise RefSyntaxError(f"reference {text!r} has an empty path")
    if key is not None and not key:
        raise RefSyntaxError(f"reference {text!r} has an empty #key")
    path = _unescape(path.strip("/")) + (f":{label}" if label is not None else "")
    return Reference(name, path, None if key is None else _unescape(key), version, data)


def _split(rest: str) -> tuple[str, str | None, str | None]:
    """Split PATH, KEY and QUERY, accepting ``?q#k`` and ``#k?q``."""
    h, q = rest.find("#"), rest.find("?")
    if h < 0 and q < 0:
        return rest, None, None
    if q < 0:
        return rest[:h], rest[h + 1 :], None
    if h < 0:
        return rest[:q], None, rest[q + 1 :]
    if q < h:
        return rest[:q], rest[h + 1 :], rest[q + 1 : h]
    return rest[:h], rest[h + 1 : q], rest[q + 1 :]


def _parse_query(query: str) -> tuple[str | None, str | None, Data]:
    """(version, label, request data) of a query: ``version=V`` alone, ``label=L`` alone,
    or ``NAME=VALUE`` pairs.

    Names and values are percent-decoded (``%26`` is ``&``, ``%23`` is ``#``) and
    otherwise literal: ``+`` is a plus, not a space. A name given twice, an empty
    name, a pair without ``=`` and ``version`` or ``label`` among request data are refused.
    """
    for word in ("version", "label"):
        if query.startswith(word + "=") or query == word:
            value = query.partition("=")[2]
            if not value or any(ch in value for ch in "=&?#"):
                raise RefSyntaxError(f"invalid {word} {value!r}")
            if word == "version":
                return value, None, ()
            if any(ch in value for ch in ":/%"):  # it becomes the path's last `:L`, so it must stay one word
                raise RefSyntaxError(f"invalid label {value!r}")
            return None, value, ()
    pairs: dict[str, str] = {}
    for item in query.split("&"):
        raw_name, sep, raw_value = item.partition("=")
        name, value = _unquote(raw_name), _unquote(raw_value)
        if not sep or not name:
            raise RefSyntaxError(f"unsupported query {_shown(item)} (expected ?version=V or NAME=VALUE pairs joined by &)")
        if name in ("version", "label"):
            raise RefSyntaxError(f"?{name}= cannot be combined with request data")
        if name in pairs:
            raise RefSyntaxError(f"{name!r} is given twice in the query")
        pairs[name] = value
    return None, None, tuple(sorted(pairs.items()))


def _unquote(text: str) -> str:
    try:
        return urllib.parse.unquote(text, errors="strict")  # never unquote_plus: a ``+`` of base64 stays a ``+``
    except UnicodeDecodeError:
        raise RefSyntaxError("a %XX escape in the query is not UTF-8") from None


def _shown(item: str) -> str:
    """A query item for a message: its name only (a value may be sensitive request data)."""
    return repr(item.partition("=")[0][:40])


def _source_list(known: frozenset[str] | set[str]) -> str:
    from launcher.sources.registry import builtins  # the registry knows which names are built in

    builtin = builtins()
    names = sorted(set(known) - builtin)
    declared = ", ".join(names[:_LISTED_SOURCES]) or "none"
    if len(names) > _LISTED_SOURCES:
        declared += f", ... ({len(names) - _LISTED_SOURCES} more)"
    return f"declared: {declared}; built-in: {', '.join(sorted(builtin))}"


def _unknown_source(name: str, known: frozenset[str] | set[str]) -> str:
    return f"unknown source {name!r}{_did_you_mean(name, known)} ({_source_list(known)})"


def _did_you_mean(name: str, known: frozenset[str] | set[str]) -> str:
    if len(name) > _SUGGEST_MAX_LEN:
        return ""
    candidates = sorted(n for n in known if len(n) <= _SUGGEST_MAX_LEN)
    import difflib  # only a message with a suggestion pays for it

    close = difflib.get_close_matches(name, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_reference_text(text: str, known: frozenset[str] | set[str]) -> bool:
    """True when ``text`` as a whole is meant as a reference to a known source."""
    name = scheme_of(text)
    return name is not None and name in known


def parse_value(text: str, known: frozenset[str] | set[str]) -> tuple[Part, ...]:
    """Classify a manifest string: literal, reference or template.

    Returns the template parts: ``("text",)`` for a literal, ``(Reference,)``
    for a reference, and a mix for ``{{ ref }}`` templates. A ``NAME://``
    prefix whose NAME is neither a known source nor a well-known URL scheme is
    an error, so a typo such as ``prd://`` never passes as a literal.
    """
    if "{{" in text:
        return parse_template(text, known)
    name = scheme_of(text)
    if name is None or name.lower() in WELL_KNOWN_SCHEMES:
        return (text,)
    return (parse_reference(text, known),)


def parse_template(text: str, known: frozenset[str] | set[str]) -> tuple[Part, ...]:
    """Split ``text`` into literal text and ``{{ REF }}`` placeholders (a template file's line).

    The rule, which leaves no text two readings: a placeholder opens at ``{{``
    (in a longer run of ``{``, at its last two: ``{{{ r }}`` is ``{`` then a
    placeholder) and closes at the first ``}}`` after it (``{{ r }}}`` is a
    placeholder then ``}``); what lies between is one reference. Outside
    placeholders every character is text, ``}`` and ``}}`` included, so a
    one-line JSON object such as ``{"a": {"pw": "{{ prod://app#pw }}"}}`` needs no
    escaping. A ``{{`` never closed is ``UnclosedPlaceholderError``; a
    placeholder holding no reference is ``RefSyntaxError``.

    Linear in the length of ``text``: one forward scan, never a rescan, so
    thousands of unclosed ``{{`` cost no more than reading them.
    """
    parts: list[Part] = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            break
        while text.startswith("{", start + 2):  # a run of braces opens with its last two
            start += 1
        end = text.find("}}", start + 2)
        if end < 0:
            raise UnclosedPlaceholderError("unbalanced '{{': it is never closed by '}}'")
        if start > pos:
            parts.append(text[pos:start])
        inner = text[start + 2 : end].strip()
        if scheme_of(inner) is None:
            raise RefSyntaxError("a {{ }} in the template does not hold a reference (SOURCE://PATH)")
        parts.append(parse_reference(inner, known))
        pos = end + 2
    if pos < len(text):
        parts.append(text[pos:])
    return tuple(parts)


def references(parts: tuple[Part, ...]) -> list[Reference]:
    """The references of a template, in order."""
    return [p for p in parts if isinstance(p, Reference)]


def render(parts: tuple[Part, ...]) -> str:
    """The template as the user wrote it (references, never values)."""
    if len(parts) == 1:
        return str(parts[0])
    return "".join(p if isinstance(p, str) else f"{{{{ {p} }}}}" for p in parts)
