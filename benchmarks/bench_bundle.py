"""The bundle (packaging/bundle.sh) against the pip install: start-up and size.

Start-up is the time from launching ``launcher exec`` with N ``file`` secrets (default 10)
to its child's first instruction (``bash -c 'echo "$EPOCHREALTIME $S0 $S<N-1>" >> MARK'``),
for the bundle and for the pip install in this virtual environment, side by side: one
warm-up each, then ``--runs`` rounds that run each contender once, in turn. The bare
child is the lower bound. The ratio is the median of the per-round ratios.

``--profile`` adds where the bundle's time goes, from ``strace -f -ttt`` of a few runs
(strace slows every system call, so its phases are proportions, not figures to compare
with the table): the bootloader's first start until it restarts itself with its library
path, the restart until libpython is loaded, the interpreter's start until the manifest
is opened (imports), and the rest until the child's ``execve``. The pip install's
import profile is ``python -X importtime`` (see RESULTS.md).

Size: the bundle on disk, its files' bytes, a ``.tar.gz`` of it (``tar -czf``, as
bundle.sh writes), and its largest parts.

    python benchmarks/bench_bundle.py [--bundle dist/launcher] [--runs 20] [--secrets 10] [--profile]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchlib import (
    LAUNCHER,
    Report,
    Target,
    child_command,
    clean_env,
    load_line,
    median,
    stop_cleanly_on_signals,
    table,
    time_to_child,
    workdir,
)

ROOT = Path(__file__).resolve().parent.parent
CONTENDERS = ("bare child", "pip exec", "bundle exec")
MIB = 1024 * 1024


def default_bundle() -> Path:
    return Path(os.environ.get("LAUNCHER_BUNDLE") or ROOT / "dist" / "launcher")


def write_file_manifest(base: Path, n: int) -> Path:
    (base / "secrets.yaml").write_text("".join(f"p{i}: v{i}\n" for i in range(n)))
    lines = ["version: 1", "sources:", "  dev: {type: file, path: ./secrets.yaml}", "env:"]
    lines += [f"  S{i}: dev://p{i}" for i in range(n)]
    manifest = base / "file.yaml"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def start_once(kind: str, n: int, bundle: Path, base: Path, counter: list[int]) -> float:
    counter[0] += 1
    mark = base / f"mark-{counter[0]}"
    check = [] if kind == "bare child" else ["S0", f"S{n - 1}"]
    cmd = child_command(mark, check)
    program = {"pip exec": LAUNCHER, "bundle exec": str(bundle / "launcher")}.get(kind)
    argv = ["bash", "-c", cmd] if program is None else [program, "exec", "-m", str(base / "file.yaml"), "--", "bash", "-c", cmd]
    elapsed, values = time_to_child(argv, clean_env(), mark, base / f"{kind.replace(' ', '-')}.log", cwd=base)
    if check and values != ["v0", f"v{n - 1}"]:
        raise RuntimeError(f"{kind}: the child did not get the secrets")
    return elapsed


def profile(bundle: Path, base: Path, rounds: int) -> list[list[object]]:
    """Phases of the bundle's start (ms, medians over ``rounds`` straced runs)."""
    if shutil.which("strace") is None:
        return [["(strace is not installed: no profile)", "-"]]
    phases: dict[str, list[float]] = {}
    for i in range(rounds):
        trace = base / f"strace-{i}.txt"
        argv = [str(bundle / "launcher"), "exec", "-m", str(base / "file.yaml"), "--", "true"]
        subprocess.run(["strace", "-f", "-ttt", "-e", "trace=execve,openat", "-o", str(trace), *argv],
                       env=clean_env(), cwd=base, capture_output=True, timeout=60, check=True)
        for name, ms in phases_of(trace.read_text()).items():
            phases.setdefault(name, []).append(ms)
    return [[name, median(values)] for name, values in phases.items()]


