"""The audit file: a regular file, never through a link, whole lines or none (docs/operations/audit.md), and who a check was for.

Issue 27: root appended to another user's file through a symlink, a dangling link
created its target, a FIFO hung every command, and a full disk left a torn line
that the next line was glued to. Issue 28: `check` events named no variable.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import LAUNCHER, launcher_env, run_launcher, wait_for

CANARY = "auditfile-CANARY-51f0"


def project(tmp: Path, extra: str = "") -> None:
    (tmp / "secrets.json").write_text(json.dumps({"app": {"db": {"password": CANARY, "user": "app"}}}))
    (tmp / "launcher.yaml").write_text(
        f"version: 1\nsources:\n  dev: {{type: file, path: secrets.json}}\n{extra}"
        "env:\n  DB_PASSWORD: dev://app/db#password\n  DB_USER: dev://app/db#user\n  OTHER: dev://app#db\n")


def parsed(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="ascii")
    assert not text or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_a_symlink_is_78_and_its_target_untouched(tmp_path: Path) -> None:
    project(tmp_path)
    victim = tmp_path / "someone-elses.log"
    victim.write_text("theirs\n")
    (tmp_path / "audit.jsonl").symlink_to(victim)
    for args in (["check", "--offline"], ["check"], ["run", "--", "true"], ["exec", "--", "true"]):
        proc = run_launcher([*args[:1], "--audit", "audit.jsonl", *args[1:]], env=launcher_env(), cwd=tmp_path)
        assert proc.returncode == 78, (args, proc.stderr)
        assert "audit.jsonl is a symbolic link" in proc.stderr
    assert victim.read_text() == "theirs\n"


def test_a_dangling_symlink_is_78_and_creates_nothing(tmp_path: Path) -> None:
    project(tmp_path, extra="audit: {path: ./audit.jsonl}\n")
    target = tmp_path / "created-through-the-link"
    (tmp_path / "audit.jsonl").symlink_to(target)
    proc = run_launcher(["check", "--offline"], env=launcher_env(), cwd=tmp_path)
    assert proc.returncode == 78 and "is a symbolic link" in proc.stderr
    assert not target.exists()


@pytest.mark.parametrize("reader", [False, True], ids=["no-reader", "with-a-reader"])
def test_a_fifo_is_78_at_once(tmp_path: Path, reader: bool) -> None:
    project(tmp_path)
    fifo = tmp_path / "audit.fifo"
    os.mkfifo(fifo)
    # With a reader the open succeeds: the file must still be refused for what it is.
    held = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK) if reader else None
    try:
        for args in (["check", "--offline"], ["run", "--", "true"]):
            proc = run_launcher([args[0], "--audit", str(fifo), *args[1:]], env=launcher_env(), cwd=tmp_path, timeout=20)
            assert proc.returncode == 78, (args, proc.stderr)
            assert "is a FIFO" in proc.stderr
    finally:
        if held is not None:
            os.close(held)


def test_a_device_is_78(tmp_path: Path) -> None:
    project(tmp_path)
    proc = run_launcher(["check", "--offline", "--audit", "/dev/null"], env=launcher_env(), cwd=tmp_path)
    assert proc.returncode == 78 and "is a character device" in proc.stderr


@pytest.fixture(name="small_disk")
def small_disk_fixture(tmp_path: Path) -> Any:
    """A 64 KiB tmpfs: a disk that fills up for real (needs root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_leaves_whole_lines_only_and_the_run_goes_on(tmp_path: Path, small_disk: Path) -> None:
    """The disk fills while `run` watches and audits: every line in the file parses, one warning, the child unharmed."""
    project(tmp_path, extra="watch: {enabled: true, interval: 10ms, debounce: 0s}\n")
    audit = small_disk / "audit.jsonl"
    (small_disk / "filler").write_bytes(b"x" * (15 * 4096))  # one page of 16 left: a dozen lines, then a line cut short
    ready, err = tmp_path / "ready", tmp_path / "stderr"
    with err.open("w") as stderr:
        proc = subprocess.Popen([LAUNCHER, "run", "--audit", str(audit), "--", "sh", "-c", f"touch {ready}; exec sleep 300"],
                                cwd=tmp_path, env=launcher_env(), stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_for(ready.exists, what="the child")
        wait_for(lambda: "audit: writing to" in err.read_text(), timeout=20, what="the disk to fill")
        assert proc.poll() is None, "the launcher goes on"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 143  # the child's own end, forwarded: it was never disturbed
    finally:
        proc.kill()
        proc.wait()
    found = parsed(audit)  # every line whole: none torn, none glued to the next
    assert len(found) >= 2 and {e["event"] for e in found} >= {"fetch", "check"}
    assert err.read_text().count("audit: writing to") == 1, err.read_text()
    assert CANARY not in audit.read_text() + err.read_text()


def test_check_events_name_the_variables_that_use_the_secret(tmp_path: Path) -> None:
    """Searching the trail for one variable finds the checks of its secret too (issue 28.9)."""
    project(tmp_path, extra="watch: {enabled: true, interval: 50ms, debounce: 0s}\nenv_from:\n  - {ref: dev://app/db, prefix: DB_ALL_}\n")
    audit = tmp_path / f"audit-{uuid.uuid4().hex[:6]}.jsonl"
    proc = subprocess.Popen([LAUNCHER, "run", "--audit", str(audit), "--", "sleep", "300"], cwd=tmp_path, env=launcher_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: audit.exists() and sum(e["event"] == "check" for e in parsed(audit)) >= 4, timeout=20, what="checks")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        proc.communicate()
    checks = {e["ref"]: e["bindings"] for e in parsed(audit) if e["event"] == "check"}
    assert checks == {"dev://app/db": ["DB_PASSWORD", "DB_USER", "DB_ALL_*"], "dev://app": ["OTHER"]}
    fetches = {e["ref"]: e["bindings"] for e in parsed(audit) if e["event"] == "fetch"}
    assert checks == fetches  # the same names as the reads that started the child
