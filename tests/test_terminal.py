"""``launcher run`` on a terminal, driven through tmux (send-keys, capture-pane)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import LAUNCHER, launcher_env, wait_for

pytestmark = pytest.mark.skipif(not shutil.which("tmux"), reason="needs tmux (apt-get install tmux)")


class Tmux:
    """One private tmux server running an interactive outer bash."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def cmd(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args],
                              capture_output=True, text=True, check=True, timeout=10).stdout

    def keys(self, *keys: str) -> None:
        self.cmd("send-keys", "-t", "main", *keys)

    def type(self, line: str) -> None:
        self.cmd("send-keys", "-t", "main", "-l", line)
        self.keys("Enter")

    def screen(self) -> str:
        return self.cmd("capture-pane", "-p", "-t", "main", "-S", "-200")

    def wait_screen(self, text: str, timeout: float = 10) -> str:
        return wait_for(lambda: text in self.screen() and self.screen(), timeout=timeout, what=f"{text!r} on the terminal")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(f"launcher-test-{uuid.uuid4().hex[:8]}")
    env = launcher_env({"TERM": "xterm", "HISTFILE": "/dev/null"})
    subprocess.run(["tmux", "-L", t.socket, "-f", "/dev/null", "new-session", "-d", "-s", "main", "-x", "150", "-y", "40",
                    "PS1='outer$ ' exec bash --norc --noprofile -i"], env=env, check=True, timeout=10, cwd=tmp_path)
    try:
        t.wait_screen("outer$")
        yield t
    finally:
        subprocess.run(["tmux", "-L", t.socket, "kill-server"], capture_output=True, check=False, timeout=10)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    (tmp_path / "secrets.yaml").write_text("greeting: hello-from-secret\n")
    path = tmp_path / "launcher.yaml"
    path.write_text("version: 1\nsources:\n  dev: {type: file, path: ./secrets.yaml}\nenv:\n  GREETING: dev://greeting\n")
    return path


def test_interactive_bash_ctrl_c_and_exit_code(tmux: Tmux, manifest: Path) -> None:
    inner = "PS1='inner$ ' bash --norc --noprofile -i"
    tmux.type(f"{shlex.quote(LAUNCHER)} run -m {manifest} -- env {inner}")
    tmux.wait_screen("inner$")
    tmux.type("echo got-$GREETING-$((6*7))")
    tmux.wait_screen("got-hello-from-secret-42")
    tmux.type("sleep 30; echo slept")
    tmux.wait_screen("sleep 30; echo slept")
    tmux.keys("C-c")  # reaches the foreground job (sleep), not the launcher
    tmux.type("echo still-$((1+1))")
    screen = tmux.wait_screen("still-2")
    assert "slept" not in screen.replace("echo slept", "")
    tmux.type("exit 7")
    tmux.wait_screen("outer$")
    tmux.type("echo rc=$?")
    tmux.wait_screen("rc=7")


def test_ctrl_z_stops_and_fg_resumes_the_child(tmux: Tmux, manifest: Path, tmp_path: Path) -> None:
    # A child reading the terminal: it only works while it is in the foreground.
    program = "import sys; print('ready', flush=True); line = sys.stdin.readline(); print('read', line.strip(), flush=True)"
    tmux.type(f"{shlex.quote(LAUNCHER)} run -m {manifest} -- python3 -c {shlex.quote(program)}")
    tmux.wait_screen("ready")
    tmux.keys("C-z")
    tmux.wait_screen("Stopped")
    tmux.type("jobs -l")
    tmux.wait_screen("jobs -l")
    tmux.type("fg")
    tmux.wait_screen("fg")
    tmux.type("typed-after-fg")
    tmux.wait_screen("read typed-after-fg")
    tmux.type("echo rc=$?")
    tmux.wait_screen("rc=0")
