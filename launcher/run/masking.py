"""Output masking (docs/guides/masking.md): secret values in the child's output become ``<concealed>``.

What is masked. The caller passes every text of a secret the child can see
(``launcher.resolve.visible``), current and previous versions; ``launcher.run.mask_forms``
turns each into the byte strings to look for (its lines, its JSON-escaped
forms). Overlapping occurrences become one ``<concealed>``: their union is
hidden, so neither a value containing another nor two values sharing an edge
leak a part. NOT masked: values shorter than 4 characters or only whitespace
(they would garble ordinary output), a stream that is a terminal (the
supervisor leaves it attached to the child, and warns).

Matching. ``re`` tries an alternation of hundreds of literals at every
position (8-15 MB/s, even trie-factored), and ``bytes.find`` or ``replace``
per pattern is a pass per pattern (50-70 MB/s for 100). Instead a few
*anchor* bytes, rare in the output, are picked such that every pattern
contains one (``launcher.run.mask_anchors``): ``bytes.find`` (memchr, one pass
per anchor) visits each anchor, and a dict on
the byte after it names the few patterns to compare there. That costs about
0.25 us per anchor in the output, so the speed depends on how rare the anchors
are (1-2 GB/s when they are rare, 0.5 GB/s when every letter is common; see
``benchmarks/bench_mask.py``). A chunk crowded with anchors is first narrowed
in C: ``bytes.translate`` marks the anchors and a detector regex (each branch
starts with its anchor byte, so ``re`` skips between anchors, then checks the
whole pattern with a fixed-width lookbehind) finds the occurrences; only
windows around them are verified. ``StreamMasker`` counts the bytes of a
sample of the output now and then and re-anchors when that makes the search
markedly cheaper; anchors never change what is masked. Whether some bytes are
the start of a pattern is a bisection in the sorted patterns, after a set of
their first three bytes turned most positions away: memory stays a few times
the patterns' own size (a set of every prefix took 78 MiB for 30,000 values;
now 7 MiB, and 19 MiB with two previous versions of each).

Streaming, and the hold rule. A value split across reads is still masked,
whatever the pause between the pieces: the longest tail of what was read that
is a proper prefix of some pattern is held back and scanned again with the
next chunk; everything before it is final. Held bytes that are the start of a
value with 4 characters or more (``firm``) stay held until the following
bytes decide, or the stream ends. A shorter start may be let through
(``release``: the pump does it after 50 ms, so a prompt is not stuck); it is
kept as context, and when the rest of that value follows, the rest is
concealed: at most the first 3 characters of a value can ever appear. A
concealed run that reaches into the held tail is remembered, so without
releases any split gives exactly ``Masker.mask`` of the whole stream.

Pumping the child's output through a ``StreamMasker``: ``launcher.run.pump``.
"""

from __future__ import annotations

import bisect
import collections
import copy
import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

from launcher.run.mask_anchors import END, PASS, PRIOR, Group, choose_anchors, detector, rank_table
from launcher.run.mask_forms import MIN_CHARS, secret_patterns

__all__ = ["CHUNK", "CONCEALED", "LATENCY", "MIN_CHARS", "PRIOR", "Masker", "Piece", "StreamMasker", "secret_patterns"]

log = logging.getLogger(__name__)

CONCEALED = b"<concealed>"
LATENCY = 0.05  # output that is not the firm start of a value is held back at most this long (seconds)
CHUNK = 1 << 18  # bytes per read; also the pipe buffer make_pipe asks for
_SHORT = 48  # tails longer than this can only begin a long pattern (hold-back checks)
_FEW_LONG = 64  # up to this many long patterns, each one's head is searched for; past it, every position is tried
_SPARSE = 64  # more than one anchor per this many bytes: the dense path is cheaper
_GAP = 2048  # on the dense path, anchors closer than this form one region
_SAMPLE = 16384  # bytes counted per sample of the output
_SAMPLE_EVERY = (1 << 20, 64 << 20)  # first and longest interval between samples
_CONTINUATION = bytes(range(0x80, 0xC0))  # UTF-8 bytes that do not start a character

_Buffer = bytes | bytearray
Piece = bytes | memoryview


