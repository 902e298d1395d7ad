"""A manifest given as a Python mapping (parsed YAML, or built in code), read by the one manifest reader.

The mapping is turned into the nodes ``yaml.compose`` would have made of the same
document, and ``ManifestReader`` reads them: the same keys, values, checks and
messages as a file, so there is no second validator to drift from the first. What
differs is only what a mapping cannot have: lines. A problem names ``<mapping>``
and the field (``<mapping>: env.DB: unknown source 'prd' ...``).

What becomes which node: a mapping a YAML mapping, a list or tuple a sequence, a
``str`` (or ``os.PathLike``) a string, ``int`` and ``float`` numbers (read as their
text, as YAML numbers are), ``bool`` a boolean and ``None`` null, so a ``True`` where
a string belongs is refused as in a file. ``${VAR}`` in strings is interpolated, and
relative paths are taken from the current directory. Anything else (bytes, a
datetime, an object) is 78 naming the field and the type, never the value.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import yaml

from launcher.errors import ManifestError
from launcher.manifest.document import ManifestReader
from launcher.model.config import Manifest
from launcher.model.yamltext import BOOL, NULL, STR

WHERE = "<mapping>"  # what messages name instead of file:line
MAX_DEPTH = 100  # a manifest is a few levels deep; a deeper (or self-containing) mapping is a mistake
_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"


def parse_mapping(data: Mapping[str, Any], environ: Mapping[str, str]) -> Manifest:
    """Validate a manifest given as a mapping; ``ManifestError`` (78) naming ``<mapping>`` and the field."""
    manifest = ManifestReader(WHERE, environ).manifest(to_node(data, "", ()))
    return _without_path(manifest)


def to_node(value: Any, field: str, within: tuple[int, ...]) -> yaml.Node:
    """``value`` as the node YAML would compose for it; ``field`` names it in messages, ``within``
    holds the ids of the containers around it (a container inside itself is refused, not followed)."""
    if len(within) > MAX_DEPTH or id(value) in within:
        what = "contains itself" if id(value) in within else f"is nested more than {MAX_DEPTH} levels deep"
        raise ManifestError(f"the manifest {what}", where=WHERE, field=field or None)
    if isinstance(value, Mapping):
        pairs = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise ManifestError(f"keys must be strings, got {type(key).__name__}", where=WHERE, field=field or None)
            sub = f"{field}.{key}" if field else key
            pairs.append((yaml.ScalarNode(STR, key), to_node(item, sub, (*within, id(value)))))
        return yaml.MappingNode(_MAP, pairs)
    if isinstance(value, (list, tuple)):
        return yaml.SequenceNode(_SEQ, [to_node(item, f"{field}[{i}]", (*within, id(value))) for i, item in enumerate(value)])
    return _scalar(value, field)


def _scalar(value: Any, field: str) -> yaml.ScalarNode:
    if value is None:
        return yaml.ScalarNode(NULL, "null")
    if isinstance(value, bool):  # before int: a bool is an int to Python
        return yaml.ScalarNode(BOOL, "true" if value else "false")
    if isinstance(value, int):
        return yaml.ScalarNode(_INT, str(value))
    if isinstance(value, float):
        return yaml.ScalarNode(_FLOAT, repr(value))
    if isinstance(value, str):
        return yaml.ScalarNode(STR, value)
    if isinstance(value, os.PathLike) and isinstance(path := os.fspath(value), str):
        return yaml.ScalarNode(STR, path)
    # The type, never the value: a secret may have been put here by mistake.
    raise ManifestError(f"a {type(value).__name__} is not a manifest value (use strings, numbers, booleans, "
                        "lists and mappings)", where=WHERE, field=field or None)


def _without_path(manifest: Manifest) -> Manifest:
    """No file was used: ``path`` is None, as for the built-in sources alone."""
    return dataclasses.replace(manifest, path=None)
