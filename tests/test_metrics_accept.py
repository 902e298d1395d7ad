"""The metrics server survives every error of accept() and queues a burst (docs/operations/metrics.md).

Out of descriptors, the server thread used to end for good: /healthz never
answered again, nothing was logged, and a liveness probe would have restarted a
healthy pod. Here the launcher's descriptor limit is lowered from outside
(prlimit) while it serves, then restored.
"""

from __future__ import annotations

import json
import resource
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from launcher.observe.metrics import Metrics, MetricsServer
from tests.helpers import LAUNCHER, free_port, launcher_env, wait_for


def healthz(port: int, timeout: float = 2.0) -> int | None:
    """The status /healthz answers with, or None when nothing answers in time."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as resp:
            json.loads(resp.read())
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, TimeoutError):
        return None


def test_out_of_descriptors_is_survived_logged_once_and_served_again(tmp_path: Path) -> None:
    (tmp_path / "launcher.yaml").write_text("version: 1\n")
    port = free_port()
    err = tmp_path / "stderr"
    with err.open("w") as stderr:
        proc = subprocess.Popen([LAUNCHER, "run", "--metrics", f"127.0.0.1:{port}", "--", "sleep", "300"], cwd=tmp_path,
                                env=launcher_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_for(lambda: healthz(port) == 200, timeout=20, what="the first /healthz")
        limits = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (3, limits[1]))  # no descriptor left for accept()
        # The accept() already blocked holds the descriptor it reserved: the probe it takes may still be answered.
        wait_for(lambda: healthz(port, timeout=0.5) is None, what="a probe that cannot be accepted")
        for _ in range(3):  # each probe fails; the server must not die of it
            assert healthz(port, timeout=0.5) is None
        wait_for(lambda: "metrics: accepting a connection failed" in err.read_text(), what="the warning")
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, limits)
        wait_for(lambda: healthz(port) == 200, timeout=10, what="/healthz to answer again")
        assert proc.poll() is None
        text = err.read_text()
        assert text.count("metrics: accepting a connection failed") == 1, text  # once per spell, not per attempt
        assert "too many open files" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def test_the_listen_backlog_holds_a_burst_of_64() -> None:
    """Connections the server has not accepted yet wait in the backlog; with socketserver's 5,
    the rest waited for SYN retransmits (1,000 sequential connects took 149-161 s)."""
    server = MetricsServer(Metrics(), f"127.0.0.1:{free_port()}")  # not started: nothing accepts, so all must queue
    clients = []
    try:
        for _ in range(64):
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", server.port))
            clients.append(client)
        queued = wait_for(lambda: all(_connected(c) for c in clients) or None, timeout=5, what="64 queued connections")
        assert queued
    finally:
        for client in clients:
            client.close()
        server.close()


def _connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
        return True
    except OSError:
        return False