class Masker:
    """Immutable matcher for a set of secret values; ``mask`` conceals them in a whole buffer.

    ``frequencies`` (256 floats: the share of each byte value in the output)
    only steers which anchor bytes are searched for; any choice masks the same.
    """

    def __init__(self, values: Iterable[str] = (), frequencies: Sequence[float] = PRIOR) -> None:
        self.patterns: tuple[bytes, ...] = tuple(secret_patterns(values))
        self.max_len = len(self.patterns[0]) if self.patterns else 0
        self._sorted = sorted(self.patterns)  # bisected: is this the start of a pattern?
        # The first one, two and three bytes of every pattern: most positions fail here, cheaply.
        self._heads = frozenset(p[:k] for p in self.patterns for k in (1, 2, 3))
        long = [p for p in self.patterns if len(p) > _SHORT + 1]
        self._long = tuple(long) if len(long) <= _FEW_LONG else None  # None: too many to search one by one
        self._anchor(frequencies)

    def _anchor(self, frequencies: Sequence[float]) -> None:
        self.anchors = choose_anchors(self.patterns, frequencies)
        order, table = rank_table(frequencies, self.anchors)  # names each pattern's rarest anchor
        groups: dict[int, dict[int, list[tuple[int, bytes]]]] = defaultdict(lambda: defaultdict(list))
        for p in self.patterns:
            anchor = order[min(p.translate(table))]
            at = p.find(anchor)
            groups[anchor][p[at + 1] if at + 1 < len(p) else END].append((at, p))
        self._groups: list[Group] = [
            (a, {nxt: tuple(g) for nxt, g in by_next.items() if nxt != END}, tuple(by_next.get(END, ())))
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
        return sum(PASS + frequencies[b] for b in self.anchors)

    def __repr__(self) -> str:
        return f"<Masker: {len(self.patterns)} patterns, max_len {self.max_len}, anchors {bytes(sorted(self.anchors))!r}>"

    def mask(self, data: bytes) -> bytes:
        """``data`` with every occurrence (the union of overlapping ones) replaced by ``<concealed>``."""
        pieces, _, _ = self.conceal(data, len(data), len(data))
        return b"".join(pieces)

    # -- the engine, shared with StreamMasker ------------------------------------------

    def conceal(self, buf: _Buffer, end: int, cut: int, done: int = 0, run: int = 0) -> tuple[list[Piece], int, int]:
        """Mask ``buf[done:cut]`` of the valid ``buf[:end]``; ``buf[:done]`` was emitted already.

        ``buf[:run]`` (``run <= done``) ended in a concealed run: an occurrence
        overlapping it extends that run; one that starts in ``buf[run:done]``
        (emitted in clear: a released start of a value) is concealed from
        ``done`` on. Occurrences starting before ``cut`` are final: the caller
        guarantees that no longer pattern starts there. Returns the pieces to
        emit (views of ``buf`` and ``CONCEALED``), how far the output now
        reaches (``cut``, or past it when a run does: the next ``done``) and
        where the last concealed run ends (the next ``run``).
        """
        view = memoryview(buf)
        pos, cover = done, run
        pieces: list[Piece] = []
        for start, stop in self.occurrences(buf, end):
            if start >= cut:
                break
            if stop <= pos:
                continue  # within what was emitted already
            if start >= cover:  # a new run
                pieces += (view[pos:max(start, pos)], CONCEALED)
            cover = max(cover, stop)
            pos = cover
        if pos < cut:
            pieces.append(view[pos:cut])
            pos = cut
        return pieces, pos, cover

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
                if (group := by_next.get(buf[at + 1] if at + 1 < hi else END)) is not None:
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
            self._detector = re.compile(detector(self._groups))
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

    def hold_start(self, buf: _Buffer, end: int, lo: int = 0) -> int:
        """Where the longest tail of ``buf[lo:end]`` that is a proper prefix of a pattern starts (``end`` if none)."""
        lo = max(lo, end - self.max_len + 1)
        short = max(lo, end - _SHORT)  # tails from here on are at most _SHORT bytes
        if lo < short:
            found = self._long_hold(buf, lo, short, end)
            if found < short:
                return found
        tail = bytes(memoryview(buf)[short:end])
        heads = self._heads
        for i in range(len(tail)):
            if tail[i:i + 3] in heads and self._begins(tail[i:]):
                return short + i
        return end

    def _long_hold(self, buf: _Buffer, lo: int, short: int, end: int) -> int:
        """The first position in ``buf[lo:short]`` whose tail to ``end`` begins a long pattern (``short`` if none)."""
        if self._long is not None:  # few long patterns (PEM keys): find each one's head
            best = short
            for p in self._long:
                head = p[:_SHORT]
                at = buf.find(head, max(lo, end - len(p) + 1), end)
                while 0 <= at < best:
                    if p.startswith(buf[at:end]):
                        best = at
                        break
                    at = buf.find(head, at + 1, end)
            return best
        tail = bytes(memoryview(buf)[lo:end])
        heads = self._heads
        for i in range(short - lo):
            if tail[i:i + 3] in heads and self._begins(tail[i:]):
                return lo + i
        return short

    def _begins(self, tail: bytes) -> bool:
        """Whether ``tail`` is a proper prefix of a pattern (a bisection in the sorted patterns)."""
        ordered = self._sorted
        i = bisect.bisect_left(ordered, tail)
        for p in ordered[i:i + 2]:  # ``tail`` itself may come first; then the patterns it begins
            if len(p) > len(tail) and p.startswith(tail):
                return True
        return False


class StreamMasker:
    """Masks one stream fed in chunks of any size, holding back what may begin a value (the hold rule).

    One per stream, used by one thread. ``feed`` returns what is final and
    holds back a tail that may begin a pattern (``pending`` bytes; ``firm`` when
    they begin a value with 4 characters or more); ``release`` lets a start
    that is not firm through, remembering it; ``flush``, at the end of the
    stream, returns the rest. ``reserve`` and ``commit`` do what ``feed`` does
    without copying, for the pump. Without releases the output equals
    ``Masker.mask`` of the whole stream. Every so often it counts the bytes of a
    sample of the output and, when other anchors would be markedly cheaper for
    it, re-anchors its masker.
    """

    def __init__(self, masker: Masker) -> None:
        self.masker = masker
        self._buf = bytearray()  # grown by reserve()
        self._kept = (0, 0)  # buf[start:end]: the tail that may begin a pattern, kept for the next chunk
        self._done = 0  # buf[:done] was emitted (in clear or concealed); the rest of the kept tail is held
        self._run = 0  # buf[:run] ended in a concealed run (run <= done)
        self._firm = False  # the kept tail has MIN_CHARS characters or more
        self._counts = [0] * 256
        self._interval = _SAMPLE_EVERY[0]
        self._until_sample = self._interval

    @property
    def pending(self) -> int:
        """How many bytes are held back (read, not yet emitted)."""
        return self._kept[1] - self._done

    @property
    def firm(self) -> bool:
        """Whether the held bytes end a start of a value of 4 characters or more: held until the next bytes decide."""
        return self._firm and self.pending > 0

    def update(self, masker: Masker) -> None:
        """Mask with ``masker`` from now on (rotation); held bytes are kept and scanned with it."""
        self.masker = masker.reanchored(self._frequencies()) if any(self._counts) else masker

    def feed(self, chunk: bytes) -> bytes:
        """The masked bytes that are final now."""
        self.reserve(len(chunk))[:] = chunk
        return b"".join(self.commit(len(chunk)))

    def release(self) -> bytes:
        """The held bytes, masked, now (a start of a value shorter than 4 characters has waited long enough).

        They stay as context: if the rest of a value they begin follows, the
        rest is concealed.
        """
        self.reserve(0)
        end = self._kept[1]
        pieces, self._done, self._run = self.masker.conceal(self._buf, end, end, self._done, self._run)
        return b"".join(pieces)

    def flush(self) -> bytes:
        """Everything held, masked: at the end of the stream."""
        out = self.release()
        self._kept, self._done, self._run = (0, 0), 0, 0
        return out

    def reserve(self, size: int) -> memoryview:
        """A writable view of ``size`` bytes to read the next chunk into; invalidates earlier pieces."""
        start, end = self._kept
        kept = end - start
        if kept + size > len(self._buf):
            grown = bytearray(kept + size + 4096)  # room for the tails held back later
            grown[:kept] = self._buf[start:end]
            self._buf = grown
        elif start:
            self._buf[:kept] = self._buf[start:end]
        self._kept, self._done, self._run = (0, kept), self._done - start, max(0, self._run - start)
        return memoryview(self._buf)[kept:kept + size]

    def commit(self, size: int) -> list[Piece]:
        """Mask the ``size`` bytes read into the reserved view; the pieces to emit, valid until ``reserve``."""
        end = self._kept[1] + size
        hold = self.masker.hold_start(self._buf, end)
        # What was emitted stays emitted: a tail reaching back into it is context, not held.
        cut = max(hold, self._done)
        pieces, self._done, self._run = self.masker.conceal(self._buf, end, cut, self._done, self._run)
        self._kept = (hold, end)
        self._firm = end - hold >= MIN_CHARS and end - hold - _count_continuations(self._buf, hold, end) >= MIN_CHARS
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
        if cost > 2 * PASS * len(self.masker.anchors):  # hits cost more than passes: worth a look
            candidate = self.masker.reanchored(freq)
            if candidate.cost(freq) < 0.7 * cost:
                self.masker = candidate
        self._interval = min(2 * self._interval, _SAMPLE_EVERY[1])
        self._until_sample = self._interval

    def _frequencies(self) -> list[float]:
        total = sum(self._counts) + 1
        return [(n + PRIOR[b]) / total for b, n in enumerate(self._counts)]


def _count_continuations(buf: _Buffer, lo: int, hi: int) -> int:
    """How many bytes of ``buf[lo:hi]`` continue a UTF-8 character (the rest start one)."""
    part = bytes(memoryview(buf)[lo:hi])
    return len(part) - len(part.translate(None, _CONTINUATION))
