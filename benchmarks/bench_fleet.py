"""Fleet: 200 watchers checking every 10 s against one OpenBao; requests per second.

Two ways to make a fleet (``--mode``):

- ``threads`` (default): one worker process holds 200 independent
  (Resolver, Watcher) pairs from ``launcher.resolve.resolver`` / ``launcher.resolve.watcher``,
  each with its own source and connection pool, as 200 ``launcher run``
  processes would. All do their start-up work first (the initial reads and the
  token lookup), then every watcher starts at the same moment: a fleet
  restarted together (a rollout, or recovery after an outage).
- ``processes``: 200 real ``launcher run`` processes (each supervising
  ``sleep``), started one after another as fast as the machine allows.

Each watcher watches one KV v2 secret (10 distinct paths). OpenBao's audit log
counts every request that reaches the server; the window starts once the whole
fleet runs and lasts ``--duration`` seconds. Reported: the mean rate, the busiest
second and their ratio, for the whole window and for the part after the first
30 s. For reference, a simulation gives the busiest/mean ratio of the same
fleet with independent, uniformly random check phases (the best that
uncoordinated watchers can do), for the launcher's fixed per-secret schedule
and for per-check jitter.

    python benchmarks/bench_fleet.py [--mode threads|processes] [--duration 300]
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (
    LAUNCHER,
    PYTHON,
    OpenBao,
    Report,
    Target,
    child_command,
    clean_env,
    load_line,
    ratio,
    read_marks,
    spawn,
    stop,
    stop_cleanly_on_signals,
    table,
    use_source_override,
    wait_until,
    workdir,
    write_manifest,
)

PATHS = 10
STEADY_AFTER = 30.0


def manifests(base: Path, interval: float) -> list[Path]:
    return [write_manifest(base / f"fleet-{k}.yaml", [f"fleet/p{k}"], watch=(interval, 0.0)) for k in range(PATHS)]


def worker(opts: argparse.Namespace) -> None:
    """The threads mode's worker process: build the fleet, start it at once, run ``duration`` seconds."""
    use_source_override()
    from launcher.manifest import load_manifest
    from launcher.resolve.resolver import Resolver
    from launcher.resolve.watcher import Outage, Rotation, Watcher

    loaded = [load_manifest(p) for p in sorted(Path(opts.worker).glob("fleet-*.yaml"))]
    events: collections.Counter[str] = collections.Counter()

    def post(event: Rotation | Outage) -> None:
        events[type(event).__name__] += 1

    fleet = []
    for i in range(opts.count):
        manifest = loaded[i % len(loaded)]
        resolver = Resolver(manifest)
        resolution = resolver.resolve(os.environ, inline=False)
        failure = resolution.failure()
        if failure is not None:
            raise failure
        # The rest of a launcher's start-up work: its token's lookup (to learn the TTL), which
        # a watcher would otherwise send on its first poll, so 200 of them would land in the
        # window's first second. The window is for the steady check load.
        resolver.source("vault").maintain_token()  # type: ignore[attr-defined]
        fleet.append((resolver, Watcher(manifest, resolver, os.environ, post, inline=False), resolution))
    for _, watcher, resolution in fleet:  # all tracked and started at the same moment
        watcher.track(resolution)
        watcher.start()
    print(f"started {time.time():.6f}", flush=True)
    try:
        time.sleep(opts.duration + 2)
    finally:
        for resolver, watcher, _ in fleet:
            watcher.stop()
            resolver.close()
    print(f"events {dict(events)}", flush=True)


def run_threads(opts: argparse.Namespace, server: OpenBao, base: Path) -> float:
    """Start the worker; return the epoch time at which the whole fleet was running."""
    log = base / "worker.log"
    proc = spawn([PYTHON, __file__, "--worker", str(base), "--count", str(opts.count), "--duration", str(opts.duration)],
                 clean_env(server.env()), log, cwd=base)
    try:
        line = wait_until(lambda: next((x for x in log.read_text().splitlines() if x.startswith("started ")), None),
                          timeout=300, what="the fleet to start", step=0.1)
        started = float(line.split()[1])
        deadline = started + opts.duration + 60
        if proc.wait(timeout=max(1.0, deadline - time.time())) != 0:
            raise RuntimeError(f"the fleet worker failed; see {log}")
    finally:
        stop(proc)
    return started


def run_processes(opts: argparse.Namespace, server: OpenBao, base: Path) -> float:
    """Start ``count`` launcher processes; return the epoch time at which all children were up."""
    mark = base / "marks"
    env = clean_env(server.env())
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(opts.count):
            argv = [LAUNCHER, "run", "-m", str(base / f"fleet-{i % PATHS}.yaml"), "--", "bash", "-c",
                    child_command(mark, keep_running=True)]
            procs.append(spawn(argv, env, base / "launchers.log", cwd=base))
        wait_until(lambda: len(read_marks(mark)) >= opts.count, timeout=600, what="every child to start", step=0.2)
        started = time.time()
        end = started + opts.duration + 2
        while time.time() < end:
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{len(dead)} launcher processes exited early; see {base / 'launchers.log'}")
            time.sleep(min(1.0, max(0.0, end - time.time())))
    finally:
        for p in procs:
            stop(p)
    return started


