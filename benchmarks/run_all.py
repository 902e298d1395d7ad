"""Run every benchmark in one go and print their tables and the targets, met or missed.

    python benchmarks/run_all.py            # the full run behind RESULTS.md (about 25 minutes)
    python benchmarks/run_all.py --quick    # fewer runs, short windows (about 5 minutes)
    python benchmarks/run_all.py --only startup,rotation

The targets are ratios measured within this one run; nothing is asserted. Besides the
Markdown, each run records its figures as JSON (``--output X.md`` also writes ``X.json``).
A full run (neither ``--quick`` nor ``--only``) publishes them: it writes
``benchmarks/results.json`` and redraws the documentation's charts from it
(``benchmarks/charts.py``, which needs matplotlib: ``pip install -e '.[bench]'``);
``--no-publish`` leaves both alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_concurrency
import bench_fleet
import bench_footprint
import bench_mask
import bench_observability
import bench_parser
import bench_rotation
import bench_startup
import charts
from benchlib import Report, machine_summary, stop_cleanly_on_signals, targets_table

BENCHMARKS: dict[str, tuple[Callable[[list[str] | None], Report], list[str], list[str]]] = {
    # name: (main, full arguments, --quick arguments)
    "startup": (bench_startup.main, [], ["--runs", "3"]),
    "concurrency": (bench_concurrency.main, [], ["--runs", "3"]),
    "rotation": (bench_rotation.main, [], ["--rotations", "4"]),
    "footprint": (bench_footprint.main, [], ["--runs", "1", "--window", "10", "--settle", "3"]),
    "fleet": (bench_fleet.main, [], ["--duration", "60"]),
    "observability": (bench_observability.main, [], ["--runs", "1", "--window", "10", "--settle", "3"]),
    "mask": (bench_mask.main, [], ["--size-mb", "50"]),
    "parser": (bench_parser.main, [], ["--rounds", "2"]),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shortened runs (figures are rougher)")
    ap.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    ap.add_argument("--fleet-mode", choices=("threads", "processes"), default="threads")
    ap.add_argument("--output", help="also write the Markdown to this file (and the figures as JSON beside it)")
    ap.add_argument("--no-publish", action="store_true", help="a full run: do not update results.json and the charts")
    opts = ap.parse_args()
    chosen = opts.only.split(",") if opts.only else list(BENCHMARKS)
    out: list[str] = []

    def emit(text: str) -> None:
        print(text, flush=True)
        out.append(text)

    command = " ".join(["python", "benchmarks/run_all.py", *sys.argv[1:]])
    started_at = machine_summary()
    emit(f"# launcher benchmarks\n\nstarted: {started_at}\n\ncommand: `{command}`\n")
    reports = []
    for name in chosen:
        run, full, quick = BENCHMARKS[name]
        args = list(quick if opts.quick else full)
        if name == "fleet":
            args += ["--mode", opts.fleet_mode]
        started = time.monotonic()
        try:
            rep = run(args)
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            rep = Report(f"{name}: FAILED")
            rep.notes.append(f"{exc.__class__.__name__}: {exc}")
        rep.notes.append(f"took {time.monotonic() - started:.0f} s; same as `python benchmarks/bench_{name}.py {' '.join(args)}`")
        emit(rep.render())
        reports.append(rep)
    emit("## Targets\n\n" + targets_table([t for r in reports for t in r.targets]) + "\n")
    finished = machine_summary()
    emit(f"finished: {finished}")
    results = {"started": started_at, "finished": finished, "command": command, "quick": opts.quick,
               "benchmarks": {name: rep.data for name, rep in zip(chosen, reports, strict=True) if rep.data}}
    if opts.output:
        with open(opts.output, "w", encoding="utf-8") as fh:
            fh.write("\n".join(out) + "\n")
        write_json(Path(opts.output).with_suffix(".json"), results)
    if not (opts.quick or opts.only or opts.no_publish):
        publish(results)


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)


def publish(results: dict[str, Any]) -> None:
    """A full run is the one behind RESULTS.md: keep its figures, and redraw the docs' charts from them."""
    write_json(charts.RESULTS, results)
    try:
        written = charts.draw(results, charts.OUT)
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): charts not redrawn; "
              "run benchmarks/charts.py later", file=sys.stderr)
        return
    for path in written:
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    stop_cleanly_on_signals()
    main()
