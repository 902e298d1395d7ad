"""Output masking: the throughput of ``OutputPump`` against ``cat``, and of each matcher tried.

A file of ``--size-mb`` MB of log-like text (JSON logs, access logs, plain
application logs, stack traces; one line in 200 carries one of ``--secrets``
random 24-40 character tokens) is written once. Then, in interleaved rounds:

- cat: ``cat FILE | cat > /dev/null`` (a default pipe);
- pump: ``cat FILE`` into a ``make_pipe()`` pipe, an ``OutputPump`` masking the
  secrets copies it to /dev/null (in this process, on its own thread);
- pump, no values: the same with an empty ``Masker`` (the cost of copying in
  Python: ``readv`` into a reused buffer, ``writev``).

``--corpus mixed`` (the default) has JSON logs, access logs with user agents,
Java class names and stack traces, so nearly every letter is common in it;
``narrow`` has JSON and lowercase logs only, where some letters stay rare.
The pump's speed depends on exactly that (see the masking module docstring).

The target is pump >= 0.5x cat, reported as cat MB/s / pump MB/s <= 2. A second
table measures each matching approach tried, in memory on the first
``--scan-mb`` MB (1 MiB chunks); ``--sweep`` adds read and pipe sizes.

A third table rotates ``--rebuild-values`` values (30,000) ``--rotations`` times
through ``Masking.update``: how long the supervisor's loop is held, the build
time on the masking thread, the texts kept (three versions of each) and the
RSS growth.

    python benchmarks/bench_mask.py [--size-mb 200] [--secrets 100] [--rounds 3] [--sweep] [--rebuild-values 30000]
"""

from __future__ import annotations

import argparse
import collections
import fcntl
import os
import random
import re
import string
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from benchlib import Report, Target, load_line, median, ratio, stop_cleanly_on_signals, table, use_source_override, workdir

if TYPE_CHECKING:
    from launcher.run.masking import Masker  # imported late at run time: BENCH_LAUNCHER_SRC may choose the package

MB = 1_000_000
TOKEN_ALPHABET = string.ascii_letters + string.digits + "-_"
WORDS = ("request completed order invoice user session cache miss hit connection pool opened closed retry backend timeout "
         "query rows returned worker started stopped health check failed refreshed upstream latency handler").split()
CLASSES = ("OrderService", "InvoiceRepository", "HttpClient", "SessionManager", "RetryPolicy", "CacheLoader")


def secret_values(count: int, rnd: random.Random) -> list[str]:
    return ["".join(rnd.choice(TOKEN_ALPHABET) for _ in range(rnd.randint(24, 40))) for _ in range(count)]


def log_line(rnd: random.Random, narrow: bool = False) -> str:
    """One line of a plausible service log; ``narrow``: lowercase-heavy lines only (no user agents, class names)."""
    ts = f"2026-11-{rnd.randint(1, 28):02d}T{rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d}"
    msg = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(3, 10)))
    kind = rnd.random()
    if kind < 0.3 or (narrow and kind < 0.6):
        return (f'{{"ts":"{ts}.{rnd.randint(0, 999):03d}Z","level":"{rnd.choice(("info", "debug", "warn"))}","logger":"app.http",'
                f'"msg":"{msg}","path":"/api/v1/orders/{rnd.randint(1, 99999)}","status":{rnd.choice((200, 201, 404, 500))},'
                f'"duration_ms":{rnd.random() * 100:.3f},"request_id":"{rnd.getrandbits(128):032x}"}}')
    if narrow:
        level = rnd.choice(("INFO", "DEBUG", "WARN"))
        return f"{ts} {level} [worker-{rnd.randint(1, 16)}] app.orders - {msg} pid={rnd.randint(100, 65535)}"
    if kind < 0.5:
        return (f'10.0.{rnd.randint(0, 255)}.{rnd.randint(1, 254)} - - [21/Nov/2026:10:{rnd.randint(0, 59):02d}:00 +0000] '
                f'"GET /static/app.{rnd.getrandbits(32):08x}.js HTTP/1.1" 200 {rnd.randint(100, 99999)} "-" '
                '"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"')
    if kind < 0.9:
        return f"{ts} {rnd.choice(('INFO', 'DEBUG', 'WARN'))}  [worker-{rnd.randint(1, 16)}] com.example.{rnd.choice(CLASSES)} - {msg}"
    cls = rnd.choice(CLASSES)
    return f"\tat com.example.billing.{cls}.findById({cls}.java:{rnd.randint(10, 900)})"


