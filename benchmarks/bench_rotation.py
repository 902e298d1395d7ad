"""Rotation: time from writing a new secret version to the new child's first instruction.

Both supervisors check once a second and restart their child on a change:

- ``launcher run`` with ``watch: {enabled: true, interval: 1s, debounce: 0s,
  max_restarts: 1000}`` (on_change restart and splay 0s, the defaults): the
  fastest correct reaction the manifest allows at a 1 s interval; the storm
  guard is lifted because the default (5 restarts per 5 minutes) would hold
  the 6th rotation of this benchmark;
- ``bao agent`` with ``template_config { static_secret_render_interval = "1s" }``
  and ``exec { restart_on_secret_changes = "always" }``.

The child stamps ``$EPOCHREALTIME`` and the secret's value, then ``exec sleep``.
Each rotation waits a random 1-2 s (so writes fall at random points of the
check cycle), takes ``time.time()``, writes version k and waits for the line
carrying value k. The latency is that line's stamp minus the time before the
write. One rotation per contender is a warm-up.

    python benchmarks/bench_rotation.py [--rotations 10]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

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
INTERVAL = 1.0


def rotations(kind: str, count: int, server: OpenBao, base: Path, rng: random.Random) -> list[float]:
    """Start ``kind`` on one watched secret, rotate it ``count`` + 1 times; latencies after the warm-up."""
    name = f"rot/{kind.replace(' ', '-')}"
    server.write(name, "r0")
    mark = base / f"mark-{kind.replace(' ', '-')}"
    cmd = child_command(mark, ["S0"], keep_running=True)
    if kind == "launcher run":
        # The storm guard (watch.max_restarts, 5 per 5 min by default) would hold
        # the 6th restart: this benchmark restarts on purpose, so lift it.
        manifest = write_manifest(base / "launcher.yaml", [name], watch=(INTERVAL, 0.0), watch_extra={"max_restarts": "1000"})
        argv = [LAUNCHER, "run", "-m", str(manifest), "--", "bash", "-c", cmd]
        env = clean_env(server.env())
    else:
        token_file = base / "token"
        token_file.write_text(server.token)
        config = write_agent_config(base / "agent.hcl", server.addr, token_file, [name], ["bash", "-c", cmd], render_interval=INTERVAL)
        argv, env = agent_argv(config), clean_env({"HOME": str(base)})
    out = []
    proc = spawn(argv, env, base / f"{kind.replace(' ', '-')}.log", cwd=base)
    try:
        wait_mark(mark, 1, timeout=60)
        for k in range(1, count + 2):
            time.sleep(rng.uniform(1.0, 2.0))
            before = time.time()
            server.write(name, f"r{k}")
            fields = wait_mark(mark, k + 1, timeout=30)
            if fields[1:] != [f"r{k}"]:
                raise RuntimeError(f"{kind}: rotation {k} started a child with an unexpected value")
            if k > 1:
                out.append(float(fields[0]) - before)
    finally:
        stop(proc)
    return out


def main(argv: list[str] | None = None) -> Report:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rotations", type=int, default=10, help="measured rotations per contender (after one warm-up)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    opts = ap.parse_args(argv)
    rng = random.Random(opts.seed)
    results: dict[str, list[float]] = {}
    with workdir("rotation", opts.keep) as base, OpenBao(base / "bao") as server:
        for kind in CONTENDERS:
            results[kind] = rotations(kind, opts.rotations, server, base, rng)
    rows = [[k, median(v), min(v), max(v)] for k, v in results.items()]
    value = ratio(median(results["launcher run"]), median(results["bao agent"]))
    rep = Report("Rotation: new version written -> new child's first instruction, 1 s checks (seconds)")
    rep.tables.append(table(["contender", "median s", "min s", "max s"], rows))
    rep.tables.append(table(["", "ratio"], [["launcher / bao agent (medians)", value]]))
    rep.targets.append(Target("rotation: launcher / bao agent, 1 s interval", value, 0.5, "bench_rotation"))
    rep.notes.append(f"{opts.rotations} rotations per contender after one warm-up; {load_line()} at the end")
    rep.notes.append("launcher: watch {enabled: true, interval: 1s, debounce: 0s, max_restarts: 1000}, on_change restart, splay 0s; "
                     "bao agent: static_secret_render_interval 1s, restart_on_secret_changes always")
    rep.notes.append("bao agent debounces every change by a fixed 2 s before restarting (command/agent/exec/exec.go)")
    rep.data = {"interval_s": 1.0, "seconds": {kind: list(values) for kind, values in results.items()},
                "summary": {kind: {"median": median(v), "min": min(v), "max": max(v), "count": len(v)} for kind, v in results.items()}}
    return rep


if __name__ == "__main__":
    stop_cleanly_on_signals()
    print(main().render())
