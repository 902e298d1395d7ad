"""``launcher run`` as a supervisor: real processes, real signals (no mocks)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.helpers import HELPERS_DIR, LAUNCHER, gone, launcher_env, run_launcher, wait_for

PY = sys.executable
PEM = "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\nline two\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(json.dumps({"app": {"password": "hunter2", "pem": PEM}}))
    path = tmp_path / "launcher.yaml"
    path.write_text(
        "version: 1\n"
        "sources:\n  dev: {type: file, path: ./secrets.yaml}\n"
        "env:\n"
        "  PASSWORD: dev://app#password\n"
        "  TLS_KEY: {ref: dev://app#pem, file: true}\n"
        "process: {stop_timeout: 1s}\n"
    )
    return path


def start(manifest: Path, *argv: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [LAUNCHER, "run", "-m", str(manifest), "--", *argv],
        env=launcher_env(extra_env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


FORWARDED = ["SIGHUP", "SIGUSR1", "SIGUSR2", "SIGINT", "SIGQUIT", "SIGWINCH", "SIGCONT", "SIGALRM", "SIGURG", "SIGPWR"]


def test_every_signal_is_forwarded_and_exit_code_is_the_childs(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "signals.txt"
    proc = start(manifest, PY, str(HELPERS_DIR / "print_signals.py"), str(out), "42")
    try:
        wait_for(lambda: Path(f"{out}.ready").exists(), what="child ready")
        for name in FORWARDED:
            proc.send_signal(signal.Signals[name])
            wait_for(lambda name=name: out.exists() and name in out.read_text().split(), what=f"{name} to reach the child")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 42
    finally:
        proc.kill()
        proc.communicate()
    received = out.read_text().split()
    assert received == [*FORWARDED, "SIGTERM"]


@pytest.mark.parametrize("code", [0, 1, 2, 3, 64, 127, 255])
def test_exit_codes_pass_through(manifest: Path, code: int) -> None:
    result = run_launcher(["run", "-m", str(manifest), "--", "sh", "-c", f"exit {code}"])
    assert result.returncode == code, result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGSEGV])
def test_death_by_signal_gives_128_plus_n(manifest: Path, sig: signal.Signals) -> None:
    result = run_launcher(["run", "-m", str(manifest), "--", "sh", "-c", f"kill -{sig.name[3:]} $$"])
    assert result.returncode == 128 + sig, result.stderr


def test_missing_and_non_executable_commands(manifest: Path, tmp_path: Path) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    missing = run_launcher(["run", "-m", str(manifest), "--", "no-such-command-xyz"])
    assert missing.returncode == 127
    assert "no-such-command-xyz: command not found" in missing.stderr
    denied = run_launcher(["run", "-m", str(manifest), "--", str(script)])
    assert denied.returncode == 126
    assert "Traceback" not in missing.stderr + denied.stderr


def test_argv_passes_through_untouched(manifest: Path) -> None:
    args = ["a b", "$HOME", "'q'", '"dq"', "*", "--", "-m", ""]
    code = "import json,sys; print(json.dumps(sys.argv[1:]))"
    result = run_launcher(["run", "-m", str(manifest), "--", PY, "-c", code, *args])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == args


def test_logs_go_to_stderr_never_stdout(manifest: Path) -> None:
    result = run_launcher(["--log-level", "debug", "run", "-m", str(manifest), "--", "echo", "only-this"])
    assert result.stdout == "only-this\n"
    assert "resolved" in result.stderr
    assert "hunter2" not in result.stderr


def test_orphans_are_reaped_through_the_subreaper(manifest: Path, tmp_path: Path) -> None:
    result_file = tmp_path / "result.json"
    proc = start(manifest, PY, str(HELPERS_DIR / "orphans.py"), "50", str(result_file))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    result = json.loads(result_file.read_text())
    assert len(result["parents"]) == 50
    assert set(result["parents"]) == {proc.pid}, "grandchildren must be adopted by the launcher"
    assert result["zombies"] == 0


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare for a PID namespace")
def test_orphans_are_reaped_as_pid_1(manifest: Path, tmp_path: Path) -> None:
    result_file = tmp_path / "result.json"
    cmd = ["unshare", "--pid", "--fork", "--mount-proc", LAUNCHER, "run", "-m", str(manifest), "--",
           PY, str(HELPERS_DIR / "orphans.py"), "50", str(result_file)]
    done = subprocess.run(cmd, env=launcher_env(), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(result_file.read_text())
    assert result["launcher"] == 1
    assert result["parents"] == [1] * 50
    assert result["zombies"] == 0


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare for a PID namespace")
def test_sigterm_reaches_the_child_as_pid_1(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "signals.txt"
    cmd = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", LAUNCHER, "run", "-m", str(manifest), "--",
           PY, str(HELPERS_DIR / "print_signals.py"), str(out), "7"]
    proc = subprocess.Popen(cmd, env=launcher_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: Path(f"{out}.ready").exists(), what="child ready")
        launcher = wait_for(lambda: [p for p in psutil.Process(proc.pid).children() if p.name() != "unshare"], what="launcher")[0]
        for sig in (signal.SIGHUP, signal.SIGTERM):  # default disposition at PID 1 would drop these
            launcher.send_signal(sig)
        assert proc.wait(timeout=10) == 7
    finally:
        proc.kill()
        proc.communicate()
    assert out.read_text().split() == ["SIGHUP", "SIGTERM"]


def test_sigkill_to_the_launcher_takes_the_child_down(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "signals.txt"
    proc = start(manifest, PY, str(HELPERS_DIR / "print_signals.py"), str(out))
    try:
        child_pid = int(wait_for(lambda: Path(f"{out}.ready").exists() and Path(f"{out}.ready").read_text(), what="child"))
        secret_file = Path(psutil.Process(child_pid).environ()["TLS_KEY"])
        proc.kill()
        proc.wait(timeout=5)
        wait_for(lambda: gone(child_pid), timeout=3, what="the child to die with its parent")
    finally:
        proc.kill()
        proc.communicate()
    # Nothing can clean up after a SIGKILL (documented); the test does it itself.
    shutil.rmtree(secret_file.parent, ignore_errors=True)


def test_leftover_group_gets_stop_signal_then_sigkill(manifest: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    result = run_launcher(["run", "-m", str(manifest), "--", PY, str(HELPERS_DIR / "ignore_term.py"), str(pidfile)])
    assert result.returncode == 5, result.stderr
    grandchild = int(pidfile.read_text())
    wait_for(lambda: gone(grandchild), timeout=5, what="the TERM-ignoring grandchild to be SIGKILLed")


def test_secret_files_are_private_exact_and_removed(manifest: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    code = (
        "import json,os,stat,sys;p=os.environ['TLS_KEY'];d=os.path.dirname(p);"
        "json.dump({'path':p,'content':open(p).read(),'mode':stat.S_IMODE(os.stat(p).st_mode),"
        "'dmode':stat.S_IMODE(os.stat(d).st_mode)},open(sys.argv[1],'w'))"
    )
    result = run_launcher(["run", "-m", str(manifest), "--", PY, "-c", code, str(report)])
    assert result.returncode == 0, result.stderr
    seen = json.loads(report.read_text())
    assert seen["content"] == PEM
    assert seen["mode"] == 0o600
    assert seen["dmode"] == 0o700
    assert seen["path"].startswith(("/dev/shm/", os.environ.get("XDG_RUNTIME_DIR", "/dev/shm/")))
    assert not os.path.exists(os.path.dirname(seen["path"])), "the private directory must be removed on exit"


def test_secret_files_are_removed_after_sigterm(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "signals.txt"
    proc = start(manifest, "sh", "-c", f"echo $TLS_KEY > {out}.path; exec {PY} {HELPERS_DIR / 'print_signals.py'} {out}")
    try:
        wait_for(lambda: Path(f"{out}.ready").exists(), what="child ready")
        path = Path(Path(f"{out}.path").read_text().strip())
        assert path.read_text() == PEM
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.communicate()
    assert not path.exists() and not path.parent.exists()


def test_environment_too_large_fails_before_starting(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(json.dumps({"big": "x" * 200_000}))
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text("version: 1\nsources:\n  dev: {type: file, path: ./secrets.yaml}\nenv:\n  BIG: dev://big\n")
    marker = tmp_path / "started"
    result = run_launcher(["run", "-m", str(manifest), "--", "touch", str(marker)])
    assert result.returncode == 78
    assert "BIG" in result.stderr and "file: true" in result.stderr
    assert not marker.exists()


def test_signal_target_child_sends_to_the_child_alone(tmp_path: Path) -> None:
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text("version: 1\nprocess: {signal_target: child}\n")
    out = tmp_path / "signals.txt"
    proc = start(manifest, PY, str(HELPERS_DIR / "print_signals.py"), str(out), "3")
    try:
        wait_for(lambda: Path(f"{out}.ready").exists(), what="child ready")
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: out.exists() and "SIGUSR1" in out.read_text(), what="SIGUSR1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 3
    finally:
        proc.kill()
        proc.communicate()
