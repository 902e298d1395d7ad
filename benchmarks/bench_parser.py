"""How long the manifest reader and the file source take on adversarial input.

The tests check that each of these inputs is read or refused with the right message;
how long it takes is measured here (the suite never asserts a time). Every input is
one that once took seconds or minutes, or could: a manifest of 300,000 problems,
alias bombs in a manifest and in a secrets file, ``{{`` runs in templates, deep
nesting. The target: each is refused or read in under a second on one core.

    python benchmarks/bench_parser.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchlib import Report, Target, load_line, median, table, use_source_override

use_source_override()

from launcher.errors import LauncherError  # noqa: E402
from launcher.manifest import parse_manifest  # noqa: E402
from launcher.model.refs import parse_value  # noqa: E402
from launcher.sources.file import FileSource, FileSourceConfig  # noqa: E402

KNOWN = frozenset({"vault", "dev"})
LIMIT = 2.0  # seconds of CPU for one input: the bound the tests asserted (wall time) before it moved here


def laughs(levels: int, width: int = 10) -> str:
    """The "billion laughs": ``width ** levels`` copies of one string, in a few lines of YAML."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\napp:\n  bomb: *l{levels - 1}\n"


def manifest(text: str) -> Callable[[], object]:
    def read() -> object:
        try:
            return parse_manifest(text, "/etc/app/launcher.yaml", {})
        except LauncherError as exc:
            return exc

    return read


def template(text: str) -> Callable[[], object]:
    def read() -> object:
        try:
            return parse_value(text, KNOWN)
        except ValueError as exc:
            return exc

    return read


def secrets_file(text: str, ref: str) -> Callable[[], object]:
    folder = Path(tempfile.mkdtemp(prefix="bench-parser-"))
    (folder / "s.yaml").write_text(text, encoding="utf-8")

    def read() -> object:
        try:
            return FileSource(FileSourceConfig(name="dev", path=str(folder / "s.yaml"))).fetch(ref, None)
        except LauncherError as exc:
            return exc

    return read


CASES: dict[str, Callable[[], object]] = {
    "manifest: 300,000 problems (counted to a bound)": manifest("version: 1\nprocess: {inherit: [" + "A-," * 300_000 + "]}\n"),
    "manifest: an alias bomb": manifest("version: 1\nx-anchors:\n" + "".join(
        f"  {line}\n" for line in laughs(9).split("\napp:")[0].splitlines()) + "process:\n  inherit: *l8\n"),
    "manifest: a 4 MiB value": manifest("version: 1\nenv:\n  A: '" + "x" * (4 * 1024 * 1024 - 40) + "'\n"),
    "manifest: nesting 900 deep": manifest("version: 1\nenv: " + "[" * 900 + "]" * 900 + "\n"),
    "template: 100,000 '{'": template("{" * 100_000),
    "template: 10,000 unclosed '{{ vault://x'": template("{{ vault://x" * 10_000),
    "template: a placeholder and 100,000 '}'": template("{{ vault://x }}" + "}" * 100_000),
    "template: 7,000 placeholders": template("{{ dev://x }}" * 7_000),
    "secrets file: an alias bomb": secrets_file(laughs(9), "app/bomb"),
    "secrets file: nesting 120 deep": secrets_file("app:\n  x: " + "[" * 120 + "]" * 120 + "\n", "app/x"),
}


def main(argv: list[str] | None = None) -> Report:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="measured rounds per input (after one warm-up)")
    opts = ap.parse_args(argv)
    rows = []
    worst = 0.0
    for name, read in CASES.items():
        read()  # warm-up
        cpu = []
        for _ in range(opts.rounds):
            started = time.thread_time()
            outcome = read()
            cpu.append(time.thread_time() - started)
        kind = type(outcome).__name__
        rows.append([name, median(cpu) * 1000, max(cpu) * 1000, "refused" if "Error" in kind else "read"])
        worst = max(worst, max(cpu))
    rep = Report("Adversarial input: CPU ms of the reader (one thread)")
    rep.tables.append(table(["input", "median ms", "max ms", "outcome"], rows))
    rep.targets.append(Target("parser: the slowest adversarial input, CPU seconds", worst, LIMIT, "bench_parser"))
    rep.notes.append(f"median of {opts.rounds} rounds after one warm-up; {load_line()} at the end")
    return rep


if __name__ == "__main__":
    print(main().render())
