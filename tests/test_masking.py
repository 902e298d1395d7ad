"""Output masking: the matcher (tables, a brute-force oracle), the stream masker, the pump on real pipes."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from launcher.run.mask_anchors import GREEDY_MAX
from launcher.run.masking import CONCEALED, LATENCY, PRIOR, Masker, StreamMasker, secret_patterns
from launcher.run.pump import OutputPump, make_pipe
from tests.helpers import Sink, wait_for

CANARY = "canary-Tq8ZvX3kLm9pWd7"
OTHER = "other-JfR2yH6nBc4sKe1"
PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
    "BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "-----END PRIVATE KEY-----\n"
)


def oracle(data: bytes, patterns: tuple[bytes, ...]) -> bytes:
    """The masking rule, brute force: every occurrence of every pattern; overlapping ones form one run."""
    return concealed(data, [(i, i + len(p)) for p in patterns for i in range(len(data)) if data.startswith(p, i)])


def concealed(data: bytes, spans: list[tuple[int, int]]) -> bytes:
    """``data`` with each run of overlapping ``spans`` (start, end) replaced by CONCEALED."""
    out, pos, cover = [], 0, 0
    for start, end in sorted(spans):
        if start >= cover:
            out += [data[pos:start], CONCEALED]
        cover = max(cover, end)
        pos = cover
    out.append(data[pos:])
    return b"".join(out)


def stream(masker: Masker, chunks: list[bytes]) -> bytes:
    """What a StreamMasker emits for ``chunks``, then its flush."""
    sm = StreamMasker(masker)
    out = [sm.feed(chunk) for chunk in chunks]
    return b"".join([*out, sm.flush()])


# -- Masker: tables --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "data", "expected"),
    [
        (["hunter2hunter2"], b"pw=hunter2hunter2!", b"pw=<concealed>!"),
        (["abcd"], b"abcd abcd", b"<concealed> <concealed>"),
        (["abcd"], b"abcdabcd", b"<concealed><concealed>"),  # touching: two runs
        (["abcd", "abcdefgh"], b"[abcdefgh]", b"[<concealed>]"),  # one value contains the other
        (["abcdefgh", "abcd"], b"[abcdefg]", b"[<concealed>efg]"),
        (["abcdef", "defghi"], b"abcdefghi", b"<concealed>"),  # overlapping: their union
        (["xxabcd", "abcdef"], b"-xxabcdef-", b"-<concealed>-"),
        (["abc"], b"abc abc", b"abc abc"),  # shorter than 4 characters
        (["    "], b"a    b", b"a    b"),  # only whitespace
        (["p\u00e4ssw\u00f6rd"], "x p\u00e4ssw\u00f6rd y".encode(), b"x <concealed> y"),
        (["p\u00e4ssw\u00f6rd"], b'{"p": "p\\u00e4ssw\\u00f6rd"}', b'{"p": "<concealed>"}'),  # JSON, ensure_ascii
        (["\u5bc6\u7801"], "\u5bc6\u7801".encode(), "\u5bc6\u7801".encode()),  # 2 characters, 6 bytes
        (["\u30d1\u30b9\u30ef\u30fc\u30c9"], "[\u30d1\u30b9\u30ef\u30fc\u30c9]".encode(), b"[<concealed>]"),
        (['pa"ss\\word'], b'{"v": "pa\\"ss\\\\word"}', b'{"v": "<concealed>"}'),  # JSON: quote, backslash
        (['pa"ss\\word'], b'raw pa"ss\\word', b"raw <concealed>"),
        (["one-line\ntwo-line"], b'"one-line\\ntwo-line"', b'"<concealed>"'),  # JSON: newline
        (["old-value-1", "new-value-2"], b"old-value-1 new-value-2", b"<concealed> <concealed>"),  # both versions
        (["\udcff\udcfeabcd"], b"\xff\xfeabcd!", b"<concealed>!"),  # surrogateescape
        (["tab\there"], b"tab\\there tab\there", b"<concealed> <concealed>"),
        (["\u00c4rger"], b'"\\u00c4rger" "\\u00C4rger"', b'"<concealed>" "<concealed>"'),  # both cases of hex
        (["a<b>&c"], b'"a\\u003cb\\u003e\\u0026c"', b'"<concealed>"'),  # Go's HTML-safe escapes
        (["https://x.example/p"], b'{"u":"https:\\/\\/x.example\\/p"}', b'{"u":"<concealed>"}'),  # PHP's \/
        (["line\u2028sep"], b'"line\\u2028sep"', b'"<concealed>"'),  # Go escapes U+2028 even with raw UTF-8
        (["back\\u00e9slash"], b"back\\\\u00e9slash", b"<concealed>"),  # an escaped backslash is not a \u escape
        ([], b"anything at all", b"anything at all"),
        (["abcd"], b"", b""),
    ],
)
def test_mask_table(values: list[str], data: bytes, expected: bytes) -> None:
    assert Masker(values).mask(data) == expected


def test_pem_is_masked_whole_and_line_by_line() -> None:
    masker = Masker([PEM])
    assert masker.mask(PEM.encode()) == b"<concealed>"
    assert masker.mask(json.dumps({"key": PEM}).encode()) == b'{"key": "<concealed>"}'
    # One line printed alone, or re-indented, or with CRLF endings.
    assert masker.mask(b"line: BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n") == b"line: <concealed>\n"
    assert masker.mask(b"    MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\r\n") == b"    <concealed>\r\n"
    assert masker.mask(PEM.replace("\n", "\r\n").encode()) == b"<concealed>\r\n" * 4


def test_secret_patterns() -> None:
    assert secret_patterns(["ab\ncdef", "xyz"]) == [b"ab\\ncdef", b"ab\ncdef", b"cdef"]
    assert secret_patterns(["  padded line  \nxy"]) == [b"  padded line  \\nxy", b"  padded line  \nxy", b"padded line"]
    assert secret_patterns(["caf\u00e9"]) == [b"caf\\u00E9", b"caf\\u00e9", "caf\u00e9".encode()]
    # Go's HTML-safe escapes and PHP's escaped slash, each with either case of hex digits.
    assert set(secret_patterns(["a<b/c"])) == {b"a<b/c", b"a<b\\/c", b"a\\u003cb/c", b"a\\u003Cb/c", b"a\\u003cb\\/c",
                                               b"a\\u003Cb\\/c"}
    assert secret_patterns(["plain-token-1"]) == [b"plain-token-1"]  # written the same by every encoder
    assert b"back\\\\u00E9slash" not in secret_patterns(["back\\u00e9slash"])  # a backslash, then text: no \u escape


def test_max_len_and_patterns_longest_first() -> None:
    masker = Masker(["abcd", 'q"uote'])
    assert masker.patterns == (b'q\\"uote', b'q"uote', b"abcd")
    assert masker.max_len == 7
    assert Masker().max_len == 0


# -- Masker and StreamMasker: properties --------------------------------------------------

_ALPHABET = "ab\n\"\\\u00e9x"


@st.composite
def values_and_data(draw: st.DrawFn) -> tuple[list[str], bytes]:
    values = draw(st.lists(st.text(_ALPHABET, min_size=3, max_size=12), min_size=1, max_size=5))
    patterns = secret_patterns(values)
    pieces = []
    for _ in range(draw(st.integers(0, 10))):
        if patterns and draw(st.booleans()):
            p = draw(st.sampled_from(patterns))
            cut = draw(st.integers(0, len(p)))
            pieces.append(p if draw(st.booleans()) else p[cut:] if draw(st.booleans()) else p[:cut])
        else:
            pieces.append(draw(st.text(_ALPHABET + "yz ", max_size=8)).encode())
    return values, b"".join(pieces)


@settings(max_examples=300, deadline=None)
@given(values_and_data(), st.lists(st.integers(0, 200), max_size=8), st.randoms(use_true_random=False))
def test_mask_and_stream_match_the_oracle(case: tuple[list[str], bytes], cuts: list[int], rnd: random.Random) -> None:
    values, data = case
    masker = Masker(values)
    expected = oracle(data, masker.patterns)
    assert masker.mask(data) == expected
    # Anchors only steer the search: any byte frequencies mask the same.
    assert Masker(values, [rnd.random() for _ in range(256)]).mask(data) == expected
    bounds = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *bounds], [*bounds, len(data)], strict=True)]
    assert stream(masker, chunks) == expected


def test_stream_split_at_every_boundary() -> None:
    quoted = 'json "quoted" value'
    masker = Masker([CANARY, quoted])
    data = f"start {CANARY} mid {json.dumps(quoted)} {CANARY[:9]} {CANARY}".encode()
    expected = masker.mask(data)
    assert data.count(b"<concealed>") == 0 and expected.count(b"<concealed>") == 3
    for i in range(len(data) + 1):
        assert stream(masker, [data[:i], data[i:]]) == expected, i
    first = data.index(CANARY.encode())
    span = range(first - 1, first + len(CANARY) + 2)
    for i in span:
        for j in span:
            if i <= j:
                assert stream(masker, [data[:i], data[i:j], data[j:]]) == expected, (i, j)
    assert stream(masker, [data[i:i + 1] for i in range(len(data))]) == expected


def test_stream_split_long_values_at_every_boundary() -> None:
    """Values longer than the prefix set covers (a PEM key, a long token) are held back through another path."""
    long_token = "tok-" + "Zq7Xw2Lm" * 12
    masker = Masker([PEM, long_token])
    assert masker.max_len > 100
    data = f"a {PEM}b {long_token[:-1]} c {long_token}{PEM[:60]}".encode()
    expected = masker.mask(data)
    # The PEM's first two lines, printed alone, are masked line by line; a long token cut short is not masked.
    assert expected == f"a <concealed>b {long_token[:-1]} c <concealed><concealed>\n<concealed>".encode()
    for i in range(len(data) + 1):
        assert stream(masker, [data[:i], data[i:]]) == expected, i


def test_many_values_take_the_one_pass_anchors_and_mask_the_same() -> None:
    """Past GREEDY_MAX patterns the anchors come from one pass, and past _FEW_LONG long ones every
    position is tried for a held tail: what is masked, whole or split, stays the same."""
    rnd = random.Random(11)
    short = ["".join(rnd.choice("abcdefgXYZ-") for _ in range(rnd.randint(4, 14))) for _ in range(GREEDY_MAX + 300)]
    long = ["L" + "".join(rnd.choice("abcdefgXYZ-") for _ in range(rnd.randint(50, 70))) for _ in range(100)]
    masker = Masker(short + long)
    assert len(masker.patterns) > GREEDY_MAX and masker._long is None
    pieces = [rnd.choice(short + long) if rnd.random() < 0.2 else "".join(rnd.choice("abcdefg hXYZ-\n") for _ in range(30))
              for _ in range(300)]
    data = "".join(pieces).encode()
    expected = fast_oracle(data, masker.patterns)
    assert masker.mask(data) == expected
    assert stream(masker, [data[i:i + 97] for i in range(0, len(data), 97)]) == expected
    assert stream(masker, [data[i:i + 1] for i in range(0, 4000)]) == fast_oracle(data[:4000], masker.patterns)


def fast_oracle(data: bytes, patterns: tuple[bytes, ...]) -> bytes:
    """``oracle`` with ``bytes.find`` instead of a test at every position, for thousands of patterns."""
    spans = []
    for p in patterns:
        at = data.find(p)
        while at >= 0:
            spans.append((at, at + len(p)))
            at = data.find(p, at + 1)
    return concealed(data, spans)


def test_stream_holds_back_only_a_pattern_prefix() -> None:
    masker = Masker([CANARY])
    sm = StreamMasker(masker)
    assert sm.feed(b"plain line\n") == b"plain line\n"
    assert sm.pending == 0
    assert sm.feed(b"then " + CANARY[:7].encode()) == b"then "
    assert sm.pending == 7 < masker.max_len
    assert sm.feed(CANARY[7:].encode() + b" and c") == b"<concealed> and "
    assert sm.pending == 1  # "c" may begin the value again
    assert sm.flush() == b"c"
    assert sm.pending == 0


def test_stream_update_keeps_held_bytes() -> None:
    sm = StreamMasker(Masker([CANARY]))
    assert sm.feed(b"x " + OTHER[:5].encode()) == b"x " + OTHER[:5].encode()  # not a prefix yet: emitted
    assert sm.feed(b" " + CANARY[:6].encode()) == b" "
    sm.update(Masker([CANARY, OTHER]))
    assert sm.feed(CANARY[6:].encode() + b" " + OTHER.encode() + b"\n") == b"<concealed> <concealed>\n"


def test_dense_output_matches_the_oracle() -> None:
    """A chunk crowded with anchor bytes takes the regex path; it must mask exactly the same."""
    rnd = random.Random(7)
    values = ["abxab", "xxba", "b\"ax", "aaaax"]
    masker = Masker(values)
    data = "".join(rnd.choice("abx\" ") for _ in range(20000)).encode()
    assert sum(data.count(a) for a in masker.anchors) > len(data) // 10  # far past the dense threshold
    expected = oracle(data, masker.patterns)
    assert masker.mask(data) == expected
    assert stream(masker, [data[i:i + 777] for i in range(0, len(data), 777)]) == expected


def test_stream_reanchors_on_its_output() -> None:
    """Output full of the bytes the prior calls rare: after a sample the stream picks other anchors."""
    rnd = random.Random(3)
    values = ["".join(rnd.choice("QZJXqzabcdefgh") for _ in range(24)) for _ in range(20)]
    masker = Masker(values)
    lines = ["".join(rnd.choice("QZJXqz  ") for _ in range(70)) for _ in range(200)]
    text = "\n".join(line + (f" {rnd.choice(values)}" if i % 7 == 0 else "") for i, line in enumerate(lines * 160)).encode()
    assert len(text) > 2 << 20
    sm = StreamMasker(masker)
    out = b"".join([*(sm.feed(text[i:i + 65536]) for i in range(0, len(text), 65536)), sm.flush()])
    assert sm.masker.anchors != masker.anchors
    assert sm.masker.cost(_frequencies(text)) < masker.cost(_frequencies(text))
    assert out == masker.mask(text)
    assert not any(v.encode() in out for v in values)


def _frequencies(data: bytes) -> list[float]:
    return [(data.count(bytes([b])) + PRIOR[b]) / len(data) for b in range(256)]


# -- OutputPump: real pipes and threads ------------------------------------------------------


def unread(fd: int) -> int:
    """Bytes waiting in a pipe."""
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)


def writer(path: Path, write_end: int, script: str, *args: str) -> subprocess.Popen[bytes]:
    """A Python child whose stdout is ``write_end`` (closed here once the child has it)."""
    path.write_text(script)
    proc = subprocess.Popen([sys.executable, str(path), *args], stdout=write_end)
    os.close(write_end)
    return proc


def test_split_values_never_reach_the_destination(sink: Sink) -> None:
    masker = Masker([CANARY, OTHER])
    read_end, write_end = make_pipe()
    pump = OutputPump(read_end, sink.fd, masker, latency=60.0)  # here the quiet flush must not interfere
    pump.start()
    text = f"one {CANARY} two {OTHER}{CANARY} three {json.dumps(CANARY)}\n".encode()
    rnd = random.Random(1)
    cuts = sorted(rnd.sample(range(1, len(text)), 12))
    for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True):
        os.write(write_end, text[a:b])
        wait_for(lambda: unread(read_end) == 0, what="the pump to read the piece")
    os.close(write_end)
    pump.finish(5.0)
    pump.close()
    out = sink.close()
    assert out == masker.mask(text) == b'one <concealed> two <concealed><concealed> three "<concealed>"\n'


def test_subprocess_with_pauses_order_and_tail(tmp_path: Path, sink: Sink) -> None:
    masker = Masker([CANARY, OTHER])
    read_end, write_end = make_pipe()
    pump = OutputPump(read_end, sink.fd, masker, latency=60.0)
    pump.start()
    script = (
        "import sys, time\n"
        "out = sys.stdout.buffer\n"
        "canary, other = sys.argv[1].encode(), sys.argv[2].encode()\n"
        "for i in range(3000):\n"
        "    line = b'line %d %s %s\\n' % (i, canary if i % 3 == 0 else b'-', other if i % 5 == 0 else b'-')\n"
        "    if i % 500 == 0:\n"
        "        cut = i % len(line)\n"
        "        out.write(line[:cut]); out.flush(); time.sleep(0.002); out.write(line[cut:])\n"
        "    else:\n"
        "        out.write(line)\n"
        "out.write(b'last line without newline ' + canary[:8]); out.flush()\n"
    )
    proc = writer(tmp_path / "w.py", write_end, script, CANARY, OTHER)
    assert proc.wait(timeout=60) == 0
    pump.finish(5.0)
    pump.close()
    out = sink.close()
    lines = out.split(b"\n")
    assert len(lines) == 3001
    for i, line in enumerate(lines[:-1]):
        assert line == b"line %d %s %s" % (i, b"<concealed>" if i % 3 == 0 else b"-", b"<concealed>" if i % 5 == 0 else b"-")
    assert lines[-1] == b"last line without newline " + CANARY[:8].encode()


def test_ten_megabytes_just_before_exit_all_arrive(tmp_path: Path, sink: Sink) -> None:
    masker = Masker([CANARY, PEM])
    rnd = random.Random(5)
    lines = [f"{i} {'x' * rnd.randint(0, 120)} {CANARY if i % 97 == 0 else ''}\n" for i in range(80000)]
    body = ("".join(lines) + PEM).encode()
    body += b"y" * (10_000_000 - len(body)) + b"end " + CANARY.encode()  # no newline at the very end
    (tmp_path / "body").write_bytes(body)
    read_end, write_end = make_pipe()
    pump = OutputPump(read_end, sink.fd, masker, latency=60.0)  # a stalled cat must not cause a quiet flush
    pump.start()
    proc = subprocess.Popen(["cat", str(tmp_path / "body")], stdout=write_end)
    os.close(write_end)
    assert proc.wait(timeout=60) == 0
    pump.finish(5.0)
    pump.close()
    out = sink.close()
    assert out == masker.mask(body)
    assert out.endswith(b"yyyyend <concealed>")
    assert CANARY.encode() not in out and b"MIIEvQ" not in out


def test_latency_of_a_lone_line(sink: Sink) -> None:
    """A finished line passes at once; a line ending like a short start of a value (3 characters) is let through after 50 ms."""
    masker = Masker([CANARY])
    read_end, write_end = make_pipe()
    pump = OutputPump(read_end, sink.fd, masker)
    pump.start()
    plain, held = [], []
    for i in range(20):
        for kind, line in ((plain, b"plain %d\n" % i), (held, b"held %d " % i + CANARY[:3].encode())):
            before = len(sink.data)
            sent = time.monotonic()
            os.write(write_end, line)
            wait_for(lambda before=before, line=line: len(sink.data) >= before + len(line), interval=0.0005, what="the line")
            kind.append(sink.pieces[-1][0] - sent)
    os.close(write_end)
    pump.finish(5.0)
    pump.close()
    sink.close()
    print(f"\nlatency: plain lines median {statistics.median(plain) * 1000:.2f} ms, max {max(plain) * 1000:.2f} ms; "
          f"held tails median {statistics.median(held) * 1000:.1f} ms (bound {LATENCY * 1000:.0f} ms)")
    assert statistics.median(plain) < 0.2
    assert LATENCY * 0.9 <= statistics.median(held) < LATENCY + 0.2


def test_update_masks_the_new_value_from_then_on(sink: Sink) -> None:
    read_end, write_end = make_pipe()
    pump = OutputPump(read_end, sink.fd, Masker([CANARY]))
    pump.start()
    os.write(write_end, f"before {OTHER} {CANARY}\n".encode())
    wait_for(lambda: sink.data.endswith(b"\n"), what="the first line")
    pump.update(Masker([CANARY, OTHER]))
    os.write(write_end, f"after {OTHER}\n".encode())
    os.close(write_end)
    pump.finish(5.0)
    pump.close()
    assert sink.close() == f"before {OTHER} <concealed>\nafter <concealed>\n".encode()
    assert OTHER.encode() in pump.masker.patterns


def test_destination_gone_never_blocks_the_writer(tmp_path: Path) -> None:
    dest_read, dest_write = os.pipe()
    os.close(dest_read)  # EPIPE from the first write on
    read_end, write_end = make_pipe()
    pump = OutputPump(read_end, dest_write, Masker([CANARY]))
    pump.start()
    proc = writer(tmp_path / "w.py", write_end, "import sys\nsys.stdout.buffer.write(b'z' * 5_000_000)\n")
    assert proc.wait(timeout=60) == 0  # it wrote 5 MB into a pipe nobody could write on
    pump.finish(5.0)
    pump.close()
    os.close(dest_write)
    assert pump.dropped == 5_000_000


def test_non_blocking_destination_waits_for_room(sink: Sink) -> None:
    os.set_blocking(sink.fd, False)
    body = b"".join(b"%08d %s\n" % (i, CANARY.encode() if i % 10 == 0 else b"") for i in range(300000))
    read_end, write_end = make_pipe()
    pump = OutputPump(read_end, sink.fd, Masker([CANARY]), latency=60.0)
    pump.start()
    feeder = threading.Thread(target=lambda: (os.write(write_end, body), os.close(write_end)))
    feeder.start()
    feeder.join(timeout=60)
    pump.finish(5.0)
    pump.close()
    assert sink.close() == Masker([CANARY]).mask(body)


def test_finish_stops_when_a_grandchild_keeps_the_pipe_open(sink: Sink) -> None:
    read_end, write_end = make_pipe()  # write_end stays open: a grandchild still holds it
    pump = OutputPump(read_end, sink.fd, Masker([CANARY]))
    pump.start()
    os.write(write_end, b"from the child " + CANARY[:4].encode())
    started = time.monotonic()
    pump.finish(0.2)
    elapsed = time.monotonic() - started
    pump.close()
    os.close(write_end)
    assert 0.2 <= elapsed < 5
    assert sink.close() == b"from the child " + CANARY[:4].encode()


def test_finish_limit_bounds_a_writer_that_never_pauses(sink: Sink) -> None:
    read_end, write_end = make_pipe()
    os.set_blocking(write_end, False)
    stop = threading.Event()

    def chatter() -> None:
        while not stop.is_set():
            try:
                os.write(write_end, b"chatter\n")
            except BlockingIOError:
                stop.wait(0.001)

    thread = threading.Thread(target=chatter)
    thread.start()
    pump = OutputPump(read_end, sink.fd, Masker([CANARY]))
    pump.start()
    try:
        wait_for(lambda: len(sink.data) > 1000, what="chatter")
        started = time.monotonic()
        pump.finish(timeout=5.0, limit=0.3)
        assert time.monotonic() - started < 4
    finally:
        stop.set()
        thread.join(timeout=10)
        pump.close()
        os.close(write_end)
    assert set(sink.close().split(b"\n")[:-1]) == {b"chatter"}


def test_pump_thread_blocks_every_signal(sink: Sink) -> None:
    read_end, write_end = make_pipe()
    pump = OutputPump(read_end, sink.fd, Masker([CANARY]), name="stderr")
    pump.start()
    thread = next(t for t in threading.enumerate() if t.name == "mask-stderr")
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    blocked = int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)
    assert blocked & (1 << (15 - 1)) and blocked & (1 << (2 - 1))  # SIGTERM, SIGINT
    os.close(write_end)
    pump.finish(5.0)
    pump.close()


def test_close_without_finish_closes_the_read_end(sink: Sink) -> None:
    read_end, write_end = make_pipe()
    pump = OutputPump(read_end, sink.fd, Masker([CANARY]))
    pump.start()
    os.write(write_end, b"some output\n")
    pump.close()
    pump.close()  # idempotent
    with pytest.raises(OSError):
        os.fstat(read_end)
    os.close(write_end)
    assert sink.close() == b"some output\n"


class _Broken(Masker):
    def conceal(self, *args: object, **kwargs: object) -> tuple[list[bytes | memoryview], int]:
        raise RuntimeError("bug")


def test_a_masking_failure_drops_output_and_keeps_draining(tmp_path: Path, sink: Sink, caplog: pytest.LogCaptureFixture) -> None:
    read_end, write_end = make_pipe()
    pump = OutputPump(read_end, sink.fd, _Broken([CANARY]))
    pump.start()
    with caplog.at_level(logging.ERROR, logger="launcher.run.pump"):
        proc = writer(tmp_path / "w.py", write_end, f"import sys\nsys.stdout.buffer.write(b'{CANARY} ' * 200_000)\n")
        assert proc.wait(timeout=60) == 0
        pump.finish(5.0)
    pump.close()
    assert sink.close() == b""
    assert pump.dropped == 200_000 * (len(CANARY) + 1)
    assert "masking the child's output failed" in caplog.text


def test_make_pipe() -> None:
    read_end, write_end = make_pipe(1 << 18)
    try:
        assert fcntl.fcntl(read_end, fcntl.F_GETPIPE_SZ) >= 1 << 18
        assert not os.get_inheritable(read_end) and not os.get_inheritable(write_end)
    finally:
        os.close(read_end)
        os.close(write_end)
