"""`launcher exec` with `file: true`: one stable private directory per user and manifest (issue 28.10).

Each exec used to leave a new `launcher-*` directory behind (nothing can remove
files after execve). Now repeated runs replace their files in one directory, as
`launcher env` does, with the same private-directory guarantees.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

from tests.helpers import launcher_env, run_launcher

CODE = "import os; p = os.environ['TLS_KEY']; print(p); print(open(p).read())"


def project(tmp: Path, value: str) -> None:
    (tmp / "secrets.json").write_text(json.dumps({"tls": {"key": value}}))
    (tmp / "launcher.yaml").write_text("version: 1\nsources:\n  dev: {type: file, path: secrets.json}\n"
                                       "env:\n  TLS_KEY: {ref: dev://tls#key, file: true}\n")


def exec_child(tmp: Path, runtime: Path, manifest: str = "launcher.yaml") -> tuple[str, str]:
    proc = run_launcher(["exec", "-m", manifest, "--", sys.executable, "-c", CODE],
                        env=launcher_env({"XDG_RUNTIME_DIR": str(runtime)}), cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    path, content = proc.stdout.split("\n", 1)
    return path, content[:-1]


def test_repeated_execs_replace_their_files_in_one_directory(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    project(tmp_path, "first")
    first_path, first = exec_child(tmp_path, runtime)
    project(tmp_path, "second")
    second_path, second = exec_child(tmp_path, runtime)
    third_path, _ = exec_child(tmp_path, runtime)
    assert (first, second) == ("first", "second")
    assert first_path == second_path == third_path  # the same file, replaced
    assert Path(first_path).read_text() == "second"
    directory = Path(first_path).parent
    assert [p.name for p in runtime.iterdir()] == [f"launcher-env-{os.getuid()}"]  # nothing piles up
    assert [p.name for p in directory.iterdir()] == ["TLS_KEY"]
    for path in (directory, directory.parent):  # private: 0700, ours, a real directory
        info = path.lstat()
        assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
    assert stat.S_IMODE(Path(first_path).stat().st_mode) == 0o600


def test_each_manifest_has_its_own_directory(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    project(tmp_path / "a", "from a")
    project(tmp_path / "b", "from b")
    a_path, a = exec_child(tmp_path, runtime, "a/launcher.yaml")
    b_path, b = exec_child(tmp_path, runtime, "b/launcher.yaml")
    assert (a, b) == ("from a", "from b") and Path(a_path).parent != Path(b_path).parent
    assert Path(a_path).read_text() == "from a"


def test_a_directory_someone_else_prepared_is_refused(tmp_path: Path) -> None:
    """The base may be world-writable /dev/shm: a link (or an open directory) at our name is never used."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (runtime / f"launcher-env-{os.getuid()}").symlink_to(elsewhere)
    project(tmp_path, "secret-value")
    proc = run_launcher(["exec", "--", "true"], env=launcher_env({"XDG_RUNTIME_DIR": str(runtime)}), cwd=tmp_path)
    assert proc.returncode == 78 and "is not a private directory of this user" in proc.stderr
    assert list(elsewhere.iterdir()) == []
