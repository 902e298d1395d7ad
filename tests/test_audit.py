"""The audit trail: JSON lines appended with one write each, never a value (docs/operations/audit.md).

Unit tests drive ``AuditLog`` directly (fields, mode, a failing disk, many
writers at once); the rest run the installed ``launcher`` against the file
source and a real OpenBao, and read the trail the way an operator would.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from launcher.errors import ManifestError
from launcher.events import Event
from launcher.observe.audit import AuditLog
from tests.helpers import LAUNCHER, launcher_env, run_launcher, wait_for
from tests.openbao import OpenBao, write_kv2

CANARY = "canary-a11d7e-never-audit-me"
FIELDS = {"time", "event", "source", "ref", "version", "bindings", "outcome", "pid", "child_pid", "host", "user", "reason",
          "expires_at"}


def lines(path: Path) -> list[dict[str, Any]]:
    """Every line of the trail, parsed: a line that is not one whole JSON object fails the test."""
    text = path.read_text(encoding="ascii") if path.exists() else ""
    assert not text or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def events(path: Path, kind: str) -> list[dict[str, Any]]:
    return [e for e in lines(path) if e["event"] == kind]


# -- AuditLog ---------------------------------------------------------------------


def test_a_line_has_every_field_and_the_file_is_0600_and_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"earlier": "line"}\n')
    path.chmod(0o600)
    new = tmp_path / "new.jsonl"
    for target in (path, new):
        audit = AuditLog(str(target), wall=lambda: 1_800_000_000.5)
        audit.emit(Event("fetch", source="vault", ref="vault://secret/app", version="3", bindings=("A", "B"), expires_at=1_800_000_060))
        audit.emit(Event("child_started", child_pid=42))  # not audited
        audit.emit(Event("restart", bindings=("A",), child_pid=42, reason="rotation"))
        audit.close()
        audit.emit(Event("exit"))  # after close: ignored, never raised
    assert stat.S_IMODE(new.stat().st_mode) == 0o600
    assert lines(path)[0] == {"earlier": "line"}
    fetch, restart = lines(new)
    assert set(fetch) == FIELDS and fetch == {
        "time": "2027-01-15T08:00:00.500Z", "event": "fetch", "source": "vault", "ref": "vault://secret/app", "version": "3",
        "bindings": ["A", "B"], "outcome": "ok", "pid": os.getpid(), "child_pid": None, "host": fetch["host"],
        "user": fetch["user"], "reason": None, "expires_at": "2027-01-15T08:01:00.000Z",
    }
    assert fetch["host"] and fetch["user"]
    assert restart["event"] == "restart" and restart["reason"] == "rotation" and restart["child_pid"] == 42


@pytest.mark.parametrize("where", ["missing/dir/audit.jsonl", "."])
def test_a_path_that_cannot_be_opened_is_78(tmp_path: Path, where: str) -> None:
    with pytest.raises(ManifestError, match="cannot open the audit file") as info:
        AuditLog(str(tmp_path / where))
    assert info.value.exit_code == 78


_FULL_DISK = """
import logging, resource, sys
from launcher.observe.audit import AuditLog
from launcher.events import Event
logging.basicConfig(level=logging.WARNING, format="%(message)s")
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))  # the disk is full after that many bytes
audit = AuditLog(sys.argv[1])
for i in range(3):
    audit.emit(Event("check", source="dev", ref=f"dev://x{i}", bindings=("A" * 50,)))
audit.close()
"""


def test_a_write_cut_short_is_rolled_back_logged_once_and_never_raised(tmp_path: Path) -> None:
    """A full disk (here a file size limit) cuts a line short: it is taken back whole, never torn."""
    path = tmp_path / "audit.jsonl"
    path.write_text('{"earlier": "line"}\n')
    room = path.stat().st_size + 150  # room for half of the next line
    proc = subprocess.run([sys.executable, "-c", _FULL_DISK, str(path), str(room)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert lines(path) == [{"earlier": "line"}]  # whole lines only: the cut one is gone
    warnings = [line for line in proc.stderr.splitlines() if "audit" in line]
    assert len(warnings) == 1 and "short write" in warnings[0] and "rolled back" in warnings[0], proc.stderr


_WRITER = """
import sys, threading
from launcher.observe.audit import AuditLog
from launcher.events import Event
audit = AuditLog(sys.argv[1])
names = tuple(f"VARIABLE_NUMBER_{i:04d}" for i in range(250))  # a line of about 6 KB, more than PIPE_BUF
def write(t):
    for i in range(int(sys.argv[2])):
        audit.emit(Event("check", source=f"t{t}", ref=f"file://{i}", bindings=names))
threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
for t in threads: t.start()
for t in threads: t.join()
"""


def test_many_threads_and_processes_appending_to_one_file_give_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), "100"]) for _ in range(4)]
    audit = AuditLog(str(path))
    threads = [threading.Thread(target=lambda: [audit.emit(Event("fetch", ref=f"x{i}")) for i in range(200)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0, 0]
    audit.close()
    found = lines(path)  # each line parses: none was split or interleaved
    assert len(found) == 4 * 4 * 100 + 4 * 200
    assert {e["pid"] for e in found} == {os.getpid(), *(w.pid for w in writers)}


# -- the command line ---------------------------------------------------------------


def project(tmp_path: Path, extra: str = "", env: str = "  PASSWORD: dev://app/db#password\n") -> Path:
    (tmp_path / "secrets.json").write_text(json.dumps({"app": {"db": {"password": CANARY}}}))
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text(f"version: 1\nsources:\n  dev: {{type: file, path: secrets.json}}\n{extra}env:\n{env}")
    return manifest


def test_the_option_wins_over_the_variable_which_wins_over_the_manifest(tmp_path: Path) -> None:
    project(tmp_path, extra="audit: {path: ./from-manifest.jsonl}\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    manifest = str(tmp_path / "launcher.yaml")
    variable = {"LAUNCHER_AUDIT": str(tmp_path / "from-variable.jsonl")}
    assert run_launcher(["check", "-m", manifest], cwd=elsewhere).returncode == 0
    assert run_launcher(["env", "-m", manifest], env=launcher_env(variable), cwd=elsewhere).returncode == 0
    assert run_launcher(["exec", "-m", manifest, "--audit", "from-option.jsonl", "--", "true"], env=launcher_env(variable),
                        cwd=elsewhere).returncode == 0
    for name, cwd in (("from-manifest", tmp_path), ("from-variable", tmp_path), ("from-option", elsewhere)):
        found = lines(cwd / f"{name}.jsonl")  # the manifest's path is relative to the manifest
        assert [e["event"] for e in found][:1] == ["fetch"], name
        assert found[0]["bindings"] == ["PASSWORD"] and found[0]["ref"] == "dev://app/db" and found[0]["version"]
    assert len(lines(tmp_path / "from-manifest.jsonl")) == 2  # fetch, exit: check only
    assert [e["reason"] for e in events(tmp_path / "from-manifest.jsonl", "exit")] == ["0"]


def test_an_audit_path_that_cannot_be_opened_is_78_before_the_child_runs(tmp_path: Path) -> None:
    project(tmp_path)
    marker = tmp_path / "ran"
    proc = run_launcher(["run", "--audit", str(tmp_path / "no" / "such" / "dir.jsonl"), "--", "touch", str(marker)], cwd=tmp_path)
    assert proc.returncode == 78 and "cannot open the audit file" in proc.stderr
    assert not marker.exists()


def test_a_trail_that_cannot_be_written_never_stops_the_child(tmp_path: Path) -> None:
    project(tmp_path)
    marker, audit = tmp_path / "ran", tmp_path / "audit.jsonl"

    def full_disk() -> None:  # in the launcher (and its child): no file may grow past 10 bytes
        resource.setrlimit(resource.RLIMIT_FSIZE, (10, 10))

    proc = subprocess.run([LAUNCHER, "run", "--audit", str(audit), "--", "touch", str(marker)], cwd=tmp_path, env=launcher_env(),
                          capture_output=True, text=True, timeout=60, check=False, preexec_fn=full_disk)
    assert proc.returncode == 0 and marker.exists(), proc.stderr
    assert proc.stderr.count(f"audit: writing to {audit} failed") == 1
    assert audit.read_bytes() == b""  # the first line was cut at 10 bytes, then taken back


def test_failures_are_audited_per_binding_then_the_exit_code(tmp_path: Path) -> None:
    project(tmp_path, env="  PASSWORD: dev://app/db#password\n  GONE: dev://app/db#nope\n  ALSO: dev://app/none#x\n")
    audit = tmp_path / "audit.jsonl"
    proc = run_launcher(["run", "--audit", str(audit), "--", "true"], cwd=tmp_path)
    assert proc.returncode == 66
    errors = events(audit, "error")
    assert [(e["bindings"], e["outcome"], e["reason"], e["source"]) for e in errors] == [
        (["GONE"], "missing", "66", "dev"), (["ALSO"], "missing", "66", "dev")]
    assert lines(audit)[-1]["event"] == "exit" and lines(audit)[-1]["reason"] == "66" and lines(audit)[-1]["outcome"] == "missing"
    assert CANARY not in audit.read_text()


def test_an_invalid_manifest_is_audited_when_the_trail_is_named_outside_it(tmp_path: Path) -> None:
    (tmp_path / "launcher.yaml").write_text("version: 1\nenv:\n  A: prd://x#y\n")
    audit = tmp_path / "audit.jsonl"
    proc = run_launcher(["check"], env=launcher_env({"LAUNCHER_AUDIT": str(audit)}), cwd=tmp_path)
    assert proc.returncode == 78
    assert [(e["event"], e["outcome"], e["reason"]) for e in lines(audit)] == [("error", "invalid", "78"), ("exit", "invalid", "78")]


def test_two_launchers_appending_to_one_file_give_whole_lines(tmp_path: Path) -> None:
    project(tmp_path, extra="watch: {enabled: true, interval: 20ms, debounce: 0s}\n")
    audit = tmp_path / "audit.jsonl"
    procs = [subprocess.Popen([LAUNCHER, "run", "--audit", str(audit), "--", "sleep", "300"], cwd=tmp_path, env=launcher_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        pids = {p.pid for p in procs}
        wait_for(lambda: len({e["pid"] for e in events(audit, "check")}) == 2 and len(lines(audit)) >= 400, timeout=30,
                 what="400 lines from both launchers")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=15) for p in procs]
    assert codes == [143, 143]  # sleep was killed by the forwarded SIGTERM
    found = lines(audit)
    assert {e["pid"] for e in found} == pids
    assert sorted(e["reason"] for e in found if e["event"] == "exit") == ["143", "143"]


# -- a full run against OpenBao -------------------------------------------------------


@pytest.mark.vault
def test_a_full_run_tells_who_read_which_version_when_and_what_the_child_went_through(openbao: OpenBao, tmp_path: Path) -> None:
    path = f"audit/{openbao.unique()}"
    write_kv2(openbao, path, {"password": CANARY + "-1"})
    audit, seen = tmp_path / "audit.jsonl", tmp_path / "seen"
    (tmp_path / "launcher.yaml").write_text(
        f"version: 1\nenv:\n  DB_PASSWORD: vault://secret/{path}#password\n"
        "watch: {enabled: true, interval: 300ms, debounce: 0s}\nprocess: {stop_timeout: 2s}\n")
    # Each child writes its pid and how many fetch lines it finds as it starts: the trail
    # must hold the read of the values it was started with.
    child = ["sh", "-c", f"echo \"$$ $(grep -c '\"event\":\"fetch\"' {audit})\" >> {seen}; exec sleep 300"]
    proc = subprocess.Popen([LAUNCHER, "run", "--audit", str(audit), "--", *child], cwd=tmp_path,
                            env=launcher_env({**openbao.env(), "HOME": str(tmp_path)}), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: seen.exists() and len(seen.read_text().splitlines()) == 1, timeout=20, what="the first child")
        write_kv2(openbao, path, {"password": CANARY + "-2"})
        wait_for(lambda: len(seen.read_text().splitlines()) == 2, timeout=20, what="the restarted child")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 143
    finally:
        proc.kill()
        stderr = proc.communicate()[1]
    (first_pid, first_seen), (second_pid, second_seen) = (tuple(map(int, line.split())) for line in seen.read_text().splitlines())
    assert first_seen >= 1 and second_seen >= 2
    found = lines(audit)
    kinds = [e["event"] for e in found if e["event"] != "check"]
    assert kinds == ["fetch", "rotation", "restart", "fetch", "exit"] or kinds == ["fetch", "fetch", "rotation", "restart", "exit"]
    fetches = events(audit, "fetch")
    ref = f"vault://secret/{path}"
    assert [(e["source"], e["ref"], e["version"], e["bindings"], e["outcome"]) for e in fetches] == [
        ("vault", ref, "1", ["DB_PASSWORD"], "ok"), ("vault", ref, "2", ["DB_PASSWORD"], "ok")]
    (rotation,), (restart,), (leaving,) = events(audit, "rotation"), events(audit, "restart"), events(audit, "exit")
    assert (rotation["ref"], rotation["version"], rotation["bindings"], rotation["child_pid"]) == (ref, "2", ["DB_PASSWORD"], first_pid)
    assert (restart["reason"], restart["child_pid"]) == ("rotation", first_pid)
    assert leaving["reason"] == "143" and found[-1] == leaving
    assert {e["pid"] for e in found} == {proc.pid} and second_pid != first_pid
    checks = events(audit, "check")
    assert checks and {c["outcome"] for c in checks} == {"ok"} and "2" in {c["version"] for c in checks} <= {"1", "2"}
    times = [datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in found]
    assert times == sorted(times) and {t.utcoffset() for t in times} == {timedelta(0)}  # UTC
    text = audit.read_text()
    assert CANARY not in text and openbao.token not in text and CANARY not in stderr


def test_the_python_api_writes_the_same_events(tmp_path: Path) -> None:
    """`launcher.Client` audits its reads like the command line: the manifest's audit.path, or $LAUNCHER_AUDIT."""
    import launcher

    manifest = project(tmp_path, extra=f"audit: {{path: {tmp_path / 'api.jsonl'}}}\n")
    with launcher.Client(str(manifest), environ={}) as client:
        client.load()
    fetches = events(tmp_path / "api.jsonl", "fetch")
    assert [(e["source"], e["ref"], e["outcome"], e["bindings"]) for e in fetches] == [("dev", "dev://app/db", "ok", ["PASSWORD"])]
    assert CANARY not in (tmp_path / "api.jsonl").read_text()
    with launcher.Client(str(manifest), environ={"LAUNCHER_AUDIT": str(tmp_path / "env.jsonl")}) as client:
        client.get("dev://app/db#password")
    assert [e["ref"] for e in events(tmp_path / "env.jsonl", "fetch")] == ["dev://app/db"]
