"""`path:` destroys nothing (docs/guides/files-and-templates.md) and check refuses what run and exec refuse (docs/operations/failures.md).

A binding's `path:` owns its file: it is replaced on every write and removed when
`run` exits. So it is refused (78, naming file:line and the field, at `check
--offline` too) when it is the manifest, a template, a file a source reads,
another binding's `path:`, anything but a regular file, or a file of another
user. Every case runs the installed launcher and then looks at the file that
must have survived.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import launcher_env, run_launcher

CANARY = "owned-CANARY-7d1e"
ROOT = os.geteuid() == 0


def project(tmp: Path, env_yaml: str, secrets: dict[str, object] | None = None) -> Path:
    (tmp / "secrets.json").write_text(json.dumps(secrets or {"db": {"user": "app", "password": CANARY}}))
    (tmp / "app.tmpl").write_text("user = {{ dev://db#user }}\n")
    manifest = tmp / "launcher.yaml"
    manifest.write_text(f"version: 1\nsources:\n  dev: {{type: file, path: secrets.json}}\nenv:\n{env_yaml}")
    return manifest


def _symlink_to_manifest(tmp: Path) -> str:
    (tmp / "link.yaml").symlink_to(tmp / "launcher.yaml")
    return "./link.yaml"


def _hard_link_to_manifest(tmp: Path) -> str:
    os.link(tmp / "launcher.yaml", tmp / "hard.yaml")
    return "./hard.yaml"


def _fifo(tmp: Path) -> str:
    os.mkfifo(tmp / "fifo")
    return "./fifo"


def _directory(tmp: Path) -> str:
    (tmp / "adir").mkdir()
    return "./adir"


def _symlink_elsewhere(tmp: Path) -> str:
    (tmp / "victim").write_text("keep me\n")
    (tmp / "link").symlink_to(tmp / "victim")
    return "./link"


def _other_users_file(tmp: Path) -> str:
    (tmp / "theirs").write_text("keep me\n")
    os.chown(tmp / "theirs", 65534, 65534)  # nobody
    return "./theirs"


# (what is at the path, how to make it (returns the `path:` to write), what the error says)
CASES: list[tuple[str, Callable[[Path], str], str]] = [
    ("the manifest", lambda tmp: "./launcher.yaml", "is the manifest"),
    ("the manifest spelled with ..", lambda tmp: "./sub/../launcher.yaml", "is the manifest"),
    ("a symlink to the manifest", _symlink_to_manifest, "is the manifest"),
    ("a hard link to the manifest", _hard_link_to_manifest, "is the manifest"),
    ("its own template", lambda tmp: "./app.tmpl", "is the template of B"),
    ("the file source's file", lambda tmp: "./secrets.json", "is the file of source 'dev'"),
    ("another binding's path", lambda tmp: "./a.out", "is also the path of A (launcher.yaml:5)"),
    ("a directory", _directory, "is a directory"),
    ("a FIFO", _fifo, "is a FIFO"),
    ("a symlink to another file", _symlink_elsewhere, "is a symbolic link"),
]
if ROOT:
    CASES.append(("a file of another user", _other_users_file, "is a file of another user (nobody)"))


def snapshot(tmp: Path) -> dict[str, object]:
    """Every entry under ``tmp``: kind, owner, mode and content, to show that nothing was touched."""
    out: dict[str, object] = {}
    for path in sorted(tmp.rglob("*")):
        info = path.lstat()
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else os.readlink(path) if path.is_symlink() else None
        out[str(path.relative_to(tmp))] = (info.st_mode, info.st_uid, info.st_ino, content)
    return out


@pytest.mark.parametrize(("what", "make", "says"), CASES, ids=[c[0] for c in CASES])
def test_a_path_it_may_not_own_is_78_everywhere_and_nothing_is_touched(tmp_path: Path, what: str, make: Callable[[Path], str],
                                                                      says: str) -> None:
    (tmp_path / "sub").mkdir()
    project(tmp_path, "  A: {ref: dev://db#user, path: ./a.out}\n  B: {template: ./app.tmpl, path: PATH}\n")
    path = make(tmp_path)
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text(manifest.read_text().replace("PATH", path))
    before = snapshot(tmp_path)
    for args in (["check", "--offline"], ["check"], ["run", "--", "true"], ["exec", "--", "true"]):
        proc = run_launcher(args, env=launcher_env(), cwd=tmp_path, timeout=30)
        assert proc.returncode == 78, (args, proc.stderr)
        assert "launcher.yaml:6: env.B.path:" in proc.stderr and says in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and CANARY not in proc.stderr
        assert snapshot(tmp_path) == before, f"{args} touched a file"


def test_a_regular_file_of_our_own_is_replaced_then_removed(tmp_path: Path) -> None:
    """A restarted container finds the file its last run left: it is replaced, and removed on exit as any file `run` wrote."""
    project(tmp_path, "  KEY: {ref: dev://db#password, path: ./key.pem}\n")
    (tmp_path / "key.pem").write_text("left by the last run\n")
    assert run_launcher(["check", "--offline"], env=launcher_env(), cwd=tmp_path).returncode == 0
    code = "import os; print(open(os.environ['KEY']).read())"
    proc = run_launcher(["run", "--", sys.executable, "-c", code], env=launcher_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == CANARY
    assert not (tmp_path / "key.pem").exists()


def test_a_file_put_in_its_place_while_running_is_left_alone(tmp_path: Path) -> None:
    """`run` removes on exit only the very file it wrote: one that replaced it since is someone else's."""
    project(tmp_path, "  KEY: {ref: dev://db#password, path: ./key.pem}\n")
    code = ("import os; p = os.environ['KEY']; open(p + '.new', 'w').write('mine now\\n'); os.replace(p + '.new', p)")
    proc = run_launcher(["run", "--", sys.executable, "-c", code], env=launcher_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "key.pem").read_text() == "mine now\n"


