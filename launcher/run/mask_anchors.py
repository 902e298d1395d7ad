"""Which bytes the masker searches for: anchors, rare in the output, such that every pattern holds one.

``bytes.find`` (memchr) visits each anchor in a chunk; a dict on the byte after
it names the few patterns to compare there (``launcher.run.masking``). The cost of
a choice is one pass per anchor plus one stop per anchor byte in the output,
so the anchors are the rarest bytes that still cover every pattern, by
``PRIOR`` until the output's own byte counts are known. For chunks crowded with
anchors, ``detector`` writes the regex that finds occurrences in C.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Container, Iterable, Sequence

PASS = 4e-5  # the cost of one more anchor (a memchr pass) in anchor hits per byte
GREEDY_MAX = 2000  # patterns: up to this many, the anchors come from the (slower, better) greedy cover
END = -1  # "no next byte" after an anchor
Pairs = tuple[tuple[int, bytes], ...]  # (offset of the anchor in the pattern, pattern)
Group = tuple[int, dict[int, Pairs], Pairs]  # anchor byte, the byte after it -> pairs, pairs ending with it

# Bytes from most to least common in logs and source text (measured once on a
# mix of both): the frequency prior until the output's own counts are known.
# Bytes not listed are rarer still, except UTF-8 bytes.
_COMMON = b" etaroinsl\n0c1d2u_:.-p53m4h,f96g87=/\"bE'y()xIS[]TNwvCA\tLk>RO<#GFPDXBU@\\MH*Z`j{}K|qWz+V;YJ?%~$!Q&^"


def _prior() -> tuple[float, ...]:
    freq = [0.2 * 0.9**120] * 256
    for b in range(0x80, 0x100):
        freq[b] = 0.2 * 0.9**40
    for rank, b in enumerate(_COMMON):
        freq[b] = 0.2 * 0.9**rank
    return tuple(freq)


PRIOR = _prior()  # the estimated share of each byte value in ordinary output


def rank_table(frequencies: Sequence[float], allowed: Container[int] | None = None) -> tuple[list[int], bytes]:
    """Byte values from the rarest (ties by value), and a ``bytes.translate`` table of each byte's rank
    among them (255 for a byte not ``allowed``): ``order[min(pattern.translate(table))]`` is the
    pattern's rarest allowed byte, found in C."""
    order = sorted(range(256), key=lambda b: (frequencies[b], b))
    rank = bytearray([255]) * 256
    for r, b in enumerate(order):
        if allowed is None or b in allowed:
            rank[b] = r
    return order, bytes(rank)


def choose_anchors(patterns: Sequence[bytes], frequencies: Sequence[float]) -> frozenset[int]:
    """Byte values, cheap to search for, such that every pattern contains one.

    Up to ``GREEDY_MAX`` patterns, a greedy weighted set cover (the cheapest
    byte per pattern it would newly cover, again and again); past that it costs
    too much (356 ms for 30,000 patterns), and one pass does: a pattern that no
    anchor chosen so far covers adds its own rarest byte (7 ms for 30,000; its
    covers are at most a tenth dearer for random tokens).
    """
    if len(patterns) <= GREEDY_MAX:
        return _greedy_cover(patterns, frequencies)
    order, table = rank_table(frequencies)
    chosen = bytearray()
    for p in patterns:
        if chosen and len(p.translate(None, chosen)) < len(p):
            continue  # holds an anchor already
        chosen.append(order[min(p.translate(table))])
    return frozenset(chosen)


def _greedy_cover(patterns: Sequence[bytes], frequencies: Sequence[float]) -> frozenset[int]:
    holders: dict[int, set[int]] = defaultdict(set)
    uncovered = set()
    for i, p in enumerate(patterns):
        uncovered.add(i)
        for b in set(p):
            holders[b].add(i)
    chosen = set()
    while uncovered:
        best = min(holders, key=lambda b: (PASS + frequencies[b]) / (len(holders[b] & uncovered) or 1e-9))
        chosen.add(best)
        uncovered -= holders.pop(best)
    return frozenset(chosen)


def detector(groups: Iterable[Group]) -> bytes:
    """A regex matching at an anchor byte when a whole pattern surrounds it.

    Each branch starts with its anchor byte (``re`` then skips to the next
    anchor by a first-byte set), then the rest of the pattern, then a
    fixed-width lookbehind for the whole pattern (it may look before ``pos``).
    """
    branches = []
    for anchor, by_next, tails in groups:
        pairs = [*(pair for group in by_next.values() for pair in group), *tails]
        rests = [re.escape(p[at + 1:]) + (b"(?<=" + re.escape(p) + b")" if at else b"") for at, p in pairs]
        branches.append(re.escape(bytes([anchor])) + b"(?:" + b"|".join(rests) + b")")
    return b"|".join(branches) or b"(?!)"
