"""``${VAR}``, ``${VAR:-default}`` and ``$$`` in manifest scalars.

Applied per scalar value after YAML parsing (keys are never interpolated), so
a value cannot change the structure of the manifest. A bare ``$x`` is left
alone, since shells, regexes and passwords use it. A default may itself hold
``${...}`` (``${A:-${B:-x}}``); it is expanded only when it is used, as in sh.
At most ``MAX_DEPTH`` levels may nest, so that no input can exhaust the stack.
"""

from __future__ import annotations

from collections.abc import Mapping

from launcher.model.refs import ENV_NAME_RE

MAX_DEPTH = 32


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Expand ``${VAR}`` / ``${VAR:-default}`` and ``$$``.

    Raises ``ValueError`` (naming the variable, never its value) for an unset
    ``${VAR}`` without default, a malformed name, an unterminated ``${`` or
    more than ``MAX_DEPTH`` nested levels.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            out.append(_expand(text[i + 2 : end], environ))
            i = end + 1
        else:
            nxt = text.find("$", i + 1)
            nxt = len(text) if nxt < 0 else nxt
            out.append(text[i:nxt])
            i = nxt
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` whose body starts at ``start``."""
    depth = 0
    i = start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            if depth >= MAX_DEPTH:  # counted in the text, so a default is never expanded this deep
                raise ValueError(f"${{...}} nested too deeply (more than {MAX_DEPTH} levels)")
            i += 2
            continue
        if text[i] == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise ValueError("unterminated ${ (write $$ for a literal $)")


def _expand(inner: str, environ: Mapping[str, str]) -> str:
    name, sep, default = inner.partition(":-")
    if not ENV_NAME_RE.match(name):
        # The text is not echoed: it may be part of a literal value (a password with ``${``).
        raise ValueError("invalid variable reference ${...} (expected ${NAME} or ${NAME:-default}; $$ is a literal $)")
    value = environ.get(name)
    if sep:
        return value if value else interpolate(default, environ)
    if value is None:
        raise ValueError(f"${{{name}}} is not set (use ${{{name}:-default}} for a default)")
    return value