def phases_of(trace: str) -> dict[str, float]:
    """Durations between the landmarks of one ``strace -f -ttt`` output."""
    stamps: dict[str, float] = {}
    execs = 0
    for line in trace.splitlines():
        match = re.match(r"\d+\s+(\d+\.\d+) (\w+)\((.*)", line)
        if not match or "= -1" in line or "resumed>" in line:
            continue
        stamp, call, args = float(match.group(1)), match.group(2), match.group(3)
        if call == "execve":
            execs += 1
            stamps.setdefault(("start", "restart", "child")[min(execs, 3) - 1], stamp)
        elif call == "openat" and "libpython" in args:
            stamps.setdefault("libpython", stamp)
        elif call == "openat" and "file.yaml" in args:
            stamps.setdefault("manifest", stamp)
    order = ["start", "restart", "libpython", "manifest", "child"]
    names = ["bootloader, first start (to its restart)", "bootloader, restarted (to libpython)",
             "interpreter start and imports (to the manifest)", "manifest, secrets, exec (to the child)"]
    return {name: (stamps[b] - stamps[a]) * 1000 for name, a, b in zip(names, order, order[1:], strict=False)
            if a in stamps and b in stamps}


def sizes(bundle: Path) -> tuple[list[list[object]], float, float]:
    """Rows for the size table, and the on-disk and .tar.gz sizes in MiB."""
    files = [p for p in bundle.rglob("*") if p.is_file() and not p.is_symlink()]
    on_disk = sum(p.stat().st_blocks * 512 for p in files) / MIB
    apparent = sum(p.stat().st_size for p in files) / MIB
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "launcher.tar.gz"
        subprocess.run(["tar", "-C", str(bundle.parent), "-czf", str(archive), bundle.name], check=True)
        packed = archive.stat().st_size / MIB
    rows: list[list[object]] = [["on disk (du)", on_disk], ["bytes in files", apparent], [".tar.gz", packed]]
    parts: dict[str, int] = {}
    for p in files:
        relative = p.relative_to(bundle).parts
        key = "/".join(relative[:2]) if relative[0] == "_internal" and len(relative) > 1 else relative[0]
        parts[key] = parts.get(key, 0) + p.stat().st_size
    for key, size in sorted(parts.items(), key=lambda kv: -kv[1])[:8]:
        rows.append([f"  {key}", size / MIB])
    return rows, on_disk, packed


def main(argv: list[str] | None = None) -> Report:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=default_bundle(), help="the bundle directory (default: $LAUNCHER_BUNDLE, "
                    "else dist/launcher)")
    ap.add_argument("--runs", type=int, default=20, help="measured rounds (after one warm-up)")
    ap.add_argument("--secrets", type=int, default=10, help="number of file secrets")
    ap.add_argument("--profile", action="store_true", help="also trace the bundle's start with strace")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    opts = ap.parse_args(argv)
    bundle: Path = opts.bundle.resolve()
    if not (bundle / "launcher").is_file():
        raise SystemExit(f"no bundle at {bundle}: build one with packaging/bundle.sh (or pass --bundle)")
    n = opts.secrets
    results: dict[str, list[float]] = {}
    counter = [0]
    with workdir("bundle", opts.keep) as base:
        write_file_manifest(base, n)
        for kind in CONTENDERS:
            start_once(kind, n, bundle, base, counter)
        for _ in range(opts.runs):
            for kind in CONTENDERS:
                results.setdefault(kind, []).append(start_once(kind, n, bundle, base, counter))
        phases = profile(bundle, base, 5) if opts.profile else []
    ratios = [b / p for b, p in zip(results["bundle exec"], results["pip exec"], strict=True)]
    rep = Report(f"Bundle: start-up (N={n} file secrets) and size")
    rep.tables.append(table(["contender", "median ms", "min ms", "max ms"],
                            [[k, median(v) * 1000, min(v) * 1000, max(v) * 1000] for k, v in results.items()]))
    rep.tables.append(table(["bundle exec / pip exec", "median of per-round ratios"], [["ratio", median(ratios)]]))
    if phases:
        rep.tables.append(table(["bundle start, phase (under strace)", "median ms"], phases))
    size_rows, on_disk, packed = sizes(bundle)
    rep.tables.append(table(["bundle size", "MiB"], size_rows))
    rep.targets += [
        Target(f"bundle exec N={n} file / pip exec", median(ratios), 1.1, "bench_bundle"),
        Target("bundle on disk (MiB)", on_disk, 60, "bench_bundle"),
    ]
    rep.notes.append(f"{opts.runs} rounds after one warm-up, each round runs every contender once; {load_line()} at the end")
    rep.notes.append(f"bundle: {bundle}; pip: {LAUNCHER}; .tar.gz {packed:.1f} MiB")
    return rep


if __name__ == "__main__":
    stop_cleanly_on_signals()
    print(main().render())
