"""The hold rule (docs/guides/masking.md), and one pipe for one file: the stream masker, then the real `launcher run --mask`.

A start of a value of 4 characters or more is held until the bytes that decide
arrive, whatever the pause; a shorter start may be let through after 50 ms, and
then the rest of the value is concealed, so at most 3 characters of a value
ever appear. The children write their pieces with real pauses
(``tests/programs/write_pieces.py``).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from launcher.run.masking import CONCEALED, Masker, StreamMasker
from tests.helpers import HELPERS_DIR, LAUNCHER, launcher_env, wait_for

CANARY = "canary-Tq8ZvX3kLm9pWd7"
TOKEN = "tok-HOLD-8d2f6a91c3e5"
PIECES = str(HELPERS_DIR / "write_pieces.py")


# -- StreamMasker ---------------------------------------------------------------------------


def test_a_firm_start_stays_held_and_a_short_one_may_be_released() -> None:
    sm = StreamMasker(Masker([CANARY]))
    assert sm.feed(b"x " + CANARY[:4].encode()) == b"x "
    assert (sm.pending, sm.firm) == (4, True)  # 4 characters: the pump holds it for as long as it takes
    assert sm.feed(CANARY[4:].encode() + b"\n") == CONCEALED + b"\n"
    assert sm.feed(b"y " + CANARY[:3].encode()) == b"y "
    assert (sm.pending, sm.firm) == (3, False)  # 3 characters: the pump lets it through after 50 ms
    assert sm.release() == CANARY[:3].encode()
    assert sm.pending == 0
    assert sm.feed(CANARY[3:].encode() + b" c") == CONCEALED + b" "  # the rest of the value, concealed
    assert sm.flush() == b"c"


def test_non_ascii_starts_count_characters_not_bytes() -> None:
    value = "\u00e4\u00f6\u00fc\u00df-geheim"
    sm = StreamMasker(Masker([value]))
    assert sm.feed(value[:3].encode()) == b""
    assert (sm.pending, sm.firm) == (6, False)  # 6 bytes, 3 characters
    assert sm.feed(value[3:4].encode()) == b""
    assert sm.firm


def test_one_character_at_a_time_shows_at_most_three() -> None:
    """One character per write, each short start released (as after 50 ms): the fourth one is held for good."""
    sm = StreamMasker(Masker([CANARY]))
    out = []
    for char in CANARY:
        out.append(sm.feed(char.encode()))
        if sm.pending and not sm.firm:
            out.append(sm.release())
    out.append(sm.flush())
    assert b"".join(out) == CANARY[:3].encode() + CONCEALED


@settings(max_examples=300, deadline=None)
@given(st.text("ab\"\\\u00e9x", min_size=4, max_size=12), st.text("yz \n", max_size=6), st.text("yz \n", max_size=6),
       st.lists(st.integers(0, 40), max_size=8), st.lists(st.booleans(), max_size=10))
def test_releases_never_show_more_than_three_characters(value: str, before: str, after: str, cuts: list[int],
                                                        releases: list[bool]) -> None:
    masker = Masker([value])
    data = (before + value + after).encode()
    bounds = sorted({min(c, len(data)) for c in cuts})
    sm = StreamMasker(masker)
    out = []
    for i, (a, b) in enumerate(zip([0, *bounds], [*bounds, len(data)], strict=True)):
        out.append(sm.feed(data[a:b]))
        if sm.pending and not sm.firm and (releases[i] if i < len(releases) else True):
            out.append(sm.release())
    out.append(sm.flush())
    shown = b"".join(out)
    # The filler shares no character with the value: what shows is the filler, at most the
    # value's first 3 characters, <concealed>, the filler.
    m = re.fullmatch(re.escape(before.encode()) + b"(.*)" + re.escape(CONCEALED + after.encode()), shown, re.DOTALL)
    assert m is not None, shown
    shown_of_value = m.group(1)
    assert value.encode().startswith(shown_of_value)
    assert sum(1 for b in shown_of_value if not 0x80 <= b < 0xC0) <= 3  # characters begun (a release may split one)


# -- launcher run --mask, children writing with real pauses ----------------------------------------


def project(tmp: Path) -> None:
    (tmp / "secrets.json").write_text(f'{{"token": "{TOKEN}"}}')
    (tmp / "launcher.yaml").write_text("version: 1\nsources:\n  dev: {type: file, path: secrets.json}\nenv:\n  TOKEN: dev://token\n")


def run_pieces(tmp: Path, *steps: str) -> str:
    proc = subprocess.run([LAUNCHER, "run", "--mask", "--", sys.executable, PIECES, *steps], cwd=tmp, env=launcher_env(),
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode()


@pytest.mark.parametrize(
    "steps",
    [
        ("out:token={TOKEN[:10]}", "sleep:0.3", "out:{TOKEN[10:]}\n"),  # a long pause in the middle of a value
        ("out:token={TOKEN[:9]}", "sleep:0.055", "out:{TOKEN[9:]}\n"),  # two pieces 55 ms apart
        ("out:token={TOKEN[:5]}", "sleep:0.055", "out:{TOKEN[5:14]}", "sleep:0.2", "out:{TOKEN[14:]}\n"),
    ],
    ids=["pause-0.3s", "pieces-55ms", "three-pieces"],
)
def test_a_value_split_by_pauses_is_concealed_whole(tmp_path: Path, steps: tuple[str, ...]) -> None:
    project(tmp_path)
    assert run_pieces(tmp_path, *steps) == "token=<concealed>\n"


@pytest.mark.parametrize("pause", [0.1, 0.003, 0.06])
def test_one_character_at_a_time_shows_at_most_three_characters(tmp_path: Path, pause: float) -> None:
    project(tmp_path)
    out = run_pieces(tmp_path, "out:[", f"chars:TOKEN:{pause}", "out:]\n")
    m = re.fullmatch(r"\[(.{0,3})<concealed>\]\n", out)
    assert m is not None and TOKEN.startswith(m.group(1)), out


def test_a_prompt_without_newline_is_shown_while_the_child_waits(tmp_path: Path) -> None:
    project(tmp_path)
    out = tmp_path / "out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen([LAUNCHER, "run", "--mask", "--", sys.executable, PIECES, "out:Password: ", "sleep:60"], cwd=tmp_path,
                                env=launcher_env(), stdout=fh, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: out.read_bytes() == b"Password: ", timeout=5, what="the prompt, while the child still runs")
            assert proc.poll() is None
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)


def test_stdout_and_stderr_to_one_file_share_one_pipe_and_keep_their_order(tmp_path: Path) -> None:
    project(tmp_path)
    out = tmp_path / "out"
    with open(out, "wb") as fh:  # one open file for both, as `>out 2>&1` gives
        proc = subprocess.run([LAUNCHER, "run", "--mask", "--", sys.executable, PIECES, "same", "lines:20000"], cwd=tmp_path,
                              env=launcher_env(), stdout=fh, stderr=fh, timeout=120, check=False)
    assert proc.returncode == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "same"
    assert lines[1:] == [f"line {i} <concealed>" for i in range(20000)]


def test_a_pipe_for_both_is_one_pipe_and_separate_files_are_two(tmp_path: Path) -> None:
    project(tmp_path)
    both = subprocess.run([LAUNCHER, "run", "--mask", "--", sys.executable, PIECES, "same", "err:{TOKEN}\n"], cwd=tmp_path,
                          env=launcher_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60, check=False)
    assert both.stdout == b"same\n<concealed>\n"
    apart = subprocess.run([LAUNCHER, "run", "--mask", "--", sys.executable, PIECES, "same", "err:{TOKEN}\n"], cwd=tmp_path,
                           env=launcher_env(), capture_output=True, timeout=60, check=False)
    assert (apart.stdout, apart.stderr) == (b"different\n", b"<concealed>\n")
