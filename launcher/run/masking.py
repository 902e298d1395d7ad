"""Output masking (README "Output masking"): secret values in the child's stdout and stderr become ``<concealed>``.

What is masked. Every value of 4 or more characters (the caller passes current
and previous versions, file contents, rendered templates), each stripped line
of 4 or more characters of a multi-line value (a PEM key, line by line, as CI
systems do), and the JSON-escaped forms of both (``json.dumps(v)[1:-1]``, with
and without ``ensure_ascii``) where they differ, matched as UTF-8 bytes
(surrogateescape). Overlapping occurrences become one ``<concealed>``: their
union is hidden, so neither a value containing another nor two values sharing
an edge leak a part. NOT masked: values shorter than 4 characters or only
whitespace (they would garble ordinary output), a stream that is a terminal
(the supervisor leaves it attached to the child, and warns), and a value whose
pieces the child writes more than ``LATENCY`` apart (see Pumping).

Matching. ``re`` tries an alternation of hundreds of literals at every
position (8-15 MB/s, even trie-factored), and ``bytes.find`` or ``replace``
per pattern is a pass per pattern (50-70 MB/s for 100). Instead a greedy
weighted set cover picks a few *anchor* bytes, rare in the output, such that
every pattern contains one: ``bytes.find`` (memchr, one pass per anchor)
visits each anchor, and a dict on the byte after it names the few patterns to
compare there. That costs about 0.25 us per anchor in the output, so the
speed depends on how rare the anchors are (1-2 GB/s when they are rare,
0.5 GB/s when every letter is common; see ``benchmarks/bench_mask.py``). A
chunk crowded with anchors is first narrowed in C: ``bytes.translate`` marks
the anchors and a detector regex (each branch starts with its anchor byte,
so ``re`` skips between anchors, then checks the whole pattern with a
fixed-width lookbehind) finds the occurrences; only windows around them are
verified. ``StreamMasker`` counts the bytes of a sample of the output now and
then and re-anchors when that makes the search markedly cheaper; anchors
never change what is masked.

Streaming. A value split across two reads is still masked: the longest tail
of what was read that is a proper prefix of some pattern (shorter than
``max_len``, usually empty) is held back and scanned again with the next
chunk; everything before it is final. A concealed run that reaches into the
held tail is remembered, so any split gives exactly ``Masker.mask`` of the
whole stream.

Pumping the child's output through a ``StreamMasker``: ``launcher.run.pump``.
"""

from __future__ import annotations

import collections
import copy
import json
import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

log = logging.getLogger(__name__)

CONCEALED = b"<concealed>"
MIN_CHARS = 4  # shorter values are not masked
LATENCY = 0.05  # a byte is held back at most this long (seconds)
CHUNK = 1 << 18  # bytes per read; also the pipe buffer make_pipe asks for
_SHORT = 48  # proper prefixes up to this length are kept in a set (hold-back checks)
_SPARSE = 64  # more than one anchor per this many bytes: the dense path is cheaper
_GAP = 2048  # on the dense path, anchors closer than this form one region
_PASS = 4e-5  # the cost of one more anchor (a memchr pass) in anchor hits per byte
_SAMPLE = 16384  # bytes counted per sample of the output
_SAMPLE_EVERY = (1 << 20, 64 << 20)  # first and longest interval between samples
_IOV_MAX = 1024

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

_Buffer = bytes | bytearray
Piece = bytes | memoryview
_Pairs = tuple[tuple[int, bytes], ...]  # (offset of the anchor in the pattern, pattern)
_Group = tuple[int, dict[int, _Pairs], _Pairs]  # anchor byte, the byte after it -> pairs, pairs ending with it
_END = -1  # "no next byte" after an anchor


