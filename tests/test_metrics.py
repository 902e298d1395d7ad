"""Metrics and health of ``launcher run`` over real HTTP (docs/operations/metrics.md).

``/metrics`` is parsed with ``prometheus_client``'s own parser; the numbers
must move as a real OpenBao rotates, leases and fails (through
tests/fault_proxy.py), and the expiry gauges must agree with the server's TTLs.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from launcher.errors import ManifestError
from launcher.events import Event
from launcher.model.config import listen_address
from launcher.observe.metrics import Metrics, MetricsServer
from tests.fault_proxy import fault_proxy
from tests.helpers import LAUNCHER, FakeHTTP, free_port, health, launcher_env, run_launcher, wait_for
from tests.helpers import scrape as scrape_metrics
from tests.openbao import OpenBao, write_kv2

CANARY = "canary-5b0e2c-never-a-label"
scrape = partial(scrape_metrics, absent=(CANARY,))  # a secret never reaches /metrics


def answers(port: int) -> tuple[int, dict[str, Any]] | None:
    """``health(port)``, or None while nothing listens yet."""
    try:
        return health(port)
    except (urllib.error.URLError, ConnectionError):
        return None


# -- units ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("9464", ("127.0.0.1", 9464)),
    (":9464", ("127.0.0.1", 9464)),
    ("0.0.0.0:9464", ("0.0.0.0", 9464)),
    ("localhost:80", ("localhost", 80)),
    ("[::1]:9464", ("::1", 9464)),
])
def test_listen_addresses_default_to_loopback(text: str, expected: tuple[str, int]) -> None:
    assert listen_address(text) == expected


@pytest.mark.parametrize("text", ["", "http", "0", "65536", "::1:9464", "host:port", "127.0.0.1:"])
def test_listen_addresses_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT|brackets"):
        listen_address(text)


@contextmanager
def serving(metrics: Metrics, listen: str | None = None) -> Iterator[int]:
    server = MetricsServer(metrics, listen or str(free_port()))
    server.start()
    try:
        yield server.port
    finally:
        server.close()


def test_events_move_the_numbers_and_the_health() -> None:
    now = [1_000.0]
    metrics = Metrics(wall=lambda: now[0])
    with serving(metrics) as port:
        assert health(port) == (503, {"status": "down", "child_pid": None, "restarts": 0, "rotations": 0, "last_success": None,
                                      "failing_sources": []})
        for event in [Event("child_started", child_pid=10),
                      Event("fetch", source="bao", ref="bao://db/creds/app", expires_at=1_060.0),
                      Event("fetch", source="bao", ref="bao://kv/gone", outcome="missing"),
                      Event("check", source="bao", ref="bao://kv/app", version="2"),
                      Event("check", source="bao", ref="bao://kv/app", outcome="unavailable"),
                      Event("token", source="bao", expires_at=4_600.0),
                      Event("rotation", source="bao", ref="bao://kv/app", version="3"),
                      Event("restart", child_pid=10, reason="rotation"),
                      Event("child_exited", child_pid=10)]:
            now[0] += 1
            metrics.emit(event)
        assert health(port)[0] == 503  # between a stop and a start
        metrics.emit(Event("child_started", child_pid=11))
        metrics.emit(Event("outage", source="bao", outcome="unavailable"))
        assert health(port) == (200, {"status": "stale", "child_pid": 11, "restarts": 1, "rotations": 1, "last_success": 1_004.0,
                                      "failing_sources": ["bao"]})
        metrics.emit(Event("recovered", source="bao"))
        metrics.emit(Event("failover", source="dr", ref="bao://kv/app", reason="bao"))
        metrics.emit(Event("lease_renew", source="bao", ref="bao://db/creds/app", expires_at=1_100.0))
        now[0] = 1_020.0
        samples = scrape(port)
        assert health(port)[1]["status"] == "ok"
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
    assert samples == {
        ("launcher_child_up", ()): 1.0,
        ("launcher_child_restarts_total", (("reason", "rotation"),)): 1.0,
        ("launcher_rotations_total", ()): 1.0,
        ("launcher_secret_fetches_total", (("outcome", "missing"), ("source", "bao"))): 1.0,
        ("launcher_secret_fetches_total", (("outcome", "ok"), ("source", "bao"))): 1.0,
        ("launcher_secret_checks_total", (("outcome", "ok"), ("source", "bao"))): 1.0,
        ("launcher_secret_checks_total", (("outcome", "unavailable"), ("source", "bao"))): 1.0,
        ("launcher_failovers_total", (("fallback", "dr"), ("source", "bao"))): 1.0,
        ("launcher_watch_last_success_timestamp_seconds", ()): 1_009.0,  # the renewal
        ("launcher_lease_expiry_timestamp_seconds", (("ref", "bao://db/creds/app"),)): 1_100.0,
        ("launcher_token_expiry_timestamp_seconds", (("source", "bao"),)): 4_600.0,
        ("launcher_secret_age_seconds", (("ref", "bao://db/creds/app"),)): 18.0,  # read at 1_002
    }
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # closed


def test_the_server_thread_blocks_every_signal_and_a_bare_port_is_loopback() -> None:
    metrics = Metrics()
    server = MetricsServer(metrics, str(free_port()))
    server.start()
    try:
        assert server._server.server_address[0] == "127.0.0.1"
        assert server._thread is not None
        status = Path(f"/proc/self/task/{server._thread.native_id}/status").read_text()
        blocked = int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1):
            assert blocked & (1 << (sig - 1)), sig.name
    finally:
        server.close()


def test_a_port_in_use_is_78() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ManifestError, match=r"cannot listen on .*address already in use") as info:
            MetricsServer(Metrics(), f"127.0.0.1:{taken.getsockname()[1]}")
    assert info.value.exit_code == 78


# -- the command line -----------------------------------------------------------------


def file_project(tmp_path: Path, extra: str = "") -> None:
    (tmp_path / "secrets.json").write_text(json.dumps({"token": CANARY}))
    (tmp_path / "launcher.yaml").write_text(f"version: 1\nsources:\n  dev: {{type: file, path: secrets.json}}\nenv:\n  TOKEN: dev://token\n{extra}")


def test_a_port_in_use_is_78_before_the_child_runs(tmp_path: Path) -> None:
    file_project(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = run_launcher(["run", "--metrics", str(taken.getsockname()[1]), "--", "touch", "ran"], cwd=tmp_path)
    assert proc.returncode == 78 and "address already in use" in proc.stderr
    assert not (tmp_path / "ran").exists()


def test_only_run_serves_metrics(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        file_project(tmp_path, f"metrics: {{listen: '127.0.0.1:{taken.getsockname()[1]}'}}\n")
        for args in (["check"], ["env"], ["exec", "--", "true"]):
            proc = run_launcher(args, cwd=tmp_path)
            assert proc.returncode == 0, (args, proc.stderr)  # the port in use does not matter: no server


@pytest.mark.parametrize(("section", "message"), [
    ("metrics: {listen: 'http://x'}", "launcher.yaml:6: metrics.listen: 'http://x' is not HOST:PORT"),
    ("metrics: {port: 9464}", "launcher.yaml:6: metrics.port: unknown key (allowed: listen)"),
    ("audit: {file: x}", "launcher.yaml:6: audit.file: unknown key (allowed: path)"),
])
def test_the_manifest_sections_are_checked(tmp_path: Path, section: str, message: str) -> None:
    file_project(tmp_path, section + "\n")
    proc = run_launcher(["check", "--offline"], cwd=tmp_path)
    assert proc.returncode == 78 and message in proc.stderr, proc.stderr


def test_the_manifest_address_is_served_until_the_launcher_leaves(tmp_path: Path) -> None:
    port = free_port()
    file_project(tmp_path, f"metrics: {{listen: '127.0.0.1:{port}'}}\n")
    proc = subprocess.Popen([LAUNCHER, "run", "--", "sleep", "300"], cwd=tmp_path, env=launcher_env())
    try:
        wait_for(lambda: (h := answers(port)) and h[0] == 200, what="the child to run")
        assert scrape(port)[("launcher_child_up", ())] == 1.0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 143
    finally:
        proc.kill()
        proc.wait()
    assert answers(port) is None  # nothing listens once the launcher is gone


# -- against OpenBao ----------------------------------------------------------------------


class Launched:
    """``launcher run --metrics PORT`` of ``sleep``, stopped on exit."""

    def __init__(self, tmp: Path, manifest: str, env: dict[str, str]) -> None:
        self.port = free_port()
        (tmp / "launcher.yaml").write_text(manifest)
        self.err = tmp / "stderr.log"
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen([LAUNCHER, "--log-level", "debug", "run", "--metrics", str(self.port), "--", "sleep", "300"],
                                         cwd=tmp, env=launcher_env({**env, "HOME": str(tmp)}), stdout=subprocess.DEVNULL, stderr=err)

    def __enter__(self) -> Launched:
        wait_for(lambda: answers(self.port) is not None and health(self.port)[0] == 200, timeout=20,
                 what=f"the child to run; log:\n{self.err.read_text()[-2000:]}")
        return self

    def value(self, name: str, **labels: str) -> float | None:
        return scrape(self.port).get((name, tuple(sorted(labels.items()))))

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        finally:
            self.proc.kill()
            self.proc.wait()
        assert CANARY not in self.err.read_text()


def watching(env: str, interval: str = "300ms") -> str:
    return f"version: 1\nenv:\n{env}watch: {{enabled: true, interval: {interval}, debounce: 0s}}\nprocess: {{stop_timeout: 2s}}\n"


@pytest.mark.vault
def test_a_rotation_moves_the_counters(openbao: OpenBao, tmp_path: Path) -> None:
    path = f"metrics/{openbao.unique()}"
    write_kv2(openbao, path, {"password": CANARY + "-1"})
    ref = f"vault://secret/{path}"
    with Launched(tmp_path, watching(f"  DB_PASSWORD: {ref}#password\n"), openbao.env()) as run:
        assert run.value("launcher_rotations_total") == 0 and run.value("launcher_child_restarts_total", reason="rotation") == 0
        assert run.value("launcher_secret_fetches_total", source="vault", outcome="ok") == 1
        wait_for(lambda: (run.value("launcher_secret_checks_total", source="vault", outcome="ok") or 0) >= 1, what="a check")
        write_kv2(openbao, path, {"password": CANARY + "-2"})
        wait_for(lambda: run.value("launcher_child_restarts_total", reason="rotation") == 1, what="the restart")
        wait_for(lambda: health(run.port)[0] == 200, what="the new child")
        assert run.value("launcher_rotations_total") == 1 and run.value("launcher_child_up") == 1
        assert run.value("launcher_secret_fetches_total", source="vault", outcome="ok") == 2
        last = run.value("launcher_watch_last_success_timestamp_seconds")
        assert last is not None and abs(last - time.time()) < 5
        age = run.value("launcher_secret_age_seconds", ref=ref)
        assert age is not None and 0 <= age < 5
        assert health(run.port)[1]["restarts"] == 1


@pytest.mark.vault
def test_an_outage_turns_health_stale_then_ok(openbao: OpenBao, tmp_path: Path) -> None:
    path = f"metrics/{openbao.unique()}"
    write_kv2(openbao, path, {"password": CANARY})
    port = int(openbao.addr.rsplit(":", 1)[1])
    with fault_proxy("127.0.0.1", port) as proxy:
        manifest = watching(f"  DB_PASSWORD: vault://secret/{path}#password\n", "200ms") + "retry: {attempts: 1}\n"
        with Launched(tmp_path, manifest, {**openbao.env(), "VAULT_ADDR": proxy.addr}) as run:
            assert health(run.port)[1]["status"] == "ok"
            proxy.set_mode("down")
            status, body = wait_for(lambda: (h := health(run.port))[1]["status"] == "stale" and h, what="stale health")
            assert status == 200 and body["failing_sources"] == ["vault"]  # the child runs on: restarting the pod cannot help
            assert (run.value("launcher_secret_checks_total", source="vault", outcome="unavailable") or 0) >= 1
            stale_since = run.value("launcher_watch_last_success_timestamp_seconds")
            proxy.set_mode("pass")
            wait_for(lambda: health(run.port)[1]["status"] == "ok", what="ok health again")
            assert (run.value("launcher_watch_last_success_timestamp_seconds") or 0) > (stale_since or 0)
            assert run.value("launcher_child_restarts_total", reason="rotation") == 0


@pytest.mark.vault
def test_health_is_503_until_the_first_child_runs(openbao: OpenBao, tmp_path: Path) -> None:
    path = f"metrics/{openbao.unique()}"
    write_kv2(openbao, path, {"password": CANARY})
    port = free_port()
    (tmp_path / "launcher.yaml").write_text(f"version: 1\nenv:\n  DB_PASSWORD: vault://secret/{path}#password\n"
                                            "retry: {initial_delay: 100ms, max_delay: 200ms}\n")
    with fault_proxy("127.0.0.1", int(openbao.addr.rsplit(":", 1)[1]), mode="stall") as proxy:  # the first read hangs
        env = launcher_env({**openbao.env(), "VAULT_ADDR": proxy.addr, "HOME": str(tmp_path)})
        proc = subprocess.Popen([LAUNCHER, "run", "--metrics", str(port), "--", "sleep", "300"], cwd=tmp_path, env=env,
                                stderr=subprocess.DEVNULL)
        try:
            assert wait_for(lambda: answers(port), what="/healthz while resolving") == (503, {
                "status": "down", "child_pid": None, "restarts": 0, "rotations": 0, "last_success": None, "failing_sources": []})
            assert scrape(port)[("launcher_child_up", ())] == 0
            proxy.set_mode("pass")  # cuts the hung connection: the read is retried and answered
            wait_for(lambda: health(port)[0] == 200, what="the child to run")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)


@pytest.mark.vault
def test_lease_and_token_expiry_agree_with_the_server(openbao: OpenBao, tmp_path: Path) -> None:
    fake = FakeHTTP(status=201)  # RabbitMQ's management API, as OpenBao's rabbitmq engine calls it
    mount = openbao.unique("rabbitmq")
    client = openbao.client
    try:
        client.sys.enable_secrets_engine("rabbitmq", path=mount)
        client.adapter.post(f"/v1/{mount}/config/connection",
                            json={"connection_uri": fake.url, "username": "guest", "password": "guest", "verify_connection": False})
        client.adapter.post(f"/v1/{mount}/config/lease", json={"ttl": 300, "max_ttl": 900})
        client.adapter.post(f"/v1/{mount}/roles/app", json={"vhosts": '{"/": {"configure": ".*", "write": ".*", "read": ".*"}}'})
        policy = openbao.unique("pol")
        openbao.policy(policy, f'path "{mount}/creds/app" {{ capabilities = ["read"] }}\n')
        token = openbao.child_token([policy], ttl="1h")
        ref = f"vault://{mount}/creds/app"
        env = f"  MQ_USER: {ref}#username\n  MQ_PASSWORD: {ref}#password\n"
        with Launched(tmp_path, watching(env, "1s"), {**openbao.env(), "VAULT_TOKEN": token}) as run:
            leases = client.adapter.request("LIST", f"/v1/sys/leases/lookup/{mount}/creds/app/")["data"]["keys"]
            assert len(leases) == 1  # both variables come from one read, hence one lease
            lease = client.adapter.post("/v1/sys/leases/lookup", json={"lease_id": f"{mount}/creds/app/{leases[0]}"})["data"]
            expires = _unix(lease["expire_time"])
            gauge = run.value("launcher_lease_expiry_timestamp_seconds", ref=ref)
            assert gauge is not None and abs(gauge - expires) < 5, (gauge, expires)
            token_expires = _unix(client.auth.token.lookup(token)["data"]["expire_time"])
            wait_for(lambda: run.value("launcher_token_expiry_timestamp_seconds", source="vault"), what="the token gauge")
            gauge = run.value("launcher_token_expiry_timestamp_seconds", source="vault")
            assert gauge is not None and abs(gauge - token_expires) < 5, (gauge, token_expires)
            assert leases[0] not in repr(scrape(run.port))  # never a lease id
    finally:
        fake.stop()


def _unix(rfc3339: str) -> float:
    """OpenBao's ``2026-12-01T16:30:00.123456789Z`` as Unix time, to the second (the tests allow 5 s)."""
    from datetime import datetime, timezone

    return datetime.strptime(rfc3339[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


def test_the_metrics_extra_is_imported_only_when_on() -> None:
    code = "import sys, launcher.cli; assert 'prometheus_client' not in sys.modules and 'launcher.observe.metrics' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_without_prometheus_client_metrics_are_78_naming_the_extra(tmp_path: Path) -> None:
    file_project(tmp_path)
    code = ("import sys; sys.modules['prometheus_client'] = None  # as if not installed\n"
            "from launcher.cli import main; main(['run', '--metrics', sys.argv[1], '--', 'touch', 'ran'])")
    proc = subprocess.run([sys.executable, "-c", code, str(free_port())], cwd=tmp_path, env=launcher_env(), capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 78 and "pip install 'secret-launcher[metrics]'" in proc.stderr, proc.stderr
    assert not (tmp_path / "ran").exists()
