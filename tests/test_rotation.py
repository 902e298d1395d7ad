"""Rotation through the real ``launcher run --watch`` with the ``file`` source.

Backend-specific checks (KV v2 metadata, Azure versions, leases) have their own
tests; these cover what the supervisor does with a change: restart, signal,
exit, debounce, the storm guard and outages.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import HELPERS_DIR, LAUNCHER, launcher_env, wait_for

WATCH = "watch: {enabled: true, interval: 100ms, debounce: 200ms, max_restarts: 5, restart_window: 1h}\n"


class Running:
    """One ``launcher run`` of record_env.py; stderr goes to a file we can poll."""

    def __init__(self, tmp: Path, manifest_text: str, names: list[str], args: tuple[str, ...] = ()) -> None:
        self.tmp = tmp
        self.out = tmp / "events.jsonl"
        self.err = tmp / "stderr.log"
        (tmp / "launcher.yaml").write_text(manifest_text)
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [LAUNCHER, "--log-level", "debug", "run", "-m", str(tmp / "launcher.yaml"), *args, "--",
                 sys.executable, str(HELPERS_DIR / "record_env.py"), str(self.out), *names],
                env=launcher_env(), stdout=subprocess.DEVNULL, stderr=err,
            )

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        lines = [json.loads(line) for line in self.out.read_text().splitlines() if line.endswith("}")]
        return [e for e in lines if kind is None or e["event"] == kind]

    def log(self) -> str:
        return self.err.read_text()

    def wait_events(self, kind: str, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        return wait_for(lambda: len(self.events(kind)) >= count and self.events(kind), timeout=timeout,
                        what=f"{count} {kind} event(s); log:\n{self.log()[-2000:]}")

    def wait_log(self, text: str, count: int = 1, timeout: float = 10) -> None:
        wait_for(lambda: self.log().count(text) >= count, timeout=timeout, what=f"{text!r} x{count} in the log")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[list[Running]]:
    runs: list[Running] = []
    yield runs
    for run in runs:
        run.proc.kill()
        run.proc.wait()


def write_secrets(tmp: Path, **values: str) -> None:
    """Rewrite the secrets file atomically, as a deploy tool would."""
    tmp_file = tmp / "secrets.json.tmp"
    tmp_file.write_text(json.dumps(values))
    os.replace(tmp_file, tmp / "secrets.json")


def manifest(env: str, watch: str = WATCH) -> str:
    return f"version: 1\nsources:\n  dev: {{type: file, path: ./secrets.json}}\nenv:\n{env}{watch}process: {{stop_timeout: 2s}}\n"


def test_rotation_restarts_the_child_with_the_new_value(tmp_path: Path, launched: list[Running]) -> None:
    write_secrets(tmp_path, token="v1", other="o1")
    run = Running(tmp_path, manifest("  TOKEN: dev://token\n"), ["TOKEN"])
    launched.append(run)
    first = run.wait_events("start", 1)[0]
    assert first["env"] == {"TOKEN": "v1"}
    write_secrets(tmp_path, token="v2", other="o1")
    second = run.wait_events("start", 2)[1]
    assert second["env"] == {"TOKEN": "v2"}
    assert second["pid"] != first["pid"]
    assert "v2" not in run.log() and "v1" not in run.log()
    assert run.stop() == 0


def test_no_change_means_no_restart(tmp_path: Path, launched: list[Running]) -> None:
    write_secrets(tmp_path, token="v1", other="o1")
    run = Running(tmp_path, manifest("  TOKEN: dev://token\n"), ["TOKEN"])
    launched.append(run)
    run.wait_events("start", 1)
    run.wait_log("checked dev://token: unchanged", count=10)
    # A change elsewhere in the file is a new file, but not a new value for TOKEN.
    write_secrets(tmp_path, token="v1", other="o2")
    run.wait_log("checked dev://token: unchanged", count=20)
    assert len(run.events("start")) == 1
    assert run.stop() == 0


def test_signal_rewrites_the_file_before_signalling_the_same_child(tmp_path: Path, launched: list[Running]) -> None:
    write_secrets(tmp_path, cert="CERT-1\n")
    env = "  CERT: {ref: dev://cert, file: true, on_change: signal}\n"
    run = Running(tmp_path, manifest(env), ["CERT"])
    launched.append(run)
    start = run.wait_events("start", 1)[0]
    assert Path(start["env"]["CERT"]).read_text() == "CERT-1\n"
    write_secrets(tmp_path, cert="CERT-2\n")
    hup = run.wait_events("SIGHUP", 1)[0]
    assert hup["files"] == {"CERT": "CERT-2\n"}
    assert hup["pid"] == start["pid"]
    assert len(run.events("start")) == 1
    assert run.stop() == 0


def test_exit_on_change_exits_75(tmp_path: Path, launched: list[Running]) -> None:
    write_secrets(tmp_path, token="v1")
    run = Running(tmp_path, manifest("  TOKEN: dev://token\n"), ["TOKEN"], args=("--on-change", "exit"))
    launched.append(run)
    run.wait_events("start", 1)
    write_secrets(tmp_path, token="v2")
    assert run.proc.wait(timeout=10) == 75


def test_strongest_per_binding_action_wins(tmp_path: Path, launched: list[Running]) -> None:
    write_secrets(tmp_path, a="a1", b="b1")
    env = "  A: {ref: dev://a, on_change: ignore}\n  B: {ref: dev://b, file: true, on_change: signal}\n"
    run = Running(tmp_path, manifest(env), ["A", "B"])
    launched.append(run)
    run.wait_events("start", 1)
    write_secrets(tmp_path, a="a2", b="b1")  # ignore: logged, child untouched
    run.wait_log("secrets changed: A (on_change: ignore)")
    write_secrets(tmp_path, a="a2", b="b2")  # signal
    run.wait_events("SIGHUP", 1)
    write_secrets(tmp_path, a="a3", b="b3")  # ignore + signal: signal wins
    run.wait_events("SIGHUP", 2)
    assert len(run.events("start")) == 1
    assert run.stop() == 0


def test_signal_on_a_plain_variable_falls_back_to_restart(tmp_path: Path, launched: list[Running]) -> None:
    write_secrets(tmp_path, token="v1")
    run = Running(tmp_path, manifest("  TOKEN: {ref: dev://token, on_change: signal}\n"), ["TOKEN"])
    launched.append(run)
    run.wait_events("start", 1)
    write_secrets(tmp_path, token="v2")
    assert run.wait_events("start", 2)[1]["env"] == {"TOKEN": "v2"}
    assert "not a file binding: restarting instead of signalling" in run.log()


def test_a_burst_within_the_debounce_gives_one_restart(tmp_path: Path, launched: list[Running]) -> None:
    write_secrets(tmp_path, token="v0")
    watch = "watch: {enabled: true, interval: 50ms, debounce: 1s}\n"
    run = Running(tmp_path, manifest("  TOKEN: dev://token\n", watch), ["TOKEN"])
    launched.append(run)
    run.wait_events("start", 1)
    for i in range(1, 6):  # each rotation is seen before the next, all inside the quiet period
        write_secrets(tmp_path, token=f"v{i}")
        run.wait_log("checked dev://token: new version", count=i)
    starts = run.wait_events("start", 2)
    assert starts[1]["env"] == {"TOKEN": "v5"}
    run.wait_log("checked dev://token: unchanged", count=run.log().count("checked dev://token: unchanged") + 10)
    assert len(run.events("start")) == 2
    assert run.stop() == 0


def test_storm_guard_holds_restarts_past_max_restarts(tmp_path: Path, launched: list[Running]) -> None:
    write_secrets(tmp_path, token="v0")
    watch = "watch: {enabled: true, interval: 50ms, debounce: 0s, max_restarts: 2, restart_window: 1h}\n"
    run = Running(tmp_path, manifest("  TOKEN: dev://token\n", watch), ["TOKEN"])
    launched.append(run)
    run.wait_events("start", 1)
    for i in (1, 2):
        write_secrets(tmp_path, token=f"v{i}")
        run.wait_events("start", i + 1)
    write_secrets(tmp_path, token="v3")
    run.wait_log("restart held: 2 restarts")
    write_secrets(tmp_path, token="v4")  # merged into the held change; logged once
    run.wait_log("checked dev://token: new version", count=4)
    assert len(run.events("start")) == 3
    assert run.log().count("restart held") == 1
    assert run.stop() == 0


def test_outage_keeps_the_child_and_a_later_rotation_is_picked_up(tmp_path: Path, launched: list[Running]) -> None:
    write_secrets(tmp_path, token="v1")
    run = Running(tmp_path, manifest("  TOKEN: dev://token\n"), ["TOKEN"])
    launched.append(run)
    run.wait_events("start", 1)
    os.unlink(tmp_path / "secrets.json")  # the backend is gone
    run.wait_log("is failing")
    write_secrets(tmp_path, token="v1")  # back, unchanged
    run.wait_log("is answering again")
    assert run.log().count("is failing") == 1
    assert len(run.events("start")) == 1 and run.proc.poll() is None
    write_secrets(tmp_path, token="v2")
    assert run.wait_events("start", 2)[1]["env"] == {"TOKEN": "v2"}
    assert run.stop() == 0


def test_on_error_exit_stops_with_the_errors_code(tmp_path: Path, launched: list[Running]) -> None:
    write_secrets(tmp_path, token="v1")
    watch = "watch: {enabled: true, interval: 100ms, on_error: exit}\n"
    run = Running(tmp_path, manifest("  TOKEN: dev://token\n", watch), ["TOKEN"])
    launched.append(run)
    run.wait_events("start", 1)
    os.unlink(tmp_path / "secrets.json")
    assert run.proc.wait(timeout=10) == 66


def test_child_exiting_on_its_own_ends_the_launcher_with_its_code(tmp_path: Path) -> None:
    write_secrets(tmp_path, token="v1")
    (tmp_path / "launcher.yaml").write_text(manifest("  TOKEN: dev://token\n"))
    done = subprocess.run([LAUNCHER, "run", "-m", str(tmp_path / "launcher.yaml"), "--", "sh", "-c", "exit 9"],
                          env=launcher_env(), capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 9, done.stderr


def test_check_shows_when_each_secret_is_next_checked(tmp_path: Path) -> None:
    write_secrets(tmp_path, token="v1")
    (tmp_path / "launcher.yaml").write_text(manifest("  TOKEN: dev://token\n  LITERAL: plain\n",
                                                     "watch: {enabled: true, interval: 30s}\n"))
    done = subprocess.run([LAUNCHER, "check", "-m", str(tmp_path / "launcher.yaml")],
                          env=launcher_env(), capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 0, done.stderr
    header, token, literal = done.stdout.splitlines()
    assert header.split()[-1] == "NEXT_CHECK"
    assert token.split() == ["TOKEN", "dev://token", token.split()[2], "ok", "~30s"]
    assert literal.rstrip().endswith("-")
    assert "v1" not in done.stdout


def test_a_default_whose_secret_appears_later_is_replaced(tmp_path: Path, launched: list[Running]) -> None:
    write_secrets(tmp_path, token="v1")
    run = Running(tmp_path, manifest("  FLAG: {ref: dev://flag, default: 'off'}\n"), ["FLAG"])
    launched.append(run)
    assert run.wait_events("start", 1)[0]["env"] == {"FLAG": "off"}
    run.wait_log("checked dev://flag: still missing")
    write_secrets(tmp_path, token="v1", flag="on")
    assert run.wait_events("start", 2)[1]["env"] == {"FLAG": "on"}
    assert "is failing" not in run.log()
    assert run.stop() == 0
