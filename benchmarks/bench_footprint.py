"""Footprint: RSS and CPU of the supervising process while it watches N secrets.

For N = 10 and N = 100 watched KV v2 secrets (one path each) and check
intervals of 1 s and 60 s, ``launcher run`` (``watch: {enabled: true,
interval: ...}``) and ``bao agent`` (``static_secret_render_interval``) run side
by side against one OpenBao dev server, each supervising ``sleep``. After both
children have started and ``--settle`` seconds have passed (the warm-up),
psutil samples the supervisor itself (not its child) every second for
``--window`` seconds:

- RSS: the median of the samples (MiB), and the peak;
- CPU: user + system time used during the window, as % of one core;
- requests/s that reached OpenBao, from its audit log (each contender has its
  own token, told apart by the token's display name).

    python benchmarks/bench_footprint.py [--window 60] [--runs 3]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from benchlib import (
    LAUNCHER,
    OpenBao,
    Report,
    Target,
    agent_argv,
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
    write_agent_config,
    write_manifest,
)

CONTENDERS = ("launcher run", "bao agent")
SIZES = (10, 100)
INTERVALS = (1.0, 60.0)
MIB = 1024 * 1024


@dataclass
class Sample:
    rss_median: float  # MiB
    rss_peak: float  # MiB
    cpu_percent: float  # of one core
    requests_per_s: float


def names_for(n: int) -> list[str]:
    return [f"fp/n{n}/p{i}" for i in range(n)]


def one_run(n: int, interval: float, opts: argparse.Namespace, server: OpenBao, base: Path,
            tokens: dict[str, str]) -> dict[str, Sample]:
    """Start both contenders, let them settle, sample them for the window, stop them."""
    procs = {}
    marks = {}
    try:
        for kind in CONTENDERS:
            slug = kind.replace(" ", "-")
            marks[kind] = base / f"mark-{slug}-{n}-{interval:g}-{time.monotonic_ns()}"
            cmd = child_command(marks[kind], ["S0"], keep_running=True)
            if kind == "launcher run":
                manifest = write_manifest(base / f"launcher-{n}-{interval:g}.yaml", names_for(n), watch=(interval, 0.0))
                argv = [LAUNCHER, "run", "-m", str(manifest), "--", "bash", "-c", cmd]
                env = clean_env({"VAULT_ADDR": server.addr, "VAULT_TOKEN": tokens[kind]})
            else:
                token_file = base / "agent-token"
                token_file.write_text(tokens[kind])
                config = write_agent_config(base / f"agent-{n}-{interval:g}.hcl", server.addr, token_file, names_for(n),
                                            ["bash", "-c", cmd], render_interval=interval)
                argv, env = agent_argv(config), clean_env({"HOME": str(base)})
            procs[kind] = spawn(argv, env, base / f"{slug}.log", cwd=base)
        for kind in CONTENDERS:
            wait_mark(marks[kind], 1, timeout=120)
        time.sleep(opts.settle)
        watched = {kind: psutil.Process(p.pid) for kind, p in procs.items()}
        server.audit_requests()  # skip everything before the window
        cpu0 = {kind: _cpu(p) for kind, p in watched.items()}
        rss: dict[str, list[float]] = {kind: [] for kind in CONTENDERS}
        start = time.monotonic()
        end = start + opts.window
        while (now := time.monotonic()) < end:
            for kind, p in watched.items():
                rss[kind].append(p.memory_info().rss / MIB)
            time.sleep(min(1.0, max(0.0, end - now)))
        elapsed = time.monotonic() - start
        cpu1 = {kind: _cpu(p) for kind, p in watched.items()}
        for kind, proc in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} exited during the window (code {proc.returncode})")
    finally:
        for proc in procs.values():
            stop(proc)
    records = server.audit_requests()
    out = {}
    for kind in CONTENDERS:
        display = "token-bench-" + kind.split()[0]
        count = sum(1 for _, who, _ in records if who == display)
        out[kind] = Sample(median(rss[kind]), max(rss[kind]), 100 * (cpu1[kind] - cpu0[kind]) / elapsed, count / elapsed)
    return out


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def main(argv: list[str] | None = None) -> Report:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=float, default=60.0, help="seconds sampled per run (RESULTS.md uses 60)")
    ap.add_argument("--settle", type=float, default=5.0, help="warm-up seconds after both children started")
    ap.add_argument("--runs", type=int, default=3, help="runs per configuration (medians are reported)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    opts = ap.parse_args(argv)
    samples: dict[tuple[str, int, float], list[Sample]] = {}
    with workdir("footprint", opts.keep) as base, OpenBao(base / "bao", audit=True) as server:
        for n in SIZES:
            for i, name in enumerate(names_for(n)):
                server.write(name, f"v{i}")
        tokens = {kind: server.token_for("bench-" + kind.split()[0]) for kind in CONTENDERS}
        for _ in range(opts.runs):
            for n in SIZES:
                for interval in INTERVALS:
                    for kind, sample in one_run(n, interval, opts, server, base, tokens).items():
                        samples.setdefault((kind, n, interval), []).append(sample)
    return report(samples, opts)


def report(samples: dict[tuple[str, int, float], list[Sample]], opts: argparse.Namespace) -> Report:
    def med(kind: str, n: int, interval: float, attr: str) -> float:
        return median([getattr(s, attr) for s in samples[(kind, n, interval)]])

    rows = []
    for n in SIZES:
        for interval in INTERVALS:
            row: list[object] = [n, f"{interval:g} s"]
            for kind in CONTENDERS:
                row += [med(kind, n, interval, "rss_median"), med(kind, n, interval, "cpu_percent"),
                        med(kind, n, interval, "requests_per_s")]
            row += [ratio(med("launcher run", n, interval, "rss_median"), med("bao agent", n, interval, "rss_median")),
                    ratio(med("launcher run", n, interval, "cpu_percent"), med("bao agent", n, interval, "cpu_percent"))]
            rows.append(row)
    peaks = [[n, f"{i:g} s", med("launcher run", n, i, "rss_peak"), med("bao agent", n, i, "rss_peak")] for n in SIZES for i in INTERVALS]
    rep = Report(f"Footprint: the supervising process over {opts.window:g} s (medians of {opts.runs} runs)")
    rep.tables.append(table(["N", "interval", "launcher RSS MiB", "launcher CPU %", "launcher req/s", "agent RSS MiB", "agent CPU %",
                             "agent req/s", "RSS ratio", "CPU ratio"], rows))
    rep.tables.append(table(["N", "interval", "launcher peak RSS MiB", "agent peak RSS MiB"], peaks))
    rss_ratio = max(ratio(med("launcher run", 10, i, "rss_median"), med("bao agent", 10, i, "rss_median")) for i in INTERVALS)
    cpu_ratio = ratio(med("launcher run", 100, 1.0, "cpu_percent"), med("bao agent", 100, 1.0, "cpu_percent"))
    rep.targets += [
        Target("footprint: RSS launcher / agent, N=10 (worse of 1 s and 60 s)", rss_ratio, 0.25, "bench_footprint"),
        Target("footprint: CPU launcher / agent, N=100 at 1 s", cpu_ratio, 0.2, "bench_footprint"),
    ]
    rep.notes.append(f"CPU % is of one core; window {opts.window:g} s after {opts.settle:g} s of settling; {load_line()} at the end")
    rep.notes.append("both contenders run at the same time against one server; the launcher checks each secret "
                     "every interval exactly, at a random phase of its own")
    rep.data = {"window_s": opts.window, "runs": opts.runs, "rows": [
        {"n": n, "interval_s": i, "contender": kind, "rss_mib": med(kind, n, i, "rss_median"), "rss_peak_mib": med(kind, n, i, "rss_peak"),
         "cpu_percent": med(kind, n, i, "cpu_percent"), "requests_per_s": med(kind, n, i, "requests_per_s")}
        for n in SIZES for i in INTERVALS for kind in CONTENDERS]}
    return rep


if __name__ == "__main__":
    stop_cleanly_on_signals()
    print(main().render())
