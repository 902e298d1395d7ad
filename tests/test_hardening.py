"""Process hardening (docs/reference/security.md): the launcher's memory and environment are not for its
neighbours, and a crashing child writes no core file unless asked to."""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.helpers import LAUNCHER, launcher_env, run_launcher, wait_for

NOBODY = 65534
PR_SET_DUMPABLE = 4


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory an unprivileged user can read (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="launcher-hardening-"))
    folder.chmod(0o755)
    yield folder
    for item in folder.iterdir():
        item.unlink()
    folder.rmdir()


def as_nobody(fn: object, *args: object) -> int:
    """Fork; the child drops to nobody and runs ``fn(*args)``; returns the child's pid (not waited for).

    Changing its user makes a process non-dumpable by itself: the child is made dumpable again
    first, as any process started by that user is, so what ``fn`` does is what is observed.
    """
    from launcher.run.linux import prctl

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            prctl(PR_SET_DUMPABLE, 1)
            fn(*args)  # type: ignore[operator]
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            os._exit(code)
    return pid


def readable_by_nobody(path: str) -> bool:
    """Whether an unprivileged process (nobody) can read ``path``."""
    def attempt() -> None:
        with open(path, "rb") as fh:
            fh.read(1)

    pid = as_nobody(attempt)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run the launcher as another user")
def test_a_process_of_the_same_user_cannot_read_the_launchers_environment(shared_dir: Path) -> None:
    import launcher.cli
    import launcher.run.supervisor  # imported now: nobody cannot read this interpreter's library files

    (shared_dir / "secrets.yaml").write_text("token: canary-hardening-3e1\n")
    (shared_dir / "launcher.yaml").write_text("version: 1\nsources:\n  dev: {type: file, path: ./secrets.yaml}\n"
                                              "env:\n  TOKEN: dev://token\n")
    for item in shared_dir.iterdir():
        item.chmod(0o644)
    launcher_pid = as_nobody(launcher.cli.main, ["run", "-m", str(shared_dir / "launcher.yaml"), "--", "/bin/sleep", "60"])
    try:
        child = wait_for(lambda: next(iter(psutil.Process(launcher_pid).children()), None), what="the launcher's child")
        wait_for(lambda: child.exe() == "/bin/sleep" or child.name() == "sleep", what="the child to exec sleep")
        assert psutil.Process(launcher_pid).uids().real == NOBODY
        # The launcher is non-dumpable: its /proc files belong to root, so nobody, its own user, is refused.
        assert os.stat(f"/proc/{launcher_pid}/environ").st_uid == 0
        assert not readable_by_nobody(f"/proc/{launcher_pid}/environ")
        assert not readable_by_nobody(f"/proc/{launcher_pid}/mem")
        # Its child is an ordinary process of that user again (execve made it dumpable): the control.
        assert readable_by_nobody(f"/proc/{child.pid}/environ")
    finally:
        os.kill(launcher_pid, signal.SIGTERM)
        os.waitpid(launcher_pid, 0)


def ulimit_c(args: list[str], tmp_path: Path, manifest: str = "version: 1\n") -> str:
    (tmp_path / "launcher.yaml").write_text(manifest)

    def unlimited_cores() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    done = subprocess.run([LAUNCHER, *args, "-m", str(tmp_path / "launcher.yaml"), "--", "sh", "-c", "ulimit -c"],
                          env=launcher_env(), capture_output=True, text=True, timeout=30, preexec_fn=unlimited_cores,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("command", ["run", "exec"])
def test_the_child_starts_with_core_dumps_off(tmp_path: Path, command: str) -> None:
    assert ulimit_c([command], tmp_path) == "0"  # the launcher was started with unlimited core files


@pytest.mark.parametrize("command", ["run", "exec"])
def test_core_dumps_true_keeps_the_inherited_limit(tmp_path: Path, command: str) -> None:
    assert ulimit_c([command], tmp_path, "version: 1\nprocess: {core_dumps: true}\n") == "unlimited"


def test_check_offline_accepts_core_dumps(tmp_path: Path) -> None:
    (tmp_path / "launcher.yaml").write_text("version: 1\nprocess: {core_dumps: yes}\n")
    assert run_launcher(["check", "--offline", "-m", str(tmp_path / "launcher.yaml")]).returncode == 0
    assert stat.S_ISREG(os.stat(tmp_path / "launcher.yaml").st_mode)
