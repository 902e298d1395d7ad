"""What the child can see of its secrets: every text output masking conceals (docs/guides/masking.md).

Computed here, in one place, from what a resolution produced; the masker only
matches what it is given. Each text is keyed by a *slot* (where it came from), so
that masking can keep the current and the two previous versions of each:

- ``("binding", NAME, PART)``: each piece a binding took from a secret: the whole
  value, a ``#KEY`` field, each part of a template that came from a secret (the
  template's literal text is not secret, and is left alone);
- ``("binding", "PREFIX*", VARIABLE)``: each variable an ``env_from`` made;
- ``("secret", SOURCE, PATH, VERSION, FIELD, *WHERE)``: every string leaf of every
  secret read: each field or scalar value, and where one is JSON (an object or an
  array, as an AWS SecretString or a nested field of a file source usually is),
  each string inside it at any depth, addressed by its keys and indexes, a string
  that is itself JSON included. The child may parse the JSON and print any of them.

Numbers, booleans and null inside JSON are not leaves: they are seldom secret, and
masking ``5432`` or ``true`` everywhere would garble ordinary output. A number the
child gets as a variable of its own (``#port``) is a binding's value, and masked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from launcher.model.refs import FetchKey
    from launcher.resolve.bindings import BindingResult
    from launcher.sources.base import Secret

Slot = tuple[str, ...]


def visible_values(results: Iterable[BindingResult], secrets: Mapping[FetchKey, Secret]) -> dict[Slot, str]:
    """Slot -> text, for every text of a secret the child can see (see the module docstring)."""
    out: dict[Slot, str] = {}
    for result in results:
        for label, value in result.from_secrets:
            out[("binding", result.name, label)] = value
    for key, secret in secrets.items():
        base = ("secret", key.source, key.path, key.version or "")
        if secret.fields is not None:
            texts: Iterable[tuple[str, str]] = secret.fields.items()
        else:
            texts = [] if secret.value is None else [("", secret.value)]
        for name, text in texts:
            for where, leaf in string_leaves(text):
                slot = (*base, name, *where)
                out[slot] = leaf
    return out


def string_leaves(text: str) -> Iterator[tuple[Slot, str]]:
    """(keys and indexes, string) of each string inside ``text`` when it is a JSON object or
    array, at any depth (a string that is JSON again is opened too); else ``text`` itself."""
    stack: list[tuple[Slot, Any]] = [((), text)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            parsed = _container(item)
            if parsed is None:
                yield where, item
                continue
            item = parsed
        if isinstance(item, dict):
            stack.extend(((*where, str(k)), v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend(((*where, str(i)), v) for i, v in enumerate(item))


def _container(text: str) -> dict[str, Any] | list[Any] | None:
    """``text`` parsed, when it is a JSON object or array; else None."""
    if text.lstrip()[:1] not in ("{", "["):
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # not JSON after all, or nested past the parser's limit
        return None
    return data if isinstance(data, (dict, list)) else None
