"""Ways to read many KV v2 secrets from one process: the experiment behind batched reads.

Each way reads N secrets (``secret/bench/c/p<i>``) from a local OpenBao dev
server, directly and through the 20 ms proxy of ``bench_concurrency.py`` (run
in a process of its own, so its CPU is not counted here):

- threads: W threads share one iterator and one urllib3 pool (the resolver's
  one-by-one reads);
- selectors: one thread drives K ``http.client`` connections with ``selectors``,
  a new GET on each connection as soon as its answer is in;
- ``batch.get_many``: the launcher's own batch: one connection per read, all
  opened at once from one thread, each answer read with ``http.client`` (one
  request per connection, so an answer is tied to its request by construction).

HTTP/1.1 pipelining (several GETs on one connection, answers matched by their
order) was measured here in round two and used until round three; it is gone:
an intermediary that reorders answers would put one secret's value into another
variable, and no KV v2 answer names its path to check it.

It prints wall and CPU milliseconds per batch (medians). Not a target: it is
how the batch was chosen (benchmarks/RESULTS.md, "Concurrency").

    python benchmarks/bench_reads.py [--n 100] [--rounds 15]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import urllib3
from benchlib import OpenBao, load_line, median, table, use_source_override, workdir

use_source_override()

from launcher.sources.vault import batch  # noqa: E402
from launcher.sources.vault.connection import Connection  # noqa: E402

Reader = Callable[[str, str, list[str]], dict[str, str]]


def value_of(body: bytes) -> str:
    return str(json.loads(body)["data"]["data"]["value"])


def by_threads(workers: int) -> Reader:
    def read(addr: str, token: str, paths: list[str]) -> dict[str, str]:
        pool = urllib3.PoolManager(maxsize=workers, block=False)
        out: dict[str, str] = {}
        pending = iter(paths)
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    path = next(pending, None)
                if path is None:
                    return
                out[path] = value_of(pool.request("GET", addr + path, headers={"X-Vault-Token": token}).data)

        helpers = [threading.Thread(target=work) for _ in range(min(workers, len(paths)) - 1)]
        for thread in helpers:
            thread.start()
        work()
        for thread in helpers:
            thread.join()
        pool.clear()
        return out

    return read


def _connect(addr: str) -> http.client.HTTPConnection:
    host, port = addr.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.connect()
    return conn


def by_selectors(connections: int) -> Reader:
    def read(addr: str, token: str, paths: list[str]) -> dict[str, str]:
        todo = list(reversed(paths))
        out: dict[str, str] = {}
        sel = selectors.DefaultSelector()
        conns = [_connect(addr) for _ in range(min(connections, len(paths)))]
        for conn in conns:
            path = todo.pop()
            conn.request("GET", path, headers={"X-Vault-Token": token})
            sel.register(conn.sock, selectors.EVENT_READ, (conn, path))
        open_conns = len(conns)
        while open_conns:
            for key, _ in sel.select():
                conn, path = key.data
                out[path] = value_of(conn.getresponse().read())
                if todo:
                    nxt = todo.pop()
                    conn.request("GET", nxt, headers={"X-Vault-Token": token})
                    sel.modify(conn.sock, selectors.EVENT_READ, (conn, nxt))
                else:
                    sel.unregister(conn.sock)
                    conn.close()
                    open_conns -= 1
        sel.close()
        return out

    return read


def by_batch(addr: str, token: str, paths: list[str]) -> dict[str, str]:
    bodies = batch.get_many(Connection(addr, None, True, None), [(p.removeprefix("/v1/"), None) for p in paths], token)
    return {p: str(b["data"]["data"]["value"]) for p, b in zip(paths, bodies, strict=True) if b is not None}


WAYS: dict[str, Reader] = {
    "threads x32, urllib3 (one by one)": by_threads(32),
    "threads x8, urllib3": by_threads(8),
    "selectors, 32 connections, http.client": by_selectors(32),
    "selectors, 8 connections, http.client": by_selectors(8),
    "selectors, 100 connections, http.client": by_selectors(100),
    "batch.get_many (the launcher's batch)": by_batch,
}


@contextlib.contextmanager
def proxy_process(upstream: str, delay: float) -> Iterator[str]:
    """The delaying proxy in a process of its own; yields its address."""
    code = (f"import sys, time; sys.path.insert(0, {str(Path(__file__).parent)!r}); from benchlib import Proxy\n"
            f"p = Proxy({upstream!r}, {delay!r}).__enter__(); print(p.port, flush=True)\n"
            "while True: time.sleep(3600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield f"http://127.0.0.1:{int(proc.stdout.readline())}"
    finally:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="secrets per batch")
    ap.add_argument("--rounds", type=int, default=15, help="measured rounds (after one warm-up)")
    ap.add_argument("--delay", type=float, default=0.02, help="seconds the proxy holds each request")
    opts = ap.parse_args(argv)
    with workdir("reads", False) as base, OpenBao(base / "bao") as server, proxy_process(server.addr, opts.delay) as proxied:
        for i in range(opts.n):
            server.write(f"c/p{i}", f"v{i}")
        paths = [f"/v1/secret/data/bench/c/p{i}" for i in range(opts.n)]
        want = {p: f"v{i}" for i, p in enumerate(paths)}
        addrs = {"direct": server.addr, "proxy": proxied}
        for name, way in WAYS.items():  # warm-up, and every way reads the right values
            for addr in addrs.values():
                if way(addr, server.token, paths) != want:
                    raise RuntimeError(f"{name}: wrong values")
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(opts.rounds):
            for name, way in WAYS.items():
                for label, addr in addrs.items():
                    wall, cpu = time.perf_counter(), time.process_time()
                    way(addr, server.token, paths)
                    samples.setdefault((name, label), []).append((time.perf_counter() - wall, time.process_time() - cpu))
    rows = []
    for name in WAYS:
        row: list[Any] = [name]
        for label in addrs:
            row += [median([s[0] for s in samples[(name, label)]]) * 1000, median([s[1] for s in samples[(name, label)]]) * 1000]
        rows.append(row)
    print(f"## Reading {opts.n} KV v2 secrets in one process (median ms of {opts.rounds} rounds)\n")
    print(table(["way", "direct wall ms", "direct CPU ms", "via proxy wall ms", "via proxy CPU ms"], rows))
    print(f"\n- CPU is this process's user + system time; the {opts.delay * 1000:.0f} ms proxy runs in a process of its own")
    print(f"- {load_line()} at the end")


if __name__ == "__main__":
    main()
