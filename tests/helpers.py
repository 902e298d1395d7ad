"""Shared test helpers: run the installed launcher, poll with a deadline, watch processes.

Every helper a test module shares lives here (or in ``tests/fakes.py`` for the fakes);
no test module imports another.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psutil

if TYPE_CHECKING:
    from launcher.resolve.resolution import Resolution

T = TypeVar("T")

# The console script installed next to the interpreter running the tests.
LAUNCHER = str(Path(sys.executable).with_name("launcher"))
HELPERS_DIR = Path(__file__).parent / "programs"


def launcher_env(extra: Mapping[str, str] | None = None, drop: Sequence[str] = ()) -> dict[str, str]:
    """A clean environment for the launcher: no LAUNCHER_* or Vault/Azure leakage from the host."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAUNCHER_", "VAULT_", "AZURE_", "BAO_"))}
    for name in drop:
        env.pop(name, None)
    env.update(extra or {})
    return env


def run_launcher(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``launcher ARGS`` to completion and capture its output."""
    return subprocess.run(
        [LAUNCHER, *args],
        env=launcher_env() if env is None else dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        check=False,
    )


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int, absent: Sequence[str] = ()) -> Samples:
    """Every sample of the launcher's ``/metrics``, by (name, sorted labels), parsed by prometheus_client;
    asserts that none of ``absent`` (a secret, a private key's marker) is in the text."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for word in absent:
        assert word not in text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def health(port: int) -> tuple[int, dict[str, Any]]:
    """The launcher's ``/healthz``: its HTTP status and JSON body (503 is an answer too)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def free_port() -> int:
    """A TCP port free on 127.0.0.1 just now (for ``--metrics``)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def raise_failure(resolution: Resolution) -> None:
    """All or nothing, as the launcher decides it: raise the resolution's failure, if any."""
    failure = resolution.failure()
    if failure is not None:
        raise failure


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie awaiting its new parent counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def in_unprivileged_process(fn: Callable[[], str]) -> str:
    """``fn()`` as run by an unprivileged user: a forked child drops to nobody when we are root."""
    if os.geteuid() != 0:
        return fn()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, fn().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        out = fh.read().decode()
    os.waitpid(pid, 0)
    return out


class Running:
    """One ``launcher run`` of record_env.py: stderr goes to a file and the audit trail to another, both polled.

    Tests wait on what the launcher records (audit events: ``wait_audit``) or what the
    child records (``wait_events``), never on the wording of a log line.
    """

    def __init__(self, tmp: Path, manifest: str | Path, names: list[str], args: tuple[str, ...] = (),
                 env: Mapping[str, str] | None = None, child: Sequence[str] | None = None) -> None:
        self.tmp = tmp
        self.out = tmp / "events.jsonl"
        self.err = tmp / "stderr.log"
        self.trail = tmp / "audit.jsonl"
        if isinstance(manifest, str):
            (tmp / "launcher.yaml").write_text(manifest)
            manifest = tmp / "launcher.yaml"
        argv = child or [sys.executable, str(HELPERS_DIR / "record_env.py"), str(self.out), *names]
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [LAUNCHER, "--log-level", "debug", "run", "-m", str(manifest), "--audit", str(self.trail), *args, "--", *argv],
                env=launcher_env(env), stdout=subprocess.DEVNULL, stderr=err,
            )

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """What the child recorded (``start``, a signal's name...)."""
        return _json_lines(self.out, "event", kind)

    def audit(self, kind: str | None = None, **match: Any) -> list[dict[str, Any]]:
        """The launcher's audit events of ``kind`` whose fields equal ``match`` (``ref=...``, ``outcome=...``)."""
        return [e for e in _json_lines(self.trail, "event", kind) if all(e.get(k) == v for k, v in match.items())]

    def log(self) -> str:
        return self.err.read_text()

    def wait_events(self, kind: str, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        return wait_for(lambda: len(self.events(kind)) >= count and self.events(kind), timeout=timeout,
                        what=f"{count} {kind} event(s); log:\n{self.log()[-2000:]}")

    def wait_audit(self, kind: str, count: int = 1, timeout: float = 10, **match: Any) -> list[dict[str, Any]]:
        """Wait for ``count`` audit events of ``kind`` matching ``match``; returns them."""
        return wait_for(lambda: len(self.audit(kind, **match)) >= count and self.audit(kind, **match), timeout=timeout,
                        what=f"{count} audit {kind} event(s) {match}; log:\n{self.log()[-2000:]}")

    def wait_more_checks(self, ref: str, more: int, timeout: float = 10) -> None:
        """Wait until ``ref`` has been checked ``more`` times more, each answered (outcome ok)."""
        self.wait_audit("check", len(self.audit("check", ref=ref, outcome="ok")) + more, timeout, ref=ref, outcome="ok")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


def _json_lines(path: Path, field: str, kind: str | None) -> list[dict[str, Any]]:
    """The whole JSON lines of ``path`` whose ``field`` is ``kind`` (every one when None)."""
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return [e for e in lines if kind is None or e.get(field) == kind]


class FakeHTTP(http.server.ThreadingHTTPServer):
    """Answers every request with ``status`` (and ``headers``), recording ``(method, path)``."""

    daemon_threads = True

    def __init__(self, status: int = 204, headers: dict[str, str] | None = None) -> None:
        self.status, self.headers = status, headers or {}
        self.seen: list[tuple[str, str]] = []
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FakeHTTP

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path))
        self.send_response(self.server.status)
        for name, value in {"Content-Length": "0", **self.server.headers}.items():
            self.send_header(name, value)
        self.end_headers()

    do_GET = do_PUT = do_POST = do_DELETE = _answer  # noqa: N815  (http.server calls do_<METHOD>)

    def log_message(self, *args: Any) -> None:  # quiet
        return None


class Sink:
    """A destination pipe whose read end a thread drains, recording when each piece arrived."""

    def __init__(self) -> None:
        self._read, self.fd = os.pipe()
        self.pieces: list[tuple[float, bytes]] = []
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while data := os.read(self._read, 1 << 20):
            self.pieces.append((time.monotonic(), data))
        os.close(self._read)

    @property
    def data(self) -> bytes:
        return b"".join(piece for _, piece in list(self.pieces))

    def close(self) -> bytes:
        """Close the write end; everything that arrived."""
        os.close(self.fd)
        self._thread.join(timeout=10)
        return self.data
