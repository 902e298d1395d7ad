"""``${VAR}``, ``${VAR:-default}`` and ``$$`` in manifest scalars.

Applied per scalar value after YAML parsing (keys are never interpolated), so
a value cannot change the structure of the manifest. A bare ``$x`` is left
alone, since shells, regexes and passwords use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_TOKEN_RE = re.compile(r"\$\$|\$\{([^}]*)\}")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Expand ``${VAR}`` / ``${VAR:-default}`` and ``$$``; ``ValueError`` when unset."""

    def expand(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        inner = m.group(1)
        name, sep, default = inner.partition(":-")
        if not _NAME_RE.match(name):
            raise ValueError(f"invalid variable reference ${{{inner}}}")
        value = environ.get(name)
        if sep:
            return value if value else default
        if value is None:
            raise ValueError(f"${{{name}}} is not set (use ${{{name}:-default}} for a default)")
        return value

    return _TOKEN_RE.sub(expand, text)
