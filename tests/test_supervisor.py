"""The Supervisor driven directly (not through the CLI), with a real child and injected failures.

Each case runs a small driver in its own Python process: the supervisor installs
signal handlers, becomes a subreaper and reaps with ``waitpid(-1)``, none of
which a test runner's own process should be subjected to.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import HELPERS_DIR

PRINT_SIGNALS = str(HELPERS_DIR / "print_signals.py")

DRIVER = r'''
import os, sys, threading
from launcher.model.config import Binding, Manifest, ProcessConfig, WatchConfig
from launcher.run.environment import ChildEnvironment
from launcher.model.refs import Reference
from launcher.resolve.resolver import BindingResult, Resolution
from launcher.run.supervisor import Supervisor
from launcher.resolve.watcher import Rotation

out, failure, action = sys.argv[1], sys.argv[2], sys.argv[3]
binding = Binding("CERT", (Reference("dev", "cert"),), file=True)
manifest = Manifest(env=(binding,), watch=WatchConfig(enabled=True, debounce=0.0, on_change=action),
                    process=ProcessConfig(stop_timeout=5.0))

def resolution(value):
    result = BindingResult("CERT", "dev://cert", "ok", value=value, file=True)
    return Resolution([result], {"CERT": value}, frozenset({"CERT"}), {}, [])

class Failing(ChildEnvironment):
    builds = 0
    def bindings(self, res):
        if res.values["CERT"] == "v2":
            raise RuntimeError("injected") if failure == "bug" else PermissionError(13, "injected")
        return super().bindings(res)

environment = Failing(manifest, os.environ)
supervisor = Supervisor(manifest, [sys.executable, sys.argv[4], out], environment)

def rotate():
    # Once the child is ready, post a rotation whose action (signal: rewrite the file; restart: a new start) fails.
    while not os.path.exists(out + ".ready"):
        threading.Event().wait(0.01)
    supervisor.post(Rotation(resolution("v2"), ()))

threading.Thread(target=rotate, daemon=True).start()
try:
    code = supervisor.run(resolution("v1"))
finally:
    environment.files.remove()
print(code)
'''


@pytest.mark.parametrize(("action", "failure", "code"), [("signal", "bug", 70), ("restart", "bug", 70), ("signal", "oserror", 70)])
def test_a_failing_action_stops_the_child_before_leaving(tmp_path: Path, action: str, failure: str, code: int) -> None:
    """If carrying out a rotation raises, the child gets stop_signal (and stop_timeout), then the launcher leaves."""
    out = tmp_path / "signals"
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(out), failure, action, PRINT_SIGNALS],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == str(code), proc.stdout + proc.stderr
    assert out.read_text().split() == ["SIGTERM"], "the child was stopped with stop_signal, not left to the parent-death SIGKILL"
    assert "internal error" in proc.stderr and "Traceback" not in proc.stderr and "injected" not in proc.stderr
