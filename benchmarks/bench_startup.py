"""Startup: time from launching a command to its child's first instruction.

The child is ``bash -c 'echo "$EPOCHREALTIME $S0 $S<N-1>" >> MARK'``; the time
is the child's stamp minus ``time.time()`` taken just before the harness forks.
Contenders, for N = 1, 10, 100 secrets (one path each), from a local YAML file or
KV v2 on a local OpenBao dev server:

- bare child: bash itself, no secrets (the lower bound)
- interpreter: ``python -c`` that only ``os.execvp``s the child
- import launcher: ``python -c "import launcher"`` (the Python API's import), then the child
- floor file: ``python -c "import click, yaml"`` (what the ``file`` path cannot avoid), then the child
- floor vault: ``python -c "import click, yaml, urllib3"`` (what the Vault path cannot avoid), then the child
- exec file: ``launcher exec`` with N ``file`` bindings
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
    stop_cleanly_on_signals,
    table,
    time_to_child,
    workdir,
    write_agent_config,
    write_manifest,
)

CONTENDERS = ("bare child", "interpreter", "import launcher", "floor file", "floor vault", "exec file", "launcher exec",
              "launcher run", "bao agent")
# Each floor imports what its path cannot avoid, then execs the child as the launcher would.
FLOORS = {
    "interpreter": "import os, sys; os.execvp('bash', ['bash', '-c', sys.argv[1]])",
    "import launcher": "import launcher, os, sys; os.execvp('bash', ['bash', '-c', sys.argv[1]])",
    "floor file": "import click, yaml, os, sys; os.execvp('bash', ['bash', '-c', sys.argv[1]])",
    "floor vault": "import click, yaml, urllib3, os, sys; os.execvp('bash', ['bash', '-c', sys.argv[1]])",
}
WITH_SECRETS = ("exec file", "launcher exec", "launcher run", "bao agent")
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
    secrets = kind in WITH_SECRETS
    cmd = child_command(mark, check_names(n) if secrets else ())
    env = clean_env(server.env())
    manifest = base / f"launcher-{n}.yaml"
    if kind == "bare child":
        argv = ["bash", "-c", cmd]
    elif kind in FLOORS:
        argv = [PYTHON, "-c", FLOORS[kind], cmd]
    elif kind == "exec file":
        argv = [LAUNCHER, "exec", "-m", str(base / f"file-{n}.yaml"), "--", "bash", "-c", cmd]
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


def write_file_manifest(base: Path, n: int) -> None:
    """``file-N.yaml``: N bindings ``S<i>`` from a local YAML file holding the same values as OpenBao."""
    values = "".join(f"p{i}: v{i}-{n}\n" for i in range(n))
    (base / f"secrets-{n}.yaml").write_text(values)
    lines = ["version: 1", "sources:", f"  dev: {{type: file, path: ./secrets-{n}.yaml}}", "env:"]
    lines += [f"  S{i}: dev://p{i}" for i in range(n)]
    (base / f"file-{n}.yaml").write_text("\n".join(lines) + "\n")


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
            write_file_manifest(base, n)
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

    ratios = [[n, paired(n, "exec file", "floor file"), paired(n, "launcher exec", "floor vault"),
               paired(n, "launcher exec", "bao agent"), paired(n, "launcher run", "floor vault"),
               paired(n, "import launcher", "interpreter")]
              for n in sizes]
    rep = Report("Startup: launch to the child's first instruction (median ms)")
    rep.tables.append(table(["N secrets", *(f"{k} ms" for k in CONTENDERS)], rows))
    rep.tables.append(table(["N secrets", "exec file / floor file", "exec vault / floor vault", "exec vault / agent",
                             "run vault / floor vault", "import launcher / interpreter"], ratios))
    if 10 in sizes:
        row = ratios[sizes.index(10)]
        rep.targets += [
            Target("startup: launcher exec N=10 file / floor (click, yaml)", row[1], 1.4, "bench_startup"),
            Target("startup: launcher exec N=10 vault / floor (click, yaml, urllib3)", row[2], 1.3, "bench_startup"),
            Target("startup: import launcher / python -c pass", row[5], 2.0, "bench_startup"),
        ]
    rep.notes.append(f"median of {runs} runs after one warm-up run each, interleaved; ratios are medians of the per-round "
                     f"ratios (each round runs every contender once); {load_line()} at the end")
    rep.notes.append("bao agent waits a fixed 2 s after the first render before it starts the child "
                     "(command/agent/exec/exec.go, debounceTimer), so its figure is about 2 s plus its own start")
    rep.data = {"runs": runs, "median_ms": {kind: {str(n): med[(n, kind)] for n in sizes} for kind in CONTENDERS},
                "ratios": {str(row[0]): dict(zip(("exec file / floor file", "exec vault / floor vault", "exec vault / agent",
                                                  "run vault / floor vault", "import launcher / interpreter"), row[1:], strict=True))
                           for row in ratios}}
    return rep


if __name__ == "__main__":
    stop_cleanly_on_signals()
    print(main().render())
