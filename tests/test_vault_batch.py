"""Many Vault secrets at once: one batch, and the usual reads for whatever it leaves.

From ``resolver.BATCH_MIN`` reads of one source, the resolver asks the source
for a batch (``Batching.read_many``); the Vault source sends its KV v2 reads at
once, one connection each (``launcher.sources.vault.batch.get_many``). These tests
pin that the batch is an optimisation only: the same values and versions, one read
per secret at the server, and every error or fault handled by the one-by-one reads
with their retries and messages; and that no intermediary can cross-wire answers.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import launcher
from launcher.resolve.resolver import BATCH_MIN
from launcher.sources.vault import batch
from launcher.sources.vault.connection import Connection
from launcher.sources.vault.http import VaultHTTP
from tests.fault_proxy import fault_proxy
from tests.helpers import launcher_env, run_launcher
from tests.openbao import OpenBao, running_openbao, write_kv2

pytestmark = pytest.mark.vault

N = 3 * BATCH_MIN


class Counted:
    """Counts the one-by-one GETs and the batches a test's launcher makes (in this process)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gets: list[str] = []
        self.batches: list[int] = []
        get, get_many = VaultHTTP.get, batch.get_many

        def counting_get(http: VaultHTTP, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
            self.gets.append(path)
            return get(http, path, *args, **kwargs)

        def counting_get_many(conn: Connection, paths: Any, token: str) -> list[dict[str, Any] | None]:
            self.batches.append(len(paths))
            return get_many(conn, paths, token)

        monkeypatch.setattr(VaultHTTP, "get", counting_get)
        monkeypatch.setattr(batch, "get_many", counting_get_many)

    def data_gets(self) -> list[str]:
        return [p for p in self.gets if not p.startswith("sys/")]


def write_many(server: OpenBao, prefix: str, n: int = N) -> dict[str, str]:
    """``n`` KV v2 secrets ``<prefix>/p<i>`` holding ``{"v": "<prefix>-<i>"}``; name -> value."""
    values = {}
    for i in range(n):
        write_kv2(server, f"{prefix}/p{i}", {"v": f"{prefix}-{i}"})
        values[f"S{i}"] = f"{prefix}-{i}"
    return values


def manifest(tmp_path: Path, prefix: str, extra: str = "", n: int = N) -> str:
    lines = ["version: 1", "env:", *(f"  S{i}: vault://secret/{prefix}/p{i}#v" for i in range(n))]
    path = tmp_path / "launcher.yaml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return str(path)


@pytest.fixture
def vault_env(openbao: OpenBao, monkeypatch: pytest.MonkeyPatch) -> OpenBao:
    for name in ("VAULT_ADDR", "VAULT_TOKEN", "BAO_ADDR", "BAO_TOKEN", "VAULT_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAULT_ADDR", openbao.addr)
    monkeypatch.setenv("VAULT_TOKEN", openbao.token)
    return openbao


def test_many_secrets_come_in_one_batch_with_the_values_and_versions_of_single_reads(
        vault_env: OpenBao, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = vault_env.unique("batch")
    values = write_many(vault_env, prefix)
    write_kv2(vault_env, f"{prefix}/p3", {"v": "newer"})  # p3 is at version 2
    values["S3"] = "newer"
    extra = (f"  OLD: vault://secret/{prefix}/p3?version=1#v\n"
             f"  GONE: {{ref: 'vault://secret/{prefix}/nothing#v', optional: true}}\n")
    counted = Counted(monkeypatch)
    with launcher.Client(manifest(tmp_path, prefix, extra)) as client:
        loaded = dict(client.load())
        stats = client.stats()
    assert loaded == {**values, "OLD": f"{prefix}-3"}
    assert counted.batches == [N + 2]
    # Only the secret that does not exist was read again one by one (to say why it is missing).
    assert counted.data_gets() == [f"secret/data/{prefix}/nothing"]
    assert stats["fetches"] == N + 2
    # Each secret reached the server once: the batch never doubles a read.
    for i in range(N):
        assert vault_env.reads_of(f"secret/data/{prefix}/p{i}") == (2 if i == 3 else 1)  # p3: latest and version 1


def test_a_batch_that_answers_an_error_leaves_the_message_to_the_single_read(
        vault_env: OpenBao, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = vault_env.unique("batch")
    write_many(vault_env, prefix)
    extra = f"  MISSING: vault://secret/{prefix}/nothing#v\n"
    counted = Counted(monkeypatch)
    with launcher.Client(manifest(tmp_path, prefix, extra)) as client, pytest.raises(launcher.LauncherError) as caught:
        client.load()
    assert f"vault://secret/{prefix}/nothing" in str(caught.value) and "not found" in str(caught.value)
    assert counted.batches == [N + 1]
    assert counted.data_gets() == [f"secret/data/{prefix}/nothing"]


def test_below_the_batch_size_reads_stay_one_by_one(vault_env: OpenBao, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = vault_env.unique("few")
    values = write_many(vault_env, prefix, BATCH_MIN - 1)
    counted = Counted(monkeypatch)
    with launcher.Client(manifest(tmp_path, prefix, n=BATCH_MIN - 1)) as client:
        assert dict(client.load()) == values
    assert counted.batches == []
    assert len(counted.data_gets()) == BATCH_MIN - 1


def test_the_cli_gets_every_value_through_a_batch(openbao: OpenBao, tmp_path: Path) -> None:
    prefix = openbao.unique("cli")
    values = write_many(openbao, prefix)
    proc = run_launcher(["env", "-m", manifest(tmp_path, prefix), "--format", "json"],
                        env=launcher_env({**openbao.env(), "HOME": str(tmp_path)}))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == values
    assert proc.stderr == ""


# -- servers and networks that keep one request per connection -----------------------------


class OneAnswerPerConnection(http.server.ThreadingHTTPServer):
    """A minimal Vault read API over HTTP/1.0: one answer, then the connection closes.

    Stands for a load balancer or proxy in front of Vault that serves one request
    per connection: exactly what the batch asks of it.
    """

    daemon_threads = True

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.paths: list[str] = []
        super().__init__(("127.0.0.1", 0), _OneAnswerHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _OneAnswerHandler(http.server.BaseHTTPRequestHandler):
    server: OneAnswerPerConnection

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        body: dict[str, Any]
        if self.path.startswith("/v1/sys/internal/ui/mounts/"):
            status, body = 200, {"data": {"path": "secret/", "type": "kv", "options": {"version": "2"}}}
        elif (value := self.server.secrets.get(self.path.removeprefix("/v1/secret/data/"))) is not None:
            status, body = 200, {"data": {"data": {"v": value}, "metadata": {"version": 1}}}
        else:
            status, body = 404, {"errors": []}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def one_answer() -> Iterator[OneAnswerPerConnection]:
    server = OneAnswerPerConnection({f"app/p{i}": f"value-{i}" for i in range(N)})
    yield server
    server.shutdown()
    server.server_close()


def test_a_server_that_answers_once_per_connection_serves_the_whole_batch(
        one_answer: OneAnswerPerConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", one_answer.url)
    monkeypatch.setenv("VAULT_TOKEN", "s.test")
    counted = Counted(monkeypatch)
    with launcher.Client(manifest(tmp_path, "app")) as client:
        loaded = dict(client.load())
    assert loaded == {f"S{i}": f"value-{i}" for i in range(N)}
    assert counted.batches == [N]
    # One request per connection is all the batch asks: nothing is left to read one by one.
    assert counted.data_gets() == []
    data_paths = [p for p in one_answer.paths if p.startswith("/v1/secret/data/")]
    assert sorted(data_paths) == sorted(f"/v1/secret/data/app/p{i}" for i in range(N))


def test_no_batch_through_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    conn = Connection("http://vault.example:8200", None, True, None)
    tried: list[object] = []
    monkeypatch.setattr(batch.socket, "getaddrinfo", lambda *args, **kwargs: tried.append(args) or [])
    assert batch.get_many(conn, [("secret/data/a", None), ("secret/data/b", None)], "s.token") == [None, None]
    assert tried == []  # no connection was even tried


class Disorderly:
    """An HTTP proxy that answers out of order: what broke positional pipelining.

    Per client connection it takes every request that arrives (pipelined ones
    included, within 50 ms of the first), asks the server for each, and writes the
    answers back ``reverse``d, or the first one ``repeat``ed once more, then closes
    the connection. A client that matched answers to requests by position put one
    secret's value into another variable behind such a proxy; one request per
    connection leaves it nothing to disorder.
    """

    def __init__(self, upstream: str, mode: str) -> None:
        import socket

        self.upstream, self.mode = upstream.removeprefix("http://"), mode
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.addr = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: Any) -> None:
        import select

        with client:
            data = b""
            while b"\r\n\r\n" not in data:  # the first request's head
                if not (chunk := client.recv(65536)):
                    return
                data += chunk
            while select.select([client], [], [], 0.05)[0] and (chunk := client.recv(65536)):  # pipelined ones
                data += chunk
            answers = [self._ask(head) for head in data.split(b"\r\n\r\n") if head.strip()]
            if self.mode == "reverse":
                answers.reverse()
            else:
                answers.insert(0, answers[0])
            client.sendall(b"".join(answers))

    def _ask(self, head: bytes) -> bytes:
        """The server's answer to one bodiless request, as bytes to write back (HTTP/1.1, closing)."""
        import http.client

        line, *fields = head.decode("latin-1").split("\r\n")
        method, target, _ = line.split(" ", 2)
        headers = dict(f.split(": ", 1) for f in fields if ": " in f)
        headers = {k: v for k, v in headers.items() if k.lower() not in ("connection", "host")}
        conn = http.client.HTTPConnection(self.upstream, timeout=10)
        try:
            conn.request(method, target, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        return (f"HTTP/1.1 {resp.status} {resp.reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body

    def close(self) -> None:
        self._listener.close()


@pytest.mark.parametrize("mode", ["reverse", "repeat"])
def test_a_proxy_that_disorders_answers_cannot_cross_wire_secrets(openbao: OpenBao, tmp_path: Path, mode: str) -> None:
    prefix = openbao.unique(f"disorder-{mode}")
    values = write_many(openbao, prefix)
    proxy = Disorderly(openbao.addr, mode)
    try:
        env = launcher_env({"VAULT_ADDR": proxy.addr, "VAULT_TOKEN": openbao.token, "HOME": str(tmp_path)})
        proc = run_launcher(["env", "-m", manifest(tmp_path, prefix), "--format", "json"], env=env)
    finally:
        proxy.close()
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == values  # every variable its own secret's value
    assert proxy.connections >= N  # the batch went through the proxy: one connection per read


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["stall", "reset", "garbage"])
def test_a_faulty_network_under_a_batch_still_ends_within_the_deadline(openbao: OpenBao, tmp_path: Path, mode: str) -> None:
    prefix = openbao.unique("fault")
    write_many(openbao, prefix)
    m = manifest(tmp_path, prefix, "retry: {attempts: 100, initial_delay: 100ms, max_delay: 500ms, deadline: 3s}\n")
    host, port = openbao.addr.removeprefix("http://").rsplit(":", 1)
    with fault_proxy(host, int(port)) as proxy:
        proxy.set_mode(mode)
        env = launcher_env({"VAULT_ADDR": proxy.addr, "VAULT_TOKEN": openbao.token, "HOME": str(tmp_path)})
        started = time.monotonic()
        proc = run_launcher(["exec", "-m", m, "--", "/bin/true"], env=env, timeout=15)
        wall = time.monotonic() - started
    assert proc.returncode == 69, proc.stderr
    # The batch has a tenth of the deadline; the one-by-one reads keep theirs.
    assert wall < 3.0 + 0.3 + 1.0, f"took {wall:.2f}s with a 3 s deadline:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr


def test_a_batch_over_tls_verifies_the_server(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with running_openbao(tmp_path_factory.mktemp("openbao-tls-batch"), tls=True, audit=False) as server:
        assert server.ca_cert is not None
        prefix = "tls"
        values = write_many(server, prefix)
        monkeypatch.setenv("VAULT_ADDR", server.addr)
        monkeypatch.setenv("VAULT_TOKEN", server.token)
        monkeypatch.setenv("VAULT_CACERT", server.ca_cert)
        counted = Counted(monkeypatch)
        with launcher.Client(manifest(tmp_path, prefix)) as client:
            assert dict(client.load()) == values
        assert counted.batches == [N]
        assert counted.data_gets() == []
        # With a CA that did not sign the server's certificate the batch gets nothing,
        # and the single reads report the certificate (77).
        import trustme

        monkeypatch.setenv("VAULT_CACERT", str(_other_ca(tmp_path, trustme)))
        with launcher.Client(manifest(tmp_path, prefix)) as client, pytest.raises(launcher.LauncherError) as caught:
            client.load()
        assert "not trusted" in str(caught.value)


def _other_ca(tmp_path: Path, trustme: Any) -> Path:
    path = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path