def per_second(times: list[float], start: float, duration: float) -> list[int]:
    counts = collections.Counter(int(t - start) for t in times if start <= t < start + duration)
    return [counts.get(s, 0) for s in range(int(duration))]


def simulate(count: int, interval: float, duration: float, jitter: bool, seed: int = 1) -> tuple[float, float]:
    """Busiest/mean of ``count`` independent watchers with uniformly random phases (median, worst of 20 trials).

    ``jitter``: each check +-10 % of the interval after the previous one (the
    launcher before its fixed schedule); else checks at phase + k x interval
    (what ``launcher.resolve.watcher`` does now).
    """
    rng = random.Random(seed)
    ratios = []
    for _ in range(20):
        times = []
        for _ in range(count):
            phase = t = rng.uniform(0, interval)
            k = 0
            while t < duration:
                times.append(t)
                k += 1
                t = t + interval * (0.9 + 0.2 * rng.random()) if jitter else phase + k * interval
        seconds = per_second(times, 0.0, duration)
        ratios.append(max(seconds) / (sum(seconds) / len(seconds)))
    ratios.sort()
    return ratios[len(ratios) // 2], ratios[-1]


def summarize(label: str, seconds: list[int]) -> list[object]:
    mean = sum(seconds) / len(seconds) if seconds else float("nan")
    busiest = max(seconds) if seconds else 0
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0
    fives = [sum(seconds[i:i + 5]) for i in range(len(seconds) - 4)]  # sliding windows
    return [label, len(seconds), mean, busiest, p99, ratio(busiest, mean), ratio(max(fives, default=0) / 5, mean)]


def main(argv: list[str] | None = None) -> Report:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("threads", "processes"), default="threads")
    ap.add_argument("--count", type=int, default=200, help="watchers")
    ap.add_argument("--interval", type=float, default=10.0, help="check interval, seconds")
    ap.add_argument("--duration", type=float, default=300.0, help="measured seconds once the fleet runs")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    if opts.worker:
        worker(opts)
        raise SystemExit(0)
    with workdir("fleet", opts.keep) as base, OpenBao(base / "bao", audit=True) as server:
        for k in range(PATHS):
            server.write(f"fleet/p{k}", f"v{k}")
        manifests(base, opts.interval)
        started = (run_threads if opts.mode == "threads" else run_processes)(opts, server, base)
        records = server.audit_requests(since_start=True)
    seconds = per_second([t for t, _, _ in records], started, opts.duration)
    steady = seconds[int(STEADY_AFTER):]
    whole = summarize("whole window", seconds)
    rows = [whole, summarize(f"after the first {STEADY_AFTER:g} s", steady)]
    fixed_median, fixed_worst = simulate(opts.count, opts.interval, opts.duration, jitter=False)
    jitter_median, jitter_worst = simulate(opts.count, opts.interval, opts.duration, jitter=True)
    busiest_at = seconds.index(max(seconds)) if seconds else -1
    rep = Report(f"Fleet: {opts.count} watchers ({opts.mode}) at a {opts.interval:g} s interval, one OpenBao")
    rep.tables.append(table(["window", "seconds", "mean req/s", "busiest second", "p99 second", "busiest / mean",
                             "busiest 5 s / mean"], rows))
    rep.tables.append(table(["first 30 s, requests per second"], [[" ".join(str(c) for c in seconds[:30])]]))
    value = float(whole[5])  # type: ignore[arg-type]
    rep.targets.append(Target(f"fleet ({opts.mode}): busiest second / mean", value, 1.5, "bench_fleet"))
    rep.notes.append(f"busiest second at +{busiest_at} s; ideal mean {opts.count / opts.interval:g} req/s; {load_line()} at the end")
    rep.data = {"mode": opts.mode, "watchers": opts.count, "interval_s": opts.interval, "per_second": seconds,
                "busiest_over_mean": value, "simulated": {"fixed": [fixed_median, fixed_worst], "jitter": [jitter_median, jitter_worst]}}
    rep.notes.append(f"simulated busiest/mean of independent random phases (median of 20 trials, worst): fixed "
                     f"schedule {fixed_median:.2f} ({fixed_worst:.2f}); +-10 % jitter per check {jitter_median:.2f} "
                     f"({jitter_worst:.2f})")
    return rep


if __name__ == "__main__":
    stop_cleanly_on_signals()
    report = main(sys.argv[1:])
    print(report.render())
