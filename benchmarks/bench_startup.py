"""Startup: time from launching a command to its child's first instruction.

The child is ``bash -c 'echo "$EPOCHREALTIME $S0 $S<N-1>" >> MARK'``; the time
is the child's stamp minus ``time.time()`` taken just before the harness forks.
Contenders, for N = 1, 10, 100 KV v2 secrets (one path each) on a local
OpenBao dev server:

- bare child: bash itself, no secrets (the lower bound)
- import floor: ``python -c "import click, yaml, hvac"`` that then ``os.execvp``s the child
- launcher exec, launcher run: ``-m manifest.yaml`` with N ``vault://`` bindings
- bao agent: process-supervisor mode, N ``env_template`` blocks and an ``exec`` block

Each contender runs once as a warm-up, then ``--runs`` times, interleaved
round-robin so that load changes hit every contender alike. Medians are shown.

    python benchmarks/bench_startup.py [--runs 15] [--sizes 1,10,100]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from benchlib import (
    LAUNCHER,
    PYTHON,
    OpenBao,
    Report,
    Target,
    agent_argv,
    child_command,
    clean_env,
    load_line,
    median,
    ratio,
    stop_cleanly_on_signals,
    table,
    time_to_child,
    workdir,
    write_agent_config,
    write_manifest,
)

CONTENDERS = ("bare child", "import floor", "launcher exec", "launcher run", "bao agent")
FLOOR = "import click, yaml, hvac, os, sys; os.execvp('bash', ['bash', '-c', sys.argv[1]])"
_counter = itertools.count()


def secret_names(n: int) -> list[str]:
    return [f"p{i}" for i in range(n)]


def expected(n: int) -> list[str]:
    return [f"v0-{n}", f"v{n - 1}-{n}"] if n > 1 else [f"v0-{n}"]


def check_names(n: int) -> list[str]:
    return ["S0", f"S{n - 1}"] if n > 1 else ["S0"]


def start_once(kind: str, n: int, server: OpenBao, base: Path, token_file: Path) -> float:
    """One launch of ``kind`` with ``n`` secrets; seconds to the child's first instruction."""
    run_id = next(_counter)
    mark = base / f"mark-{run_id}"
    secrets = kind not in ("bare child", "import floor")
    cmd = child_command(mark, check_names(n) if secrets else ())
    env = clean_env(server.env())
    manifest = base / f"launcher-{n}.yaml"
    if kind == "bare child":
        argv = ["bash", "-c", cmd]
    elif kind == "import floor":
        argv = [PYTHON, "-c", FLOOR, cmd]
    elif kind in ("launcher exec", "launcher run"):
        argv = [LAUNCHER, kind.split()[1], "-m", str(manifest), "--", "bash", "-c", cmd]
    else:
        config = write_agent_config(base / f"agent-{run_id}.hcl", server.addr, token_file, prefixed(n), ["bash", "-c", cmd])
        argv = agent_argv(config)
        env = clean_env({"HOME": str(base)})
    elapsed, values = time_to_child(argv, env, mark, base / f"{kind.replace(' ', '-')}.log", cwd=base)
    if secrets and values != expected(n):
        raise RuntimeError(f"{kind} N={n}: the child did not get the secrets (got {len(values)} fields)")
    return elapsed


def prefixed(n: int) -> list[str]:
    return [f"n{n}/{name}" for name in secret_names(n)]


def main(argv: list[str] | None = None) -> Report:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15, help="measured runs per contender and N (after one warm-up)")
    ap.add_argument("--sizes", default="1,10,100", help="numbers of secrets")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    opts = ap.parse_args(argv)
    sizes = [int(s) for s in opts.sizes.split(",")]
    results: dict[tuple[int, str], list[float]] = {}
    with workdir("startup", opts.keep) as base, OpenBao(base / "bao") as server:
        token_file = base / "token"
        token_file.write_text(server.token)
        for n in sizes:
            names = prefixed(n)
            for i, name in enumerate(names):
                server.write(name, f"v{i}-{n}")
            write_manifest(base / f"launcher-{n}.yaml", names)
            for kind in CONTENDERS:  # warm-up: page cache, .pyc files, the server's first reads
                start_once(kind, n, server, base, token_file)
            for _ in range(opts.runs):
                for kind in CONTENDERS:
                    results.setdefault((n, kind), []).append(start_once(kind, n, server, base, token_file))
    return report(sizes, results, opts.runs)


def report(sizes: list[int], results: dict[tuple[int, str], list[float]], runs: int) -> Report:
    med = {key: median(values) * 1000 for key, values in results.items()}
    rows = [[n, *(med[(n, k)] for k in CONTENDERS)] for n in sizes]

    def paired(n: int, a: str, b: str) -> float:
        """The median over rounds of a/b within each round: robust to load drifting between rounds."""
        return median([x / y for x, y in zip(results[(n, a)], results[(n, b)], strict=True)])

    ratios = [[n, paired(n, "launcher exec", "import floor"), paired(n, "launcher exec", "bao agent"),
               paired(n, "launcher run", "import floor"), paired(n, "launcher run", "bao agent"),
               ratio(med[(n, "launcher exec")], med[(n, "import floor")])]
              for n in sizes]
    rep = Report("Startup: launch to the child's first instruction (median ms)")
    rep.tables.append(table(["N secrets", *(f"{k} ms" for k in CONTENDERS)], rows))
    rep.tables.append(table(["N secrets", "exec / floor", "exec / agent", "run / floor", "run / agent", "exec / floor (of medians)"],
                            ratios))
    if 10 in sizes:
        rep.targets += [
            Target("startup: launcher exec N=10 / import floor", ratios[sizes.index(10)][1], 1.25, "bench_startup"),
            Target("startup: launcher exec N=10 / bao agent", ratios[sizes.index(10)][2], 0.12, "bench_startup"),
        ]
    rep.notes.append(f"median of {runs} runs after one warm-up run each, interleaved; ratios are medians of the per-round "
                     f"ratios (each round runs every contender once); {load_line()} at the end")
    rep.notes.append("bao agent waits a fixed 2 s after the first render before it starts the child "
                     "(command/agent/exec/exec.go, debounceTimer), so its figure is about 2 s plus its own start")
    return rep


if __name__ == "__main__":
    stop_cleanly_on_signals()
    print(main().render())