def write_corpus(path: Path, size: int, values: list[str], rnd: random.Random, narrow: bool = False) -> int:
    """``size`` bytes of log lines; one in 200 carries a secret. Returns how many do."""
    pool = [log_line(rnd, narrow) for _ in range(20000)]
    carriers = ("token={}", '"password":"{}"', "Authorization: Bearer {}", "retrying with key {} after 401")
    written, with_secret = 0, 0
    with open(path, "w") as fh:
        while written < size:
            lines = rnd.choices(pool, k=1000)
            for i in range(0, len(lines), 200):
                lines[i] += " " + rnd.choice(carriers).format(rnd.choice(values))
                with_secret += 1
            block = "\n".join(lines) + "\n"
            fh.write(block)
            written += len(block)
    os.truncate(path, size)
    return with_secret


# -- the pipelines ----------------------------------------------------------------------


def cat_pipeline(path: Path, pipe_size: int | None = None) -> float:
    """Seconds for ``cat FILE | cat > /dev/null``."""
    read_end, write_end = os.pipe()
    if pipe_size:
        fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, pipe_size)
    started = time.perf_counter()
    producer = subprocess.Popen(["cat", str(path)], stdout=write_end)
    os.close(write_end)
    consumer = subprocess.Popen(["cat"], stdin=read_end, stdout=subprocess.DEVNULL)
    os.close(read_end)
    producer.wait(timeout=600)
    consumer.wait(timeout=600)
    return time.perf_counter() - started


def pump_pipeline(path: Path, values: list[str], chunk: int | None = None, pipe_size: int | None = None) -> tuple[float, Masker]:
    """Seconds for ``cat FILE`` through an ``OutputPump`` to /dev/null; and the masker it ended with."""
    from launcher.run.masking import CHUNK, Masker
    from launcher.run.pump import OutputPump, make_pipe

    masker = Masker(values)
    read_end, write_end = make_pipe(pipe_size or CHUNK)
    null = os.open(os.devnull, os.O_WRONLY)
    started = time.perf_counter()
    producer = subprocess.Popen(["cat", str(path)], stdout=write_end)
    os.close(write_end)
    pump = OutputPump(read_end, null, masker, chunk=chunk or CHUNK)
    pump.start()
    pump.finish(timeout=10.0)
    elapsed = time.perf_counter() - started
    final = pump.masker  # with the anchors it learned
    pump.close()
    producer.wait(timeout=600)
    os.close(null)
    return elapsed, final


# -- the matchers tried, in memory ------------------------------------------------------------


def trie_regex(patterns: tuple[bytes, ...]) -> bytes:
    """An alternation factored on common prefixes; a greedy ``?`` where a pattern ends lets the longer one win."""
    root: dict[int, dict] = {}  # type: ignore[type-arg]
    for p in patterns:
        node = root
        for b in p:
            node = node.setdefault(b, {})
        node[-1] = {}

    def emit(node: dict) -> bytes:  # type: ignore[type-arg]
        branches = [re.escape(bytes([b])) + emit(child) for b, child in sorted(node.items()) if b != -1]
        if not branches:
            return b""
        body = branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"
        return b"(?:" + body + b")?" if -1 in node else body

    return emit(root)


