"""Observability's cost: RSS and CPU of a watching ``launcher run`` with metrics and audit on, against off.

Two launchers run side by side against one OpenBao dev server, each
supervising ``sleep`` and watching ``--secrets`` KV v2 secrets (one path each)
every ``--interval`` seconds: one plain, one with ``--metrics PORT`` and
``--audit FILE``. The audit trail then gets a ``check`` line per secret per
interval (100 lines/s at N = 100 and 1 s), and ``/metrics`` is scraped every
``--scrape`` seconds during the window (as Prometheus would; 15 s is its
default). After both children started and ``--settle`` seconds passed, psutil
samples each supervising process every second for ``--window`` seconds: RSS is
the median of the samples, CPU the user + system time over the window as % of
one core. Runs alternate which contender starts first.

Targets: CPU on <= 1.10x off, RSS on - off <= 5 MiB.

    python benchmarks/bench_observability.py [--window 60] [--runs 3] [--secrets 100] [--interval 1]
"""

from __future__ import annotations

import argparse
import socket
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
from benchlib import (
    LAUNCHER,
    OpenBao,
    Report,
    Target,
    child_command,
    clean_env,
    load_line,
    median,
    ratio,
    spawn,
    stop,
    stop_cleanly_on_signals,
    table,
    wait_mark,
    workdir,
    write_manifest,
)

CONTENDERS = ("off", "metrics + audit")
MIB = 1024 * 1024


@dataclass
class Sample:
    rss_median: float  # MiB
    rss_peak: float  # MiB
    cpu_percent: float  # of one core
    audit_lines_per_s: float


def names_for(n: int) -> list[str]:
    return [f"obs/p{i}" for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_run(opts: argparse.Namespace, server: OpenBao, base: Path, token: str, order: tuple[str, ...]) -> dict[str, Sample]:
    manifest = write_manifest(base / "launcher.yaml", names_for(opts.secrets), watch=(opts.interval, 0.0))
    env = clean_env({"VAULT_ADDR": server.addr, "VAULT_TOKEN": token})
    procs, marks = {}, {}
    port = free_port()
    audit = base / f"audit-{time.monotonic_ns()}.jsonl"
    try:
        for kind in order:
            slug = "on" if kind != "off" else "off"
            marks[kind] = base / f"mark-{slug}-{time.monotonic_ns()}"
            extra = ["--metrics", str(port), "--audit", str(audit)] if kind != "off" else []
            argv = [LAUNCHER, "run", "-m", str(manifest), *extra, "--", "bash", "-c", child_command(marks[kind], ["S0"], keep_running=True)]
            procs[kind] = spawn(argv, env, base / f"{slug}.log", cwd=base)
        for kind in order:
            wait_mark(marks[kind], 1, timeout=120)
        time.sleep(opts.settle)
        watched = {kind: psutil.Process(p.pid) for kind, p in procs.items()}
        cpu0 = {kind: _cpu(p) for kind, p in watched.items()}
        lines0 = _count_lines(audit)
        rss: dict[str, list[float]] = {kind: [] for kind in CONTENDERS}
        start = time.monotonic()
        end, next_scrape = start + opts.window, start
        while (now := time.monotonic()) < end:
            if now >= next_scrape:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                    resp.read()
                next_scrape += opts.scrape
            for kind, p in watched.items():
                rss[kind].append(p.memory_info().rss / MIB)
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        elapsed = time.monotonic() - start
        cpu1 = {kind: _cpu(p) for kind, p in watched.items()}
        lines = (_count_lines(audit) - lines0) / elapsed
        for kind, proc in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} exited during the window (code {proc.returncode})")
    finally:
        for proc in procs.values():
            stop(proc)
    return {kind: Sample(median(rss[kind]), max(rss[kind]), 100 * (cpu1[kind] - cpu0[kind]) / elapsed,
                         lines if kind != "off" else 0.0) for kind in CONTENDERS}


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def main(argv: list[str] | None = None) -> Report:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=float, default=60.0, help="seconds sampled per run")
    ap.add_argument("--settle", type=float, default=5.0, help="warm-up seconds after both children started")
    ap.add_argument("--runs", type=int, default=3, help="runs (medians are reported)")
    ap.add_argument("--secrets", type=int, default=100, help="watched secrets (N)")
    ap.add_argument("--interval", type=float, default=1.0, help="check interval, seconds")
    ap.add_argument("--scrape", type=float, default=5.0, help="seconds between scrapes of /metrics")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    opts = ap.parse_args(argv)
    samples: dict[str, list[Sample]] = {kind: [] for kind in CONTENDERS}
    with workdir("observability", opts.keep) as base, OpenBao(base / "bao") as server:
        for i, name in enumerate(names_for(opts.secrets)):
            server.write(name, f"v{i}")
        token = server.token_for("bench-observability")
        for run in range(opts.runs):
            order = CONTENDERS if run % 2 == 0 else CONTENDERS[::-1]
            for kind, sample in one_run(opts, server, base, token, order).items():
                samples[kind].append(sample)
    return report(samples, opts)


def report(samples: dict[str, list[Sample]], opts: argparse.Namespace) -> Report:
    def med(kind: str, attr: str) -> float:
        return median([getattr(s, attr) for s in samples[kind]])

    rows = [[kind, med(kind, "rss_median"), med(kind, "rss_peak"), med(kind, "cpu_percent"), med(kind, "audit_lines_per_s")]
            for kind in CONTENDERS]
    on, off = CONTENDERS[1], CONTENDERS[0]
    per_run = [[i + 1, s_off.cpu_percent, s_on.cpu_percent, s_on.rss_median - s_off.rss_median]
               for i, (s_off, s_on) in enumerate(zip(samples[off], samples[on], strict=True))]
    rep = Report(f"Observability: N = {opts.secrets} secrets, {opts.interval:g} s checks, over {opts.window:g} s "
                 f"(medians of {opts.runs} runs)")
    rep.tables.append(table(["launcher run", "RSS MiB", "peak RSS MiB", "CPU %", "audit lines/s"], rows))
    rep.tables.append(table(["run", "CPU % off", "CPU % on", "RSS on - off MiB"], per_run))
    rep.targets += [
        Target("observability: CPU with metrics + audit / without", ratio(med(on, "cpu_percent"), med(off, "cpu_percent")), 1.10,
               "bench_observability"),
        Target("observability: RSS with metrics + audit - without (MiB)", med(on, "rss_median") - med(off, "rss_median"), 5.0,
               "bench_observability"),
    ]
    rep.notes.append(f"CPU % is of one core; both run at once against one server; /metrics scraped every {opts.scrape:g} s; "
                     f"{load_line()} at the end")
    return rep


if __name__ == "__main__":
    stop_cleanly_on_signals()
    print(main().render())
