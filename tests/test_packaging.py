"""packaging/Dockerfile, read as text: no Docker engine runs in the tests.

What it copies into the build must be what ``packaging/bundle.sh`` (a pip install of the
checkout) reads, and its ignore file must let exactly that through; the image's payload
is /opt/launcher alone. The bundle it builds is the one tests/test_bundle.py runs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "packaging" / "Dockerfile"


def stages() -> list[list[str]]:
    """The Dockerfile's instructions (comments dropped, continuations joined), one list per stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    found: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            found.append([])
        if found:
            found[-1].append(line)
    return found


def copies(stage: list[str]) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY without --from."""
    out = []
    for line in stage:
        words = line.split()
        if words[0].upper() == "COPY" and not any(w.startswith("--from") for w in words):
            out.append((words[1:-1], words[-1]))
    return out


def test_the_build_stage_copies_what_a_pip_install_of_the_checkout_reads() -> None:
    build = stages()[0]
    assert re.match(r"FROM python:\$\{PYTHON_VERSION\}-slim-bookworm AS build$", build[0])
    copied = {source for sources, _ in copies(build) for source in sources}
    readme = re.search(r'^readme = "(.+)"$', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M)
    assert readme and {"pyproject.toml", readme.group(1), "launcher", "packaging"} <= copied
    for source in copied:
        assert (ROOT / source).exists(), source
    assert any("packaging/bundle.sh /out" in line for line in build if line.startswith("RUN"))
    assert os.access(ROOT / "packaging" / "bundle.sh", os.X_OK)


def test_the_ignore_file_lets_through_exactly_what_is_copied() -> None:
    text = (ROOT / "packaging" / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    patterns = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"  # everything else is left out
    allowed = {line[1:] for line in patterns if line.startswith("!")}
    assert allowed == {source for sources, _ in copies(stages()[0]) for source in sources}


def test_the_image_holds_only_opt_launcher() -> None:
    last = stages()[-1]
    assert last[0] == "FROM scratch"
    assert last[1:] == ["COPY --from=build /out/launcher /opt/launcher"]


def test_the_node_example_takes_the_launcher_from_that_image() -> None:
    text = (ROOT / "examples" / "docker" / "node" / "Dockerfile").read_text(encoding="utf-8")
    assert "\nCOPY --from=launcher-bundle /opt/launcher /opt/launcher\n" in text
    assert '\nENTRYPOINT ["/opt/launcher/launcher", "run", "--"]\n' in text
    assert "python" not in re.sub(r"#.*", "", text).lower()
