"""What tini and dumb-init guarantee, checked on `launcher run` (docs/reference/supervision.md).

Written from the behaviours their own test suites check: a signal the parent left
blocked is still received, the child starts with the launcher's inherited signal
mask and ignored signals, a fault signal another process sends is forwarded (and
the launcher survives it), a stopped child stops the launcher with or without a
terminal, and a plain run prints nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import HELPERS_DIR, LAUNCHER, launcher_env, wait_for

PRINT_SIGNALS = str(HELPERS_DIR / "print_signals.py")

# A parent that starts the launcher with some signals blocked and others ignored, as some
# process managers do: argv = BLOCKED IGNORED LAUNCHER-ARGS... (signal numbers, comma-separated).
PARENT = r"""
import os, signal, sys
blocked, ignored = ([int(n) for n in a.split(",") if n] for a in sys.argv[1:3])
for sig in ignored:
    signal.signal(sig, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
os.execv(sys.argv[3], sys.argv[3:])
"""


def start(tmp_path: Path, command: list[str], blocked: tuple[int, ...] = (), ignored: tuple[int, ...] = ()) -> subprocess.Popen[str]:
    (tmp_path / "launcher.yaml").write_text("version: 1\n")
    argv = [sys.executable, "-c", PARENT, ",".join(map(str, blocked)), ",".join(map(str, ignored)), LAUNCHER, "run", "--", *command]
    with open(tmp_path / "stdout", "w") as out, open(tmp_path / "stderr", "w") as err:
        return subprocess.Popen(argv, cwd=tmp_path, env=launcher_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err, text=True)


def output(tmp_path: Path) -> tuple[str, str]:
    return (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()


def signals_seen(out: Path) -> list[str]:
    return out.read_text().split() if out.exists() else []


def state_of(pid: int) -> str:
    """The one-letter process state from /proc (R, S, T, Z...)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.parametrize("blocked", [(signal.SIGTERM,), (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)])
def test_a_signal_the_parent_blocked_still_reaches_the_child(tmp_path: Path, blocked: tuple[int, ...]) -> None:
    out = tmp_path / "signals"
    proc = start(tmp_path, [sys.executable, PRINT_SIGNALS, str(out), "7"], blocked=blocked)
    try:
        wait_for(lambda: (tmp_path / "signals.ready").exists(), what="the child's handlers")
        for sig in blocked[1:]:
            proc.send_signal(sig)
            wait_for(lambda sig=sig: signal.Signals(sig).name in signals_seen(out), what=f"{signal.Signals(sig).name} forwarded")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 7, output(tmp_path)
        assert signals_seen(out)[-1] == "SIGTERM"
    finally:
        proc.kill()
        proc.wait()


def _bits(status: str, field: str) -> set[int]:
    line = next(ln for ln in status.splitlines() if ln.startswith(field + ":"))
    mask = int(line.split()[1], 16)
    return {n for n in range(1, 65) if mask & (1 << (n - 1))}


def test_the_child_starts_with_the_inherited_mask_and_ignored_signals(tmp_path: Path) -> None:
    """tini's sigconf case: what the launcher inherited blocked or ignored, its child does too; nothing else."""
    blocked = (signal.SIGUSR1, signal.SIGWINCH)
    ignored = (signal.SIGTTOU, signal.SIGUSR2)
    proc = start(tmp_path, ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"], blocked=blocked, ignored=ignored)
    assert proc.wait(timeout=30) == 0, output(tmp_path)
    stdout, _ = output(tmp_path)
    assert _bits(stdout, "SigBlk") == set(blocked)
    assert _bits(stdout, "SigIgn") == set(ignored)  # SIGPIPE/SIGXFSZ (Python's own) back at the default


def test_exec_starts_the_command_without_pythons_ignored_signals(tmp_path: Path) -> None:
    (tmp_path / "launcher.yaml").write_text("version: 1\n")
    proc = subprocess.run([LAUNCHER, "exec", "--", "grep", "-E", "^SigIgn", "/proc/self/status"], cwd=tmp_path,
                          env=launcher_env(), capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert signal.SIGPIPE not in _bits(proc.stdout, "SigIgn") and signal.SIGXFSZ not in _bits(proc.stdout, "SigIgn")


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGBUS, signal.SIGPIPE, signal.SIGILL, signal.SIGFPE, signal.SIGABRT])
def test_a_fault_signal_sent_to_the_launcher_is_forwarded_and_survived(tmp_path: Path, sig: signal.Signals) -> None:
    """dumb-init's case: a fault signal another process sent is not the launcher's own fault."""
    out = tmp_path / "signals"
    proc = start(tmp_path, [sys.executable, PRINT_SIGNALS, str(out), "3"])
    try:
        wait_for(lambda: (tmp_path / "signals.ready").exists(), what="the child's handlers")
        proc.send_signal(sig)
        wait_for(lambda: sig.name in signals_seen(out), what=f"{sig.name} forwarded")
        assert proc.poll() is None, "the launcher survived"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 3
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("how", ["TSTP to the launcher", "STOP to the child"])
def test_a_stopped_child_stops_the_launcher_without_a_terminal(tmp_path: Path, how: str) -> None:
    proc = start(tmp_path, ["sleep", "600"])
    try:
        import psutil

        started = wait_for(lambda: psutil.Process(proc.pid).children(), what="the child")[0]
        # Stopped before its exec, the child is not yet the command (the launcher is still waiting
        # to learn whether the exec worked): the case here is the command itself stopping.
        wait_for(lambda: started.name() == "sleep", what="the child to exec sleep")
        child = started.pid
        if how == "TSTP to the launcher":
            proc.send_signal(signal.SIGTSTP)  # forwarded; sleep stops on it
        else:
            os.kill(child, signal.SIGSTOP)
        wait_for(lambda: state_of(child) == "T", what="the child stopped")
        wait_for(lambda: state_of(proc.pid) == "T", what="the launcher stopped too, so its parent sees the job stop")
        proc.send_signal(signal.SIGCONT)
        wait_for(lambda: state_of(proc.pid) != "T" and state_of(child) != "T", what="SIGCONT resuming both")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()


def test_a_plain_run_prints_nothing(tmp_path: Path) -> None:
    proc = start(tmp_path, ["true"])
    assert proc.wait(timeout=30) == 0
    assert output(tmp_path) == ("", "")