def secret_patterns(values: Iterable[str]) -> list[bytes]:
    """The byte strings to conceal for ``values``, longest first (see the module docstring)."""
    forms: set[str] = set()
    for value in values:
        lines = [line.strip() for line in value.splitlines()] if "\n" in value or "\r" in value else []
        for piece in (value, *lines):
            if len(piece) < MIN_CHARS or not piece.strip():
                continue
            forms.update((piece, json.dumps(piece)[1:-1], json.dumps(piece, ensure_ascii=False)[1:-1]))
    out = set()
    for form in forms:
        try:
            out.add(form.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:  # a lone high surrogate: no child prints it as UTF-8 anyway
            out.add(form.encode("utf-8", "surrogatepass"))
    return sorted(out, key=lambda p: (-len(p), p))


class Masker:
    """Immutable matcher for a set of secret values; ``mask`` conceals them in a whole buffer.

    ``frequencies`` (256 floats: the share of each byte value in the output)
    only steers which anchor bytes are searched for; any choice masks the same.
    """

    def __init__(self, values: Iterable[str] = (), frequencies: Sequence[float] = PRIOR) -> None:
        self.patterns: tuple[bytes, ...] = tuple(secret_patterns(values))
        self.max_len = len(self.patterns[0]) if self.patterns else 0
        self._prefixes = frozenset(p[:k] for p in self.patterns for k in range(1, min(len(p), _SHORT + 1)))
        self._long = tuple(p for p in self.patterns if len(p) > _SHORT + 1)
        self._anchor(frequencies)

    def _anchor(self, frequencies: Sequence[float]) -> None:
        self.anchors = _choose_anchors(self.patterns, frequencies)
        groups: dict[int, dict[int, list[tuple[int, bytes]]]] = defaultdict(lambda: defaultdict(list))
        for p in self.patterns:
            at = min((i for i, b in enumerate(p) if b in self.anchors), key=lambda i: (frequencies[p[i]], i == len(p) - 1))
            groups[p[at]][p[at + 1] if at + 1 < len(p) else _END].append((at, p))
        self._groups: list[_Group] = [
            (a, {nxt: tuple(g) for nxt, g in by_next.items() if nxt != _END}, tuple(by_next.get(_END, ())))
            for a, by_next in groups.items()
        ]
        self._detector: re.Pattern[bytes] | None = None  # compiled for the first dense chunk

    def reanchored(self, frequencies: Sequence[float]) -> Masker:
        """The same masker with anchors chosen for these byte frequencies."""
        other = copy.copy(self)
        other._anchor(frequencies)
        return other

    def cost(self, frequencies: Sequence[float]) -> float:
        """The search cost of the anchors for output with these frequencies (hits per byte, passes included)."""
        return sum(_PASS + frequencies[b] for b in self.anchors)

    def __repr__(self) -> str:
        return f"<Masker: {len(self.patterns)} patterns, max_len {self.max_len}, anchors {bytes(sorted(self.anchors))!r}>"

    def mask(self, data: bytes) -> bytes:
        """``data`` with every occurrence (the union of overlapping ones) replaced by ``<concealed>``."""
        pieces, _ = self.conceal(data, len(data), len(data), 0)
        return b"".join(pieces)

    # -- the engine, shared with StreamMasker ------------------------------------------

    def conceal(self, buf: _Buffer, end: int, cut: int, carry: int) -> tuple[list[Piece], int]:
        """Mask ``buf[:cut]`` of the valid ``buf[:end]``; ``buf[:carry]`` continues a run already concealed.

        Occurrences starting before ``cut`` are final: the caller guarantees
        that no longer pattern starts there. Returns the pieces to emit (views
        of ``buf`` and ``CONCEALED``) and how far past ``cut`` the last run
        reaches (the next call's ``carry``).
        """
        view = memoryview(buf)
        pos = cover = carry
        pieces: list[Piece] = []
        for start, stop in self.occurrences(buf, end):
            if start >= cut:
                break
            if start >= cover:  # a new run
                pieces += (view[pos:start], CONCEALED)
            cover = max(cover, stop)
            pos = cover
        if pos < cut:
            pieces.append(view[pos:cut])
        return pieces, max(0, cover - cut)

    def occurrences(self, buf: _Buffer, end: int) -> list[tuple[int, int]]:
        """(start, stop) of every occurrence in ``buf[:end]``, sorted by start."""
        found = self._verify(buf, 0, end, 64 + end // _SPARSE)
        if found is None:  # crowded with anchors: find the places worth verifying in C first
            found = [hit for lo, hi in self._windows(bytes(memoryview(buf)[:end])) for hit in self._verify(buf, lo, hi) or ()]
        found.sort()
        return found

    def _verify(self, buf: _Buffer, lo: int, hi: int, budget: float = math.inf) -> list[tuple[int, int]] | None:
        """Occurrences ending by ``hi`` whose anchor lies in ``buf[lo:hi]``; None past ``budget`` anchors.

        Each anchor's pattern has it at a known offset: memchr finds every
        anchor, and a dict on the byte after it names the few patterns to compare.
        """
        found = []
        find = buf.find
        for anchor, by_next, tails in self._groups:
            at = find(anchor, lo, hi)
            while at >= 0:
                budget -= 1
                if budget < 0:
                    return None
                if (group := by_next.get(buf[at + 1] if at + 1 < hi else _END)) is not None:
                    for offset, p in group:
                        start = at - offset
                        if start >= 0 and buf.startswith(p, start, hi):
                            found.append((start, start + len(p)))
                for offset, p in tails:
                    start = at - offset
                    if start >= 0 and buf.startswith(p, start, hi):
                        found.append((start, start + len(p)))
                at = find(anchor, at + 1, hi)
        return found

    def _windows(self, buf: bytes) -> list[tuple[int, int]]:
        """Stretches of ``buf`` that hold every occurrence, found in C: marked anchors, then a detector regex.

        Every occurrence overlaps one the detector reports, so it lies within
        ``max_len`` of it; the windows are those neighbourhoods, merged.
        """
        if self._detector is None:
            self._detector = re.compile(_detector(self._groups))
        marked = buf.translate(bytes(0 if b in self.anchors else 1 for b in range(256)))
        size, reach = len(buf), self.max_len - 1
        windows: list[tuple[int, int]] = []
        hit = marked.find(0)
        while hit >= 0:
            last = hit
            while (nxt := marked.rfind(0, last + 1, last + _GAP)) >= 0:
                last = nxt
            for m in self._detector.finditer(buf, hit, min(size, last + 1 + reach)):
                lo, hi = max(0, m.start() - 2 * reach), min(size, m.end() + reach)
                if windows and lo <= windows[-1][1]:
                    lo = windows.pop()[0]
                windows.append((lo, hi))
            hit = marked.find(0, last + _GAP)
        return windows

    def hold_start(self, buf: _Buffer, end: int) -> int:
        """Where the longest tail of ``buf[:end]`` that is a proper prefix of a pattern starts (``end`` if none)."""
        best = end
        for p in self._long:
            head = p[:_SHORT]
            at = buf.find(head, max(0, end - len(p) + 1), end - 1)
            while 0 <= at < best:
                if p.startswith(buf[at:end]):
                    best = at
                    break
                at = buf.find(head, at + 1, end - 1)
        lo = max(0, end - _SHORT, end - self.max_len + 1)
        tail = bytes(memoryview(buf)[lo:end])
        for i in range(best - lo):
            if tail[i:] in self._prefixes:
                return lo + i
        return best


class StreamMasker:
    """Masks one stream fed in chunks of any size; the output equals ``Masker.mask`` of the whole.

    One per stream, used by one thread. ``feed`` returns what is final and
    holds back a tail that may begin a pattern; ``flush`` returns the rest.
    ``reserve`` and ``commit`` do the same without copying, for the pump.
    Every so often it counts the bytes of a sample of the output and, when
    other anchors would be markedly cheaper for it, re-anchors its masker.
    """

    def __init__(self, masker: Masker) -> None:
        self.masker = masker
        self._buf = bytearray()  # grown by reserve()
        self._held = (0, 0)  # buf[start:end] is held back
        self._carry = 0  # the first bytes held belong to a concealed run already emitted
        self._counts = [0] * 256
        self._interval = _SAMPLE_EVERY[0]
        self._until_sample = self._interval

    @property
    def pending(self) -> int:
        """How many bytes are held back."""
        return self._held[1] - self._held[0]

    def update(self, masker: Masker) -> None:
        """Mask with ``masker`` from now on (rotation); held bytes are kept and scanned with it."""
        self.masker = masker.reanchored(self._frequencies()) if any(self._counts) else masker

    def feed(self, chunk: bytes) -> bytes:
        """The masked bytes that are final now."""
        self.reserve(len(chunk))[:] = chunk
        return b"".join(self.commit(len(chunk)))

    def flush(self) -> bytes:
        """Everything held, masked: at end of stream, or when held bytes have waited ``LATENCY``."""
        self.reserve(0)
        end = self._held[1]
        pieces, _ = self.masker.conceal(self._buf, end, end, self._carry)
        self._held, self._carry = (0, 0), 0
        return b"".join(pieces)

    def reserve(self, size: int) -> memoryview:
        """A writable view of ``size`` bytes to read the next chunk into; invalidates earlier pieces."""
        start, end = self._held
        held = end - start
        if held + size > len(self._buf):
            grown = bytearray(held + size + 4096)  # room for the tails held back later
            grown[:held] = self._buf[start:end]
            self._buf = grown
        elif start:
            self._buf[:held] = self._buf[start:end]
        self._held = (0, held)
        return memoryview(self._buf)[held:held + size]

    def commit(self, size: int) -> list[Piece]:
        """Mask the ``size`` bytes read into the reserved view; the pieces to emit, valid until ``reserve``."""
        end = self._held[1] + size
        cut = self.masker.hold_start(self._buf, end)
        pieces, carry = self.masker.conceal(self._buf, end, cut, self._carry)
        self._held, self._carry = (cut, end), carry
        self._until_sample -= size
        if self._until_sample <= 0 and end >= 4096:
            self._learn(self._buf[max(0, end - _SAMPLE):end])
        return pieces

    def _learn(self, sample: bytes | bytearray) -> None:
        for b, n in collections.Counter(sample).items():
            self._counts[b] += n
        if sum(self._counts) > 1 << 20:  # forget old output slowly
            self._counts = [n // 2 for n in self._counts]
        freq = self._frequencies()
        cost = self.masker.cost(freq)
        if cost > 2 * _PASS * len(self.masker.anchors):  # hits cost more than passes: worth a look
            candidate = self.masker.reanchored(freq)
            if candidate.cost(freq) < 0.7 * cost:
                self.masker = candidate
        self._interval = min(2 * self._interval, _SAMPLE_EVERY[1])
        self._until_sample = self._interval

    def _frequencies(self) -> list[float]:
        total = sum(self._counts) + 1
        return [(n + PRIOR[b]) / total for b, n in enumerate(self._counts)]


def _choose_anchors(patterns: Iterable[bytes], frequencies: Sequence[float]) -> frozenset[int]:
    """Byte values, cheap to search for, such that every pattern contains one (greedy weighted set cover)."""
    holders: dict[int, set[int]] = defaultdict(set)
    uncovered = set()
    for i, p in enumerate(patterns):
        uncovered.add(i)
        for b in set(p):
            holders[b].add(i)
    chosen = set()
    while uncovered:
        best = min(holders, key=lambda b: (_PASS + frequencies[b]) / (len(holders[b] & uncovered) or 1e-9))
        chosen.add(best)
        uncovered -= holders.pop(best)
    return frozenset(chosen)


def _detector(groups: Iterable[_Group]) -> bytes:
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
