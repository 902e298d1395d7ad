"""Procfile use: ``honcho start`` with two ``launcher run`` entries."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.helpers import HELPERS_DIR, LAUNCHER, gone, launcher_env, wait_for

HONCHO = shutil.which("honcho", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(HONCHO is None, reason="needs honcho (pip install honcho)")


def test_honcho_runs_two_launchers_and_stops_everything(tmp_path: Path) -> None:
    (tmp_path / "secrets.yaml").write_text("web: {token: web-secret}\nworker: {token: worker-secret}\n")
    for name in ("web", "worker"):
        (tmp_path / f"{name}.yaml").write_text(
            f"version: 1\nsources:\n  dev: {{type: file, path: ./secrets.yaml}}\nenv:\n  TOKEN: dev://{name}#token\n"
        )
    child = f"{sys.executable} {HELPERS_DIR / 'print_signals.py'}"
    (tmp_path / "Procfile").write_text(
        f"web: {LAUNCHER} run -m web.yaml -- sh -c 'echo $TOKEN > web.out; exec {child} web.sig'\n"
        f"worker: {LAUNCHER} run -m worker.yaml -- sh -c 'echo $TOKEN > worker.out; exec {child} worker.sig'\n"
    )
    proc = subprocess.Popen([str(HONCHO), "start"], cwd=tmp_path, env=launcher_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pids = {name: int(wait_for(lambda n=name: (tmp_path / f"{n}.sig.ready").exists()
                                   and (tmp_path / f"{n}.sig.ready").read_text(), what=f"{name} ready"))
                for name in ("web", "worker")}
        assert (tmp_path / "web.out").read_text() == "web-secret\n"
        assert (tmp_path / "worker.out").read_text() == "worker-secret\n"
        tree = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert len(tree) >= 4  # two launchers, two children (plus any shells honcho adds)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        proc.kill()
        output = proc.communicate()[0]
    for name, pid in pids.items():
        wait_for(lambda p=pid: gone(p), timeout=5, what=f"{name} child to be gone")
        assert "SIGTERM" in (tmp_path / f"{name}.sig").read_text(), output
    for pid in tree:
        wait_for(lambda p=pid: gone(p), timeout=5, what=f"process {pid} under honcho to be gone")
