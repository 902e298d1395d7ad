"""Rotation through the real ``launcher run --watch`` with the ``file`` source.

Backend-specific checks (KV v2 metadata, Azure versions, leases) have their own
tests; these cover what the supervisor does with a change: restart, signal,
exit, debounce, the storm guard and outages.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import LAUNCHER, Running, launcher_env

WATCH = "watch: {enabled: true, interval: 100ms, debounce: 200ms, max_restarts: 5, restart_window: 1h}\n"


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
    run.wait_more_checks("dev://token", 10)
    # A change elsewhere in the file is a new file, but not a new value for TOKEN.
    write_secrets(tmp_path, token="v1", other="o2")
    run.wait_more_checks("dev://token", 10)
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
    run.wait_audit("rotation", bindings=["A"])  # ignore: recorded, child untouched
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
        run.wait_audit("check", ref="dev://token", version=str(i + 1))  # a file's versions count its changes
    starts = run.wait_events("start", 2)
    assert starts[1]["env"] == {"TOKEN": "v5"}
    run.wait_more_checks("dev://token", 10)
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
    run.wait_audit("rotation", 3)  # held: the storm guard allows 2 restarts
    write_secrets(tmp_path, token="v4")  # merged into the held change; logged once
    run.wait_audit("rotation", 4)
    assert len(run.events("start")) == 3
    assert run.log().count("restart held") == 1
    assert run.stop() == 0


def test_outage_keeps_the_child_and_a_later_rotation_is_picked_up(tmp_path: Path, launched: list[Running]) -> None:
    write_secrets(tmp_path, token="v1")
    run = Running(tmp_path, manifest("  TOKEN: dev://token\n"), ["TOKEN"])
    launched.append(run)
    run.wait_events("start", 1)
    os.unlink(tmp_path / "secrets.json")  # the backend is gone
    run.wait_audit("check", ref="dev://token", outcome="missing")
    ok = len(run.audit("check", ref="dev://token", outcome="ok"))
    write_secrets(tmp_path, token="v1")  # back, unchanged
    run.wait_audit("check", ok + 1, ref="dev://token", outcome="ok")
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
    run.wait_audit("check", ref="dev://flag", outcome="missing")
    write_secrets(tmp_path, token="v1", flag="on")
    assert run.wait_events("start", 2)[1]["env"] == {"FLAG": "on"}
    assert "is failing" not in run.log()
    assert run.stop() == 0
