"""Output masking through the real `launcher run --mask` (docs/guides/masking.md).

The child prints its secrets in every awkward way; the captured output must hold
none of them, keep each stream's order, and lose nothing at exit.
"""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers import HELPERS_DIR, LAUNCHER, launcher_env, wait_for

TOKEN = "tok-CANARY-9f31e2a7b4"
PEM = "-----BEGIN TEST KEY-----\nMIIBVwIBADANBgkqhkiG9w0BAQEF\nAASCAT8wggE7AgEAAkEAq7BFUpk\n-----END TEST KEY-----"
PRINT = str(HELPERS_DIR / "print_secrets.py")


def project(tmp: Path, token: str = TOKEN, extra: str = "") -> None:
    (tmp / "secrets.json").write_text(json.dumps({"token": token, "pem": PEM}))
    (tmp / "launcher.yaml").write_text(
        f"version: 1\nsources:\n  dev: {{type: file, path: secrets.json}}\n{extra}env:\n  TOKEN: dev://token\n  PEM: dev://pem\n"
        "  LEVEL: info\n")


def run(tmp: Path, mode: str, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([LAUNCHER, "run", "--mask", *extra, "--", sys.executable, PRINT, mode], cwd=tmp, env=launcher_env(),
                          capture_output=True, timeout=timeout, check=False)


def test_secrets_never_reach_the_captured_output(tmp_path: Path) -> None:
    project(tmp_path)
    proc = run(tmp_path, "split")
    assert proc.returncode == 0, proc.stderr
    out, err = proc.stdout.decode(), proc.stderr.decode()
    for secret in (TOKEN, *[ln for ln in PEM.splitlines() if len(ln) >= 4], json.dumps(TOKEN)[1:-1]):
        assert secret not in out + err
    assert out.splitlines()[:3] == [f"line {i} token=<concealed>" for i in range(3)]  # split across writes, order kept
    assert [ln for ln in err.splitlines() if ln.startswith("err")] == [f'err {i} {{"token": "<concealed>"}}' for i in range(3)]
    assert out.endswith("last <concealed> without newline")  # the last bytes, without a newline, arrive


def test_literals_are_left_alone(tmp_path: Path) -> None:
    project(tmp_path)
    proc = subprocess.run([LAUNCHER, "run", "--mask", "--", "sh", "-c", 'echo "level=$LEVEL token=$TOKEN"'], cwd=tmp_path,
                          env=launcher_env(), capture_output=True, timeout=60, check=False)
    assert proc.stdout == b"level=info token=<concealed>\n"


def test_ten_megabytes_just_before_exit_all_arrive(tmp_path: Path) -> None:
    project(tmp_path)
    proc = run(tmp_path, "flood")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split(b"\n")
    assert lines[-1] == b"final <concealed> no newline"
    body = lines[:-1]
    expected = -(-10 * 1024 * 1024 // len(f"flood {TOKEN} {'x' * 80}\n"))
    assert len(body) == expected and set(body) == {b"flood <concealed> " + b"x" * 80}
    assert TOKEN.encode() not in proc.stdout


def test_sigterm_flushes_the_childs_last_words(tmp_path: Path) -> None:
    project(tmp_path)
    out = tmp_path / "out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen([LAUNCHER, "run", "--mask", "--", sys.executable, PRINT, "term"], cwd=tmp_path, env=launcher_env(),
                                stdout=fh, stderr=subprocess.DEVNULL)
        wait_for(lambda: out.read_bytes().startswith(b"ready"), what="the child ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert out.read_bytes() == b"ready <concealed>\nbye <concealed>"


def test_previous_versions_stay_masked_after_a_rotation(tmp_path: Path) -> None:
    """After a rotation the old value is still concealed (a child may print it late)."""
    project(tmp_path, extra="watch: {enabled: true, interval: 100ms, debounce: 0s}\n")
    out = tmp_path / "out"
    script = 'while :; do echo "now=$TOKEN"; sleep 0.05; done'
    with open(out, "wb") as fh:
        proc = subprocess.Popen([LAUNCHER, "run", "--mask", "--", "sh", "-c", script], cwd=tmp_path, env=launcher_env(),
                                stdout=fh, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: b"now=<concealed>" in out.read_bytes(), what="masked output")
            (tmp_path / "secrets.json").write_text(json.dumps({"token": "tok-NEW-5b0c11", "pem": PEM}))
            wait_for(lambda: out.read_bytes().count(b"now=<concealed>") > 40, timeout=15, what="output after the restart")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
    data = out.read_bytes()
    assert TOKEN.encode() not in data and b"tok-NEW-5b0c11" not in data


def test_mask_from_the_manifest(tmp_path: Path) -> None:
    project(tmp_path, extra="process: {mask: true}\n")
    proc = subprocess.run([LAUNCHER, "run", "--", "sh", "-c", 'echo "$TOKEN"'], cwd=tmp_path, env=launcher_env(),
                          capture_output=True, timeout=60, check=False)
    assert proc.stdout == b"<concealed>\n"
    plain = subprocess.run([LAUNCHER, "run", "--no-mask", "--", "sh", "-c", 'echo "$TOKEN"'], cwd=tmp_path, env=launcher_env(),
                           capture_output=True, timeout=60, check=False)
    assert plain.stdout == f"{TOKEN}\n".encode()


@pytest.mark.skipif(not shutil.which("tmux"), reason="needs tmux (apt-get install tmux)")
def test_a_terminal_stays_attached_and_is_warned_about(tmp_path: Path) -> None:
    """Interactive use keeps working: the terminal is the child's own, unmasked, with one warning."""
    project(tmp_path)
    socket = f"launcher-mask-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", socket, "-f", "/dev/null"]
    command = f"{shlex.quote(LAUNCHER)} run --mask -- bash --norc --noprofile -i"
    env = launcher_env({"TERM": "xterm", "HISTFILE": "/dev/null"})
    subprocess.run([*tmux, "new-session", "-d", "-s", "main", "-x", "150", "-y", "40", command], env=env, cwd=tmp_path,
                   check=True, timeout=10)
    try:
        screen = lambda: subprocess.run([*tmux, "capture-pane", "-p", "-t", "main"], capture_output=True, text=True,  # noqa: E731
                                        timeout=10).stdout
        wait_for(lambda: screen().count("is a terminal: the child's output there is not masked") == 2,
                 what="one warning for stdout and one for stderr")
        subprocess.run([*tmux, "send-keys", "-t", "main", "-l", "test -t 1 && test -t 2 && echo both-are-ttys"], check=True, timeout=10)
        subprocess.run([*tmux, "send-keys", "-t", "main", "Enter"], check=True, timeout=10)
        wait_for(lambda: "both-are-ttys" in screen().split("test -t 1")[-1], what="stdout and stderr still the terminal")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, check=False, timeout=10)
