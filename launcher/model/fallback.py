"""The rules of ``fallback:`` that a manifest must obey (docs/operations/failover.md), checked before anything runs.

The manifest reader refuses a fallback that names no declared source, one of
another type, or a chain that loops; the resolver asks ``cycle_of`` again for a
``Manifest`` built in code, before it could loop. Pure functions of the configs.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from launcher.model.config import SourceConfig


def cycle_of(sources: Mapping[str, SourceConfig], name: str) -> list[str] | None:
    """The fallback chain from ``name`` back to itself (``[a, b, a]``), or None when it ends."""
    chain = [name]
    following = sources[name].fallback
    while following is not None and following in sources:
        chain.append(following)
        if following == name:
            return chain
        if following in chain[:-1]:
            return None  # a cycle further down, which ``name`` is not part of
        following = sources[following].fallback
    return None


def fallback_problem(sources: Mapping[str, SourceConfig], name: str, declared: Collection[str]) -> str | None:
    """What is wrong with ``sources[name].fallback``, or None.

    It must name a declared source (``declared`` counts one whose settings are
    wrong) of the same type, since it holds the same paths. A cycle is reported
    once, at its member declared first.
    """
    config = sources[name]
    other = config.fallback
    if other is None:
        return None
    if other not in declared:
        return f"unknown source {other!r}: a fallback is a declared source (declared: {', '.join(sorted(declared))})"
    cycle = cycle_of(sources, name)
    if cycle is not None:
        order = list(sources)
        return f"fallback cycle: {' -> '.join(cycle)}" if min(cycle, key=order.index) == name else None
    if other in sources and sources[other].type != config.type:
        return (f"{other!r} is type {sources[other].type} and {name!r} type {config.type}: "
                "a fallback holds the same paths, so it is a source of the same type")
    return None
