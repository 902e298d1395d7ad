"""Draw the documentation's benchmark charts (SVG) from the figures a run recorded.

    python benchmarks/charts.py                         # benchmarks/results.json -> docs/assets/benchmarks/
    python benchmarks/charts.py /tmp/run.json --out /tmp/charts

``run_all.py`` records its figures as JSON (``--output X.md`` writes ``X.json``; a full
run writes ``benchmarks/results.json`` and calls this). One chart per benchmark that
has figures in the file: ``startup.svg`` (time to the child against ``bao agent`` and
the import floors), ``rotation.svg``, ``footprint.svg`` and ``fleet.svg``; a benchmark
missing from the file leaves its chart as it was. Needs matplotlib (``pip install -e
'.[bench]'``), which neither the launcher nor its tests use. The SVGs are reproducible:
the same figures give the same bytes (no date, fixed ids), so a regenerated chart shows
in a diff only when a figure changed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
OUT = HERE.parent / "docs" / "assets" / "benchmarks"

LAUNCHER = "#3f51b5"  # the launcher's bars (Material's indigo)
PEER = "#9e9e9e"  # bao agent
FLOOR = "#c5cae9"  # what cannot be avoided

Figure = Any  # matplotlib.figure.Figure, imported only when drawing


def draw(results: dict[str, Any], out: Path = OUT) -> list[Path]:
    """Write one SVG per benchmark present in ``results``; the paths written. ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "launcher-benchmarks", "svg.fonttype": "none", "font.size": 10,
                         "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 100})
    out.mkdir(parents=True, exist_ok=True)
    figures = results.get("benchmarks", {})
    written = []
    for name, make in CHARTS.items():
        if name not in figures:
            continue
        fig = make(plt, figures[name])
        fig.text(0.99, 0.01, _caption(results), ha="right", va="bottom", fontsize=7, color="#757575")
        path = out / f"{name}.svg"
        fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def _caption(results: dict[str, Any]) -> str:
    started = str(results.get("started", ""))
    return started.split("; load average")[0] + (" (quick run)" if results.get("quick") else "")


def _label_bars(ax: Any, bars: Any, fmt: str) -> None:
    for bar in bars:
        width = bar.get_width()
        ax.text(width, bar.get_y() + bar.get_height() / 2, " " + fmt.format(width), va="center", fontsize=8)


def _ms_bars(ax: Any, rows: list[tuple[str, float, str]], xlabel: str, title: str) -> None:
    """One panel of horizontal bars, top to bottom in ``rows`` order (label, ms, colour), each labelled."""
    bars = ax.barh([r[0] for r in rows], [r[1] for r in rows], color=[r[2] for r in rows])
    _label_bars(ax, bars, "{:.0f}")
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, loc="left", fontsize=10)
    ax.set_xlim(0, max(r[1] for r in rows) * 1.2)


def startup(plt: Any, data: dict[str, Any]) -> Figure:
    """Launch to the child's first instruction, N = 10 secrets: against bao agent, then against the floors."""
    ms = {kind: values.get("10") for kind, values in data["median_ms"].items()}
    fig, (peer, floors) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1.4]})
    fig.suptitle("Time to the child's first instruction, 10 secrets (median ms)", x=0.01, ha="left", fontweight="bold")

    rows = [("launcher exec (Vault)", ms["launcher exec"], LAUNCHER), ("launcher run (Vault)", ms["launcher run"], LAUNCHER),
            ("bao agent", ms["bao agent"], PEER)]
    _ms_bars(peer, rows, "ms (bao agent waits a fixed 2 s after its first render)", "against bao agent")

    rows = [("bare child", ms["bare child"], FLOOR), ("python -c pass", ms["interpreter"], FLOOR),
            ("import launcher", ms["import launcher"], LAUNCHER), ("floor: click, yaml", ms["floor file"], FLOOR),
            ("launcher exec (file)", ms["exec file"], LAUNCHER), ("floor: + urllib3", ms["floor vault"], FLOOR),
            ("launcher exec (Vault)", ms["launcher exec"], LAUNCHER), ("launcher run (Vault)", ms["launcher run"], LAUNCHER)]
    _ms_bars(floors, rows, "ms", "against the imports it cannot avoid")
    fig.tight_layout()
    return fig


