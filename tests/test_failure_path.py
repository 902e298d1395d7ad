"""The failure path a new user meets first (docs/operations/failures.md): every failure said once,
in order, in plain words, before anything is fetched when it can be, and nothing left behind."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from launcher.model.config import EnvFrom, Manifest
from launcher.model.refs import Reference
from launcher.resolve.resolver import Resolver
from launcher.sources.base import Secret
from launcher.sources.file import FileSourceConfig
from tests.helpers import HELPERS_DIR, launcher_env, run_launcher

DUMP_ENV = str(HELPERS_DIR / "dump_env.py")
EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z]+(Error|Exception)\b|Traceback")


def base_env(**extra: str) -> dict[str, str]:
    return launcher_env({"LC_ALL": "C.UTF-8", **extra})


def project(tmp_path: Path, env_yaml: str, secrets: dict[str, object] | None = None) -> Path:
    (tmp_path / "secrets.json").write_text(json.dumps(secrets or {"app": {"db": {"user": "u", "password": "p"}}}))
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text(f"version: 1\nsources:\n  dev: {{type: file, path: secrets.json}}\nenv:\n{env_yaml}")
    return manifest


def test_every_failing_binding_is_reported_in_manifest_order(tmp_path: Path) -> None:
    env_yaml = "".join(f"  V{i}: dev://app/missing{i}\n" for i in (3, 1, 4, 2)) + "  OK: dev://app/db#user\n"
    project(tmp_path, env_yaml)
    for args in (["run", "--", "true"], ["exec", "--", "true"], ["check"]):
        proc = run_launcher(args, env=base_env(), cwd=tmp_path)
        assert proc.returncode == 66, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("launcher: error:")]
        assert [re.search(r"env\.(V\d)", line).group(1) for line in errors] == ["V3", "V1", "V4", "V2"], proc.stderr  # type: ignore[union-attr]
        assert all("launcher.yaml:" in line for line in errors)


def test_the_most_fundamental_failure_decides_the_exit_code(tmp_path: Path) -> None:
    (tmp_path / "locked.json").write_text("{}")
    (tmp_path / "locked.json").chmod(0o000)
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text("version: 1\nsources:\n  dev: {type: file, path: secrets.json}\nenv:\n  A: dev://nope\n  B: dev://app/db\n")
    (tmp_path / "secrets.json").write_text(json.dumps({"app": {"db": {"user": "u", "password": "p"}}}))
    proc = run_launcher(["check"], env=base_env(), cwd=tmp_path)
    assert proc.returncode == 78, proc.stderr  # B: several fields and no #KEY (78) beats A: missing (66)
    assert "env.A" in proc.stderr and "env.B" in proc.stderr


def test_the_command_is_checked_before_any_secret_is_fetched(tmp_path: Path) -> None:
    project(tmp_path, "  A: dev://app/missing\n")  # would be 66, if it were fetched
    for command in ("run", "exec"):
        proc = run_launcher([command, "--", "definitely-not-a-command-4d2f"], env=base_env(), cwd=tmp_path)
        assert proc.returncode == 127, proc.stderr
        assert "command not found" in proc.stderr and "missing" not in proc.stderr


def test_a_missing_interpreter_is_named(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/nonexistent/python3\nprint('hi')\n")
    script.chmod(0o755)
    project(tmp_path, "  A: dev://app/db#user\n")
    for command in ("run", "exec"):
        proc = run_launcher([command, "--", str(script)], env=base_env(), cwd=tmp_path)
        assert proc.returncode == 127, proc.stderr
        assert "bad interpreter /nonexistent/python3" in proc.stderr, proc.stderr
        assert "command not found" not in proc.stderr


def test_check_shows_an_oversized_value_as_invalid_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps({"big": "x" * 140_000, "small": "y"}))
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text("version: 1\nsources:\n  dev: {type: file, path: ./s.json}\nenv:\n  SMALL: dev://small\n  BIG: dev://big\n")
    proc = run_launcher(["check", "-m", str(manifest)])
    assert proc.returncode == 78
    rows = {line.split()[0]: line.split()[-1] for line in proc.stdout.splitlines()[1:]}
    assert rows == {"SMALL": "ok", "BIG": "invalid"}
    assert f"{manifest}:6: env.BIG:" in proc.stderr and "file: true" in proc.stderr


def test_a_misspelt_source_in_the_environment_is_warned_about(tmp_path: Path) -> None:
    proc = run_launcher(["exec", "--", sys.executable, DUMP_ENV, str(tmp_path / "out.json")],
                        env=base_env(DB_PASSWORD="vualt://secret/app/db#password", SITE="https://example.org/"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "DB_PASSWORD" in proc.stderr and "did you mean 'vault'?" in proc.stderr
    assert "SITE" not in proc.stderr  # a URL is a URL
    assert "secret/app/db" not in proc.stderr  # the value is never echoed
    assert json.loads((tmp_path / "out.json").read_text())["env"]["DB_PASSWORD"] == "vualt://secret/app/db#password"


def test_a_misspelt_source_is_warned_about_once_with_watch_too(tmp_path: Path) -> None:
    """`run --watch` reads the environment twice (the resolver, then the watcher): one warning."""
    for args in (["exec"], ["run"], ["run", "--watch"]):
        proc = run_launcher([*args, "--", "true"], env=base_env(DB_PASSWORD="vualt://secret/app/db#password"), cwd=tmp_path)
        assert proc.returncode == 0, (args, proc.stderr)
        assert proc.stderr.count("did you mean 'vault'?") == 1, (args, proc.stderr)


def test_env_reuses_one_private_directory_for_file_bindings(tmp_path: Path) -> None:
    project(tmp_path, "  KEY: {ref: dev://app/db#password, file: true}\n")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = base_env(XDG_RUNTIME_DIR=str(runtime))
    first = run_launcher(["env", "--format", "json"], env=env, cwd=tmp_path)
    second = run_launcher(["env", "--format", "json"], env=env, cwd=tmp_path)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    path = Path(json.loads(first.stdout)["KEY"])
    assert json.loads(second.stdout)["KEY"] == str(path)  # the same file, rewritten: nothing piles up
    assert path.read_text() == "p" and path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert path.is_relative_to(runtime), "XDG_RUNTIME_DIR is preferred over /dev/shm"
    assert len(list(runtime.iterdir())) == 1 and len(list(path.parent.parent.iterdir())) == 1


def test_env_refuses_a_directory_someone_else_made(tmp_path: Path) -> None:
    project(tmp_path, "  KEY: {ref: dev://app/db#password, file: true}\n")
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / f"launcher-env-{os.getuid()}").mkdir(mode=0o777)
    os.chmod(runtime / f"launcher-env-{os.getuid()}", 0o777)
    proc = run_launcher(["env"], env=base_env(XDG_RUNTIME_DIR=str(runtime)), cwd=tmp_path)
    assert proc.returncode == 78 and "not a private directory" in proc.stderr


def test_files_dir_and_xdg_runtime_dir_decide_where_run_puts_secret_files(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    project(tmp_path, "  KEY: {ref: dev://app/db#password, file: true}\n")
    runtime, chosen = tmp_path / "runtime", tmp_path / "chosen"
    runtime.mkdir()
    chosen.mkdir()
    proc = run_launcher(["run", "--", sys.executable, DUMP_ENV, str(out)], env=base_env(XDG_RUNTIME_DIR=str(runtime)), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Path(json.loads(out.read_text())["env"]["KEY"]).is_relative_to(runtime)
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text(manifest.read_text().replace("env:\n", f"process: {{files_dir: {chosen}}}\nenv:\n"))
    proc = run_launcher(["run", "--", sys.executable, DUMP_ENV, str(out)], env=base_env(XDG_RUNTIME_DIR=str(runtime)), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Path(json.loads(out.read_text())["env"]["KEY"]).is_relative_to(chosen)
    assert list(chosen.iterdir()) == [] and list(runtime.iterdir()) == []  # removed when run exits


def test_env_from_keys_that_become_one_variable_are_78() -> None:
    class Keys:
        name = "dev"

        def fetch(self, path: str, version: str | None) -> Secret:
            return Secret(fields={"a-b": "1", "host": "h", "a_b": "2"}, version="v1")

        def close(self) -> None:
            pass

    entry = EnvFrom(Reference("dev", "app/config"), prefix="APP_", where="launcher.yaml:7")
    manifest = Manifest(sources={"dev": FileSourceConfig(name="dev", path="unused")}, env_from=(entry,))
    resolver = Resolver(manifest, source_factory=lambda config: Keys())
    resolution = resolver.resolve({}, inline=False)
    assert [r.status for r in resolution.results] == ["invalid"]
    message = str(resolution.errors[0])
    assert message.startswith("launcher.yaml:7: env_from: ") and "'a-b' and 'a_b' both become APP_A_B" in message
    assert resolution.errors[0].exit_code == 78 and "1" not in message.split("APP_A_B")[1]


@pytest.mark.parametrize("args", [["check"], ["exec", "--", "true"], ["env"]])
def test_no_exception_name_reaches_the_user(tmp_path: Path, args: list[str]) -> None:
    bad = ("version: 1\nenv: {A: 'dev://x'}\n", "\xff\xfe v\x00e\x00r\x00", "version: 1\nsources: {dev: {type: file, path: \"a\\0b\"}}\n")
    for text in bad:
        manifest = tmp_path / "m.yaml"
        manifest.write_bytes(text.encode("latin-1"))
        proc = run_launcher([args[0], "-m", str(manifest), *args[1:]], env=base_env(), cwd=tmp_path)
        assert proc.returncode == 78, proc.stderr
        assert not EXCEPTION_NAME.search(proc.stderr), proc.stderr
    proc = run_launcher([args[0], "-m", str(tmp_path), *args[1:]], env=base_env(), cwd=tmp_path)
    assert proc.returncode == 78 and "is a directory" in proc.stderr and not EXCEPTION_NAME.search(proc.stderr)
