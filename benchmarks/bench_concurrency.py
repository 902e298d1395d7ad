"""Concurrency: ``launcher exec`` behind a proxy that delays every request by 20 ms.

A TCP proxy in this script (asyncio, on a thread) sits in front of a local
OpenBao dev server and holds each HTTP request for ``--delay`` seconds before
passing it on, which makes every round trip cost what a Vault across a region
costs. ``launcher exec`` then resolves N = 1 secret, and N = 100 secrets on 100
paths, through the proxy (and directly, for reference). With fetches truly
concurrent, N = 100 costs a few round trips more than N = 1, not 99.

    python benchmarks/bench_concurrency.py [--runs 15] [--delay 0.02]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from benchlib import (
    LAUNCHER,
    OpenBao,
    Proxy,
    Report,
    Target,
    child_command,
    clean_env,
    load_line,
    median,
    ratio,
    stop_cleanly_on_signals,
    table,
    time_to_child,
    workdir,
    write_manifest,
)

SIZES = (1, 100)
_counter = itertools.count()


def exec_once(n: int, addr: str, server: OpenBao, base: Path) -> float:
    """One ``launcher exec`` with ``n`` secrets against ``addr``; seconds to the child."""
    mark = base / f"mark-{next(_counter)}"
    cmd = child_command(mark, ["S0", f"S{n - 1}"])
    argv = [LAUNCHER, "exec", "-m", str(base / f"launcher-{n}.yaml"), "--", "bash", "-c", cmd]
    elapsed, values = time_to_child(argv, clean_env(server.env(addr)), mark, base / "launcher.log", cwd=base)
    if values != ["v0", f"v{n - 1}"]:
        raise RuntimeError(f"N={n}: the child did not get the secrets")
    return elapsed


def main(argv: list[str] | None = None) -> Report:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15, help="measured runs per case (after one warm-up)")
    ap.add_argument("--delay", type=float, default=0.02, help="seconds the proxy holds each request")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    opts = ap.parse_args(argv)
    times: dict[tuple[int, str], list[float]] = {}
    requests_per_run: dict[int, float] = {}
    with workdir("concurrency", opts.keep) as base, OpenBao(base / "bao") as server, Proxy(server.addr, opts.delay) as proxy:
        for i in range(max(SIZES)):
            server.write(f"c/p{i}", f"v{i}")
        for n in SIZES:
            write_manifest(base / f"launcher-{n}.yaml", [f"c/p{i}" for i in range(n)])
        for n in SIZES:  # warm-up
            for addr in (server.addr, proxy.addr):
                exec_once(n, addr, server, base)
        for _ in range(opts.runs):
            for n in SIZES:
                times.setdefault((n, "direct"), []).append(exec_once(n, server.addr, server, base))
                before = proxy.total()
                times.setdefault((n, "proxy"), []).append(exec_once(n, proxy.addr, server, base))
                requests_per_run[n] = proxy.total() - before
    return report(times, requests_per_run, opts)


def report(times: dict[tuple[int, str], list[float]], requests_per_run: dict[int, float], opts: argparse.Namespace) -> Report:
    med = {key: median(v) * 1000 for key, v in times.items()}
    rows = [[n, med[(n, "direct")], med[(n, "proxy")], med[(n, "proxy")] - med[(n, "direct")], int(requests_per_run[n])]
            for n in SIZES]

    def paired(where: str) -> float:
        """The median over rounds of N=100 / N=1 within each round (robust to drifting load)."""
        return median([a / b for a, b in zip(times[(100, where)], times[(1, where)], strict=True)])

    value = paired("proxy")
    rep = Report(f"Concurrency: launcher exec behind a {opts.delay * 1000:g} ms-per-request proxy (median ms)")
    rep.tables.append(table(["N secrets", "direct ms", "via proxy ms", "proxy adds ms", "requests per run"], rows))
    rep.tables.append(table(["", "ratio (median of per-round ratios)", "ratio of medians"], [
        ["via proxy: N=100 / N=1", value, ratio(med[(100, "proxy")], med[(1, "proxy")])],
        ["direct: N=100 / N=1", paired("direct"), ratio(med[(100, "direct")], med[(1, "direct")])]]))
    rep.targets.append(Target("concurrency: N=100 / N=1 behind the 20 ms proxy", value, 1.25, "bench_concurrency"))
    rep.notes.append(f"median of {opts.runs} runs after one warm-up, interleaved; {load_line()} at the end")
    rep.notes.append("requests per run as the proxy counts them: the mount lookup (sys/internal/ui/mounts), then one per read "
                     "(a batch of 8 or more opens a connection per read, all at once)")
    return rep


if __name__ == "__main__":
    stop_cleanly_on_signals()
    print(main().render())