def rotation(plt: Any, data: dict[str, Any]) -> Figure:
    """New version written -> the new child's first instruction: median, and the range as a whisker."""
    summary = data["summary"]
    rows = [(kind, summary[kind]) for kind in ("launcher run", "bao agent") if kind in summary]
    medians = [s["median"] for _, s in rows]
    low = [s["median"] - s["min"] for _, s in rows]
    high = [s["max"] - s["median"] for _, s in rows]
    fig, ax = plt.subplots(figsize=(8, 2.4))
    bars = ax.barh([r[0] for r in rows], medians, xerr=[low, high], capsize=4,
                   color=[LAUNCHER if r[0].startswith("launcher") else PEER for r in rows], error_kw={"ecolor": "#424242"})
    for bar, (_, s) in zip(bars, rows, strict=True):
        ax.text(s["max"], bar.get_y() + bar.get_height() / 2, f"  median {s['median']:.2f} s", va="center", fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, max(s["max"] for _, s in rows) * 1.35)
    ax.set_xlabel(f"seconds, {data.get('interval_s', 1):g} s checks (bar: median; whisker: fastest to slowest of {rows[0][1]['count']})")
    ax.set_title("Rotation: a new version written -> the new child running", loc="left", fontweight="bold")
    fig.tight_layout()
    return fig


def footprint(plt: Any, data: dict[str, Any]) -> Figure:
    """RSS and CPU of the supervising process, for N secrets at each check interval."""
    rows = data["rows"]
    configs = sorted({(r["n"], r["interval_s"]) for r in rows})
    labels = [f"N={n}, {i:g} s" for n, i in configs]
    value = {(r["contender"], r["n"], r["interval_s"]): r for r in rows}
    fig, (rss, cpu) = plt.subplots(1, 2, figsize=(10, 3.4))
    fig.suptitle("The supervising process while it watches N secrets", x=0.01, ha="left", fontweight="bold")
    width = 0.38
    for axis, key, unit in ((rss, "rss_mib", "RSS, MiB"), (cpu, "cpu_percent", "CPU, % of one core (log scale)")):
        for offset, (kind, color) in zip((-width / 2, width / 2), (("launcher run", LAUNCHER), ("bao agent", PEER)), strict=True):
            heights = [value[(kind, n, i)][key] for n, i in configs]
            bars = axis.bar([x + offset for x in range(len(configs))], heights, width, label=kind, color=color)
            for bar, height in zip(bars, heights, strict=True):
                axis.text(bar.get_x() + bar.get_width() / 2, height, f"{height:.2g}" if height < 10 else f"{height:.0f}",
                          ha="center", va="bottom", fontsize=7)
        axis.set_xticks(range(len(configs)), labels, fontsize=8)
        axis.set_ylabel(unit)
    cpu.set_yscale("log")
    rss.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(0, 1.12), ncols=2)
    fig.tight_layout()
    return fig


def fleet(plt: Any, data: dict[str, Any]) -> Figure:
    """Requests per second at one server from a fleet of watchers, and busiest/mean against the alternatives."""
    seconds = data["per_second"]
    shown = seconds[:30]
    mean = sum(seconds) / len(seconds)
    fig, (series, ratio) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [2, 1]})
    fig.suptitle(f"A fleet of {data['watchers']} watchers at a {data['interval_s']:g} s interval, one OpenBao",
                 x=0.01, ha="left", fontweight="bold")
    series.bar(range(len(shown)), shown, color=LAUNCHER, width=0.8)
    series.axhline(mean, color="#424242", linestyle="--", linewidth=1)
    series.text(len(shown) - 0.5, mean, f" mean {mean:.0f}", va="bottom", ha="right", fontsize=8)
    series.set_xlabel("second")
    series.set_ylabel("requests in that second")
    series.set_title(f"the first {len(shown)} s (the pattern repeats every interval)", loc="left", fontsize=10)

    simulated = data["simulated"]
    rows = [("measured", data["busiest_over_mean"], None, LAUNCHER),
            ("fixed phase\n(simulated)", simulated["fixed"][0], simulated["fixed"][1], FLOOR),
            ("+-10 % jitter\n(simulated)", simulated["jitter"][0], simulated["jitter"][1], PEER)]
    bars = ratio.bar([r[0] for r in rows], [r[1] for r in rows], color=[r[3] for r in rows])
    for bar, (_, median, worst, _) in zip(bars, rows, strict=True):
        ratio.text(bar.get_x() + bar.get_width() / 2, median, f"{median:.2f}" + (f"\n(worst {worst:.2f})" if worst else ""),
                   ha="center", va="bottom", fontsize=8)
    ratio.axhline(1.0, color="#424242", linewidth=0.8)
    ratio.set_ylim(0, max(r[2] or r[1] for r in rows) * 1.25)
    ratio.set_ylabel("busiest second / mean")
    ratio.set_title("the busiest second", loc="left", fontsize=10)
    ratio.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return fig


CHARTS: dict[str, Callable[[Any, dict[str, Any]], Figure]] = {
    "startup": startup, "rotation": rotation, "footprint": footprint, "fleet": fleet,
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="?", default=str(RESULTS), help="a JSON file run_all.py wrote")
    ap.add_argument("--out", default=str(OUT), help="directory for the SVGs")
    opts = ap.parse_args(argv)
    results = json.loads(Path(opts.results).read_text(encoding="utf-8"))
    for path in draw(results, Path(opts.out)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