def matchers(values: list[str], sample: bytes) -> list[tuple[str, Callable[[bytes], bytes], bool]]:
    """Every approach measured: (name, a function masking one chunk, slow). The last two are the engine."""
    from launcher.run import masking
    from launcher.run.masking import CONCEALED, Masker

    class DenseOnly(Masker):  # the engine's path for chunks crowded with anchors, taken for every chunk
        def occurrences(self, buf: bytes | bytearray, end: int) -> list[tuple[int, int]]:
            return sorted(hit for lo, hi in self._windows(bytes(memoryview(buf)[:end])) for hit in self._verify(buf, lo, hi) or ())

    engine = Masker(values)
    patterns = engine.patterns
    flat = re.compile(b"|".join(re.escape(p) for p in patterns))
    trie = re.compile(trie_regex(patterns))
    counts = collections.Counter(sample)
    learned = engine.reanchored([(counts[b] + masking.PRIOR[b]) / len(sample) for b in range(256)])

    def replace_each(chunk: bytes) -> bytes:
        for p in patterns:
            chunk = chunk.replace(p, CONCEALED)
        return chunk

    def find_each(chunk: bytes) -> bytes:
        spans = []
        for p in patterns:
            at = chunk.find(p)
            while at >= 0:
                spans.append((at, at + len(p)))
                at = chunk.find(p, at + 1)
        out, pos, cover = [], 0, 0
        for start, end in sorted(spans):
            if start >= cover:
                out += [chunk[pos:start], CONCEALED]
            cover = max(cover, end)
            pos = cover
        return b"".join([*out, chunk[pos:]])

    return [
        ("one bytes.replace per pattern", replace_each, False),
        ("flat alternation regex, longest first", lambda chunk: flat.sub(CONCEALED, chunk), True),
        ("trie-factored alternation regex", lambda chunk: trie.sub(CONCEALED, chunk), True),
        ("bytes.find loop per pattern", find_each, False),
        ("crowded path everywhere: translate + detector regex + windows", DenseOnly(values).mask, False),
        ("memchr anchors, prior frequencies", engine.mask, False),
        ("memchr anchors, learned frequencies", learned.mask, False),
    ]


def scan_table(values: list[str], data: bytes) -> str:
    from launcher.run.masking import Masker, StreamMasker

    chunks = [data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)]
    reference = Masker(values)
    expected = [reference.mask(c) for c in chunks]
    rows = []
    for name, fn, slow in matchers(values, data[: 1 << 20]):
        subset = chunks[:2] if slow else chunks  # a rate either way; the slow ones would take minutes
        started = time.perf_counter()
        out = [fn(c) for c in subset]
        elapsed = time.perf_counter() - started
        rows.append([name, sum(map(len, subset)) / MB / elapsed, len(subset), "yes" if out == expected[: len(out)] else "NO"])
    # The whole engine as the pump runs it: one stream, 256 KiB reads into its buffer, learning included.
    stream = StreamMasker(reference)
    started = time.perf_counter()
    pieces = []
    for i in range(0, len(data), 1 << 18):
        view = stream.reserve(1 << 18)
        size = len(view[: len(data) - i])
        view[:size] = data[i:i + size]
        pieces.append(b"".join(stream.commit(size)))
    pieces.append(stream.flush())
    elapsed = time.perf_counter() - started
    same = "yes" if b"".join(pieces) == reference.mask(data) else "NO"
    rows.append(["StreamMasker reserve/commit, 256 KiB, learning", len(data) / MB / elapsed, len(chunks), same])
    return table(["matcher (in memory, 1 MiB chunks)", "MB/s", "chunks", "same output"], rows)


def rebuild_table(count: int, rotations: int, rnd: random.Random) -> str:
    """Rotating ``count`` values ``rotations`` times through ``Masking.update``, as the supervisor does.

    Per rotation: how long ``update`` held the caller (the supervisor's loop),
    how long the masker took to build on its own thread, how many texts it
    keeps (current and two previous versions of each), and the process's RSS
    over what it was before the first update.
    """
    from launcher.run.output_masking import Masking

    null = os.open(os.devnull, os.O_WRONLY)
    masking = Masking(streams=(null,))
    masking.start()
    base = rss_mib()
    rows = []
    for rotation in range(1, rotations + 1):
        values = {("secret", "bench", "big", "", str(i)): v for i, v in enumerate(secret_values(count, rnd))}
        started = time.perf_counter()
        masking.update(lambda values=values: values)
        held = time.perf_counter() - started
        while masking.built[0] < rotation:
            time.sleep(0.005)
        rows.append([rotation, held * 1000, masking.built[1], len(masking._versions.texts()), rss_mib() - base])
    masking.finish(timeout=0.1)
    os.close(null)
    return table([f"rotation of {count} values", "update() held the loop (ms)", "build (s)", "texts kept", "RSS growth (MiB)"], rows)


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