def test_a_directory_path_is_78_in_check_run_and_exec(tmp_path: Path) -> None:
    """Issue 27.8: was 0 in check, 70 (an internal error) in run and exec."""
    project(tmp_path, "  A: {ref: dev://db#user, path: ./adir}\n")
    (tmp_path / "adir").mkdir()
    for args in (["check", "--offline"], ["check"], ["check", "--format", "json"], ["run", "--", "true"], ["exec", "--", "true"]):
        proc = run_launcher(args, env=launcher_env(), cwd=tmp_path)
        assert proc.returncode == 78, (args, proc.stderr)
        assert "launcher.yaml:5: env.A.path:" in proc.stderr and "is a directory" in proc.stderr
        assert "internal error" not in proc.stderr


def test_an_env_file_given_on_the_command_line_is_protected_at_check_offline_too(tmp_path: Path) -> None:
    """`--env-file` files join the manifest after it is read: `check --offline` refuses what `exec` refuses."""
    project(tmp_path, "  A: {value: hi, path: ./cli.env}\n")
    (tmp_path / "cli.env").write_text("B=dev://db#user\n")
    for args in (["check", "--offline", "--env-file", "cli.env"], ["exec", "--env-file", "cli.env", "--", "true"]):
        proc = run_launcher(args, env=launcher_env(), cwd=tmp_path)
        assert proc.returncode == 78, (args, proc.stderr)
        assert "launcher.yaml:5: env.A.path:" in proc.stderr and "is the env file cli.env" in proc.stderr
    assert (tmp_path / "cli.env").read_text() == "B=dev://db#user\n"


def test_a_nul_byte_in_a_secret_is_78_naming_the_binding_everywhere(tmp_path: Path) -> None:
    """Issue 27.8: was 0 in check, 126 ("exec format error") in run and 70 in exec."""
    project(tmp_path, "  PLAIN: dev://db#user\n  BINARY: dev://db#blob\n", secrets={"db": {"user": "app", "blob": CANARY + "\x00tail"}})
    marker = tmp_path / "started"
    for args in (["check"], ["run", "--", "touch", str(marker)], ["exec", "--", "touch", str(marker)]):
        proc = run_launcher(args, env=launcher_env(), cwd=tmp_path)
        assert proc.returncode == 78, (args, proc.stderr)
        assert "launcher.yaml:6: env.BINARY:" in proc.stderr and "NUL byte" in proc.stderr and "file: true" in proc.stderr
        assert CANARY not in proc.stderr + proc.stdout and "internal error" not in proc.stderr
    assert not marker.exists()
    table = run_launcher(["check"], env=launcher_env(), cwd=tmp_path).stdout
    assert [line.split()[-1] for line in table.splitlines()[1:]] == ["ok", "invalid"]
    report = json.loads(run_launcher(["check", "--format", "json"], env=launcher_env(), cwd=tmp_path).stdout)
    assert report["summary"]["exit_code"] == 78 and [b["status"] for b in report["bindings"]] == ["ok", "invalid"]


def test_a_nul_byte_is_fine_in_a_file(tmp_path: Path) -> None:
    """What the error suggests works: a file holds every byte."""
    project(tmp_path, "  BINARY: {ref: dev://db#blob, file: true}\n", secrets={"db": {"blob": "a\x00b"}})
    code = "import os, sys; p = os.environ['BINARY']; sys.stdout.write(repr(open(p, 'rb').read())); os.unlink(p)"
    proc = run_launcher(["exec", "--", sys.executable, "-c", code], env=launcher_env({"XDG_RUNTIME_DIR": str(tmp_path)}), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == repr(b"a\x00b")