def main(argv: list[str] | None = None) -> Report:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=200, help="size of the text piped through (MB)")
    ap.add_argument("--secrets", type=int, default=100, help="secret values to mask")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians are reported)")
    ap.add_argument("--scan-mb", type=int, default=16, help="MB of the text used for the in-memory matcher table")
    ap.add_argument("--sweep", action="store_true", help="also measure read sizes and pipe sizes")
    ap.add_argument("--corpus", choices=("mixed", "narrow"), default="mixed",
                    help="mixed: JSON, access logs with user agents, Java class names, stack traces; narrow: JSON and lowercase logs")
    ap.add_argument("--rebuild-values", type=int, default=30000, help="values rotated for the rebuild table (0: skip it)")
    ap.add_argument("--rotations", type=int, default=5, help="rotations for the rebuild table")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    opts = ap.parse_args(argv)
    use_source_override()
    rnd = random.Random(opts.seed)
    values = secret_values(opts.secrets, rnd)
    rep = Report(f"Masking: {opts.size_mb} MB of {opts.corpus} log text, {opts.secrets} secrets, pump vs cat "
                 f"(medians of {opts.rounds} rounds)")
    with workdir("mask", opts.keep) as base:
        corpus = base / "corpus.log"
        carriers = write_corpus(corpus, opts.size_mb * MB, values, rnd, opts.corpus == "narrow")
        cat_pipeline(corpus)  # warm-up: page cache, code paths
        pump_pipeline(corpus, values)
        runs: dict[str, list[float]] = collections.defaultdict(list)
        learned: Masker | None = None
        for _ in range(opts.rounds):
            runs["cat"].append(cat_pipeline(corpus))
            seconds, learned = pump_pipeline(corpus, values)
            runs["pump"].append(seconds)
            runs["pump, no values"].append(pump_pipeline(corpus, [])[0])
        rates = {name: [opts.size_mb / s for s in secs] for name, secs in runs.items()}
        per_round = [ratio(p, c) for p, c in zip(rates["pump"], rates["cat"], strict=True)]
        rows = [[name, median(r), ratio(median(r), median(rates["cat"])), " ".join(f"{x:.0f}" for x in r)] for name, r in rates.items()]
        rep.tables.append(table(["pipeline", "MB/s", "x cat", "each round (MB/s)"], rows))
        if opts.sweep:
            sweep = []
            for chunk, pipe in ((1 << 16, 1 << 16), (1 << 18, 1 << 18), (1 << 18, 1 << 20), (1 << 20, 1 << 20)):
                secs = [pump_pipeline(corpus, values, chunk, pipe)[0] for _ in range(opts.rounds)]
                cats = [cat_pipeline(corpus) for _ in range(opts.rounds)]
                sweep.append([f"{chunk >> 10} KiB", f"{pipe >> 10} KiB", opts.size_mb / median(secs), ratio(median(cats), median(secs))])
            rep.tables.append(table(["read size", "pipe size", "pump MB/s", "x cat"], sweep))
        with open(corpus, "rb") as fh:
            sample = fh.read(opts.scan_mb * MB)
        rep.tables.append(scan_table(values, sample))
    if opts.rebuild_values:
        rep.tables.append(rebuild_table(opts.rebuild_values, opts.rotations, rnd))
    pump_over_cat = median(per_round)
    rep.targets.append(Target("mask: cat MB/s / pump MB/s (pump >= 0.5x cat)", ratio(1, pump_over_cat), 2.0, "bench_mask"))
    rep.notes.append(f"pump / cat per round: {', '.join(f'{r:.2f}' for r in per_round)}; median {pump_over_cat:.2f}")
    assert learned is not None
    hits = sum(sample.count(bytes([a])) for a in learned.anchors) / (len(sample) / (1 << 20))
    rep.notes.append(f"{carriers} lines carry a secret; the pump ended with {learned!r}: {hits:.0f} anchor bytes per MiB "
                     "of this text, each costing a memchr stop and a dict look-up in Python")
    rep.notes.append(f"{os.cpu_count()} cores; {load_line()} at the end")
    return rep


if __name__ == "__main__":
    stop_cleanly_on_signals()
    print(main().render())
