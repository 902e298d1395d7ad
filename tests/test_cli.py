"""The installed ``launcher`` executable, run as a subprocess: exec, check, env, init, logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers import HELPERS_DIR, LAUNCHER, launcher_env, run_launcher

DUMP_ENV = str(HELPERS_DIR / "dump_env.py")
CANARY = "canary-7c41e0-never-log-me"

# Values that break naive quoting: spaces, both quotes, $, backticks, backslashes, newlines, unicode.
TRICKY = {
    "SPACES": "a b  c",
    "QUOTES": "it's \"quoted\"",
    "DOLLAR": "$HOME ${HOME} $(id) `id` $$",
    "NEWLINES": "line1\nline2\n",
    "BACKSLASH": "C:\\path\\n\\t",
    "UNICODE": "pässwörd ✓ 密码",
    "EMPTY": "",
    "DASH": "-n",
    "GLOB": "* ? [a]",
    "HASH": "#not a comment",
}


def base_env(**extra: str) -> dict[str, str]:
    # LC_ALL keeps Python's locale coercion (PEP 538) from adding LC_CTYPE to the child's environment.
    return launcher_env({"LC_ALL": "C.UTF-8", **extra})


def write_project(tmp_path: Path, env_yaml: str, secrets: dict[str, object] | None = None, extra: str = "") -> Path:
    default: dict[str, object] = {"app": {"db": {"user": "u", "password": CANARY}}}
    (tmp_path / "secrets.json").write_text(json.dumps(default if secrets is None else secrets))
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text(f"version: 1\nsources:\n  dev: {{type: file, path: secrets.json}}\n{extra}env:\n{env_yaml}", encoding="utf-8")
    return manifest


def dump(tmp_path: Path, args: list[str], env: dict[str, str] | None = None, extra_argv: tuple[str, ...] = ()) -> dict[str, object]:
    out = tmp_path / f"dump-{uuid.uuid4().hex}.json"
    proc = run_launcher([*args, "--", sys.executable, DUMP_ENV, str(out), *extra_argv], env=env or base_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, object] = json.loads(out.read_text(encoding="utf-8"))
    data["stderr"] = proc.stderr
    return data


def child_env(data: dict[str, object]) -> dict[str, str]:
    env = data["env"]
    assert isinstance(env, dict)
    return env


# -- exec ------------------------------------------------------------------------------------


def test_exec_gives_the_child_exactly_the_expected_environment(tmp_path: Path) -> None:
    secrets = {"t": TRICKY}
    bindings = "".join(f"  S_{name}: dev://t/{name}\n" for name in TRICKY)
    bindings += "".join(f"  L_{name}: {json.dumps(value)}\n" for name, value in TRICKY.items() if "${" not in value)
    write_project(tmp_path, bindings + "  L_DOLLAR: {value: 'a $b $$c'}\n", secrets)
    env = base_env(INHERITED_ONE="kept", VAULT_TOKEN="launcher-token")
    data = dump(tmp_path, ["exec"], env)
    expected = {k: v for k, v in env.items() if k != "VAULT_TOKEN"}
    expected.update({f"S_{k}": v for k, v in TRICKY.items()})
    expected.update({f"L_{k}": v for k, v in TRICKY.items() if "${" not in v})
    expected["L_DOLLAR"] = "a $b $c"
    assert child_env(data) == expected


def test_exec_keeps_the_pid(tmp_path: Path) -> None:
    write_project(tmp_path, "  A: dev://app/db#user\n")
    out = tmp_path / "pid.json"
    proc = subprocess.Popen([LAUNCHER, "exec", "--", sys.executable, DUMP_ENV, str(out), "--flag", "two words"],
                            env=base_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    data = json.loads(out.read_text())
    assert data["pid"] == proc.pid
    assert data["argv"] == ["--flag", "two words"]  # argv passed through untouched
    assert data["env"]["A"] == "u"


def test_double_dash_is_optional(tmp_path: Path) -> None:
    write_project(tmp_path, "  A: dev://app/db#user\n")
    out = tmp_path / "o.json"
    proc = run_launcher(["exec", sys.executable, DUMP_ENV, str(out), "--help", "-m", "x"], env=base_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["argv"] == ["--help", "-m", "x"] and data["env"]["A"] == "u"


def test_exec_with_20_bindings_from_the_file_source(tmp_path: Path) -> None:
    secrets = {"svc": {f"k{i}": f"value {i} ✓" for i in range(20)}}
    write_project(tmp_path, "".join(f"  VAR_{i}: dev://svc#k{i}\n" for i in range(20)), secrets)
    env = child_env(dump(tmp_path, ["exec"]))
    assert {k: v for k, v in env.items() if k.startswith("VAR_")} == {f"VAR_{i}": f"value {i} ✓" for i in range(20)}


@pytest.mark.parametrize(
    ("env_yaml", "secrets", "command", "code", "message"),
    [
        ("  A: dev://app/db#nope\n", None, ["true"], 66, "no key 'nope'"),
        ("  A: dev://app/other#x\n", None, ["true"], 66, "not found"),
        ("  A: dev://app/db\n", None, ["true"], 78, "several fields"),
        ("  A: dev://app/db#user\n", None, ["definitely-not-a-command-4d2f"], 127, "command not found"),
        ("  A: dev://app/db#user\n", None, ["./plain-file"], 126, "permission denied"),
        ("  A: dev://app/db#user\n", None, ["/"], 126, "permission denied"),
        ("  A: dev://app/db#user\n", None, ["./no/such/file"], 127, "command not found"),
    ],
)
def test_exec_exit_codes(
    tmp_path: Path, env_yaml: str, secrets: dict[str, object] | None, command: list[str], code: int, message: str
) -> None:
    write_project(tmp_path, env_yaml, secrets)
    (tmp_path / "plain-file").write_text("#!/bin/sh\n")
    (tmp_path / "plain-file").chmod(0o644)
    proc = run_launcher(["exec", "--", *command], env=base_env(), cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert CANARY not in proc.stderr + proc.stdout


def test_missing_file_source_file_is_66(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text("version: 1\nsources:\n  dev: {type: file, path: gone.yaml}\nenv:\n  A: dev://x\n")
    proc = run_launcher(["exec", "-m", str(manifest), "--", "true"], env=base_env(), cwd=tmp_path)
    assert proc.returncode == 66, proc.stderr


def _secret_dirs(marker: str) -> list[Path]:
    """Secret-file directories (any location the launcher may use) holding a file called ``marker``."""
    bases = {Path("/dev/shm"), Path(os.environ.get("XDG_RUNTIME_DIR") or "/nonexistent"), Path(os.environ.get("TMPDIR") or "/tmp")}
    return [d for base in bases if base.is_dir() for d in base.glob("launcher-*") if (d / marker).exists()]


@pytest.mark.parametrize(
    ("command", "code", "big"),
    [
        (["definitely-not-a-command-4d2f"], 127, False),  # lookup fails before any file is written
        (["./not-executable-format"], 126, False),  # found, but execve itself fails
        (["true"], 78, True),  # the environment is too large for execve
    ],
)
def test_exec_failure_leaves_no_secret_files(tmp_path: Path, command: list[str], code: int, big: bool) -> None:
    marker = f"FILE_{uuid.uuid4().hex[:12].upper()}"
    bogus = tmp_path / "not-executable-format"
    bogus.write_bytes(b"\x00\x01\x02 not a program\n")
    bogus.chmod(0o755)
    secrets: dict[str, object] = {"app": {"key": "k" * 10, "big": "b" * (200 * 1024)}}
    env_yaml = f"  {marker}: {{ref: dev://app/key, file: true}}\n" + ("  BIG: dev://app/big\n" if big else "")
    write_project(tmp_path, env_yaml, secrets)
    proc = run_launcher(["exec", "--", *command], env=base_env(), cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    assert _secret_dirs(marker) == []


def test_exec_file_binding_leaves_the_file_for_the_child(tmp_path: Path) -> None:
    write_project(tmp_path, "  TLS_KEY: {ref: dev://app/db#password, file: true}\n")
    data = dump(tmp_path, ["exec"])
    path = Path(child_env(data)["TLS_KEY"])
    try:
        assert path.read_text() == CANARY
        assert path.stat().st_mode & 0o777 == 0o600
        assert "secret files left" in str(data["stderr"])
    finally:
        path.unlink()
        path.parent.rmdir()


def test_environment_too_large_for_execve_is_78(tmp_path: Path) -> None:
    write_project(tmp_path, "  HUGE_VALUE: dev://app/big\n", {"app": {"big": "x" * (200 * 1024)}})
    marker = tmp_path / "ran"
    proc = run_launcher(["exec", "--", "touch", str(marker)], env=base_env(), cwd=tmp_path)
    assert proc.returncode == 78, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "HUGE_VALUE" in lines[-1] and "file: true" in lines[-1]
    assert "Traceback" not in proc.stderr and not marker.exists()


def test_large_value_works_as_a_file(tmp_path: Path) -> None:
    write_project(tmp_path, "  HUGE_VALUE: {ref: dev://app/big, file: true}\n", {"app": {"big": "x" * (200 * 1024)}})
    path = Path(child_env(dump(tmp_path, ["exec"]))["HUGE_VALUE"])
    try:
        assert path.stat().st_size == 200 * 1024
    finally:
        path.unlink()
        path.parent.rmdir()


# -- credentials and inline references --------------------------------------------------------


@pytest.mark.parametrize(
    ("passthrough", "present"),
    [
        ("[]", set()),
        ("[VAULT_TOKEN]", {"VAULT_TOKEN"}),
        ("[AZURE_CLIENT_SECRET, VAULT_TOKEN]", {"VAULT_TOKEN", "AZURE_CLIENT_SECRET"}),
    ],
)
def test_launcher_credentials_never_reach_the_child(tmp_path: Path, passthrough: str, present: set[str]) -> None:
    write_project(tmp_path, "  A: dev://app/db#user\n", extra=f"process:\n  passthrough: {passthrough}\n")
    creds = {"VAULT_TOKEN": "s.tok", "AZURE_CLIENT_SECRET": "az-secret", "VAULT_SECRET_ID": "sid"}
    env = child_env(dump(tmp_path, ["exec"], base_env(**creds)))
    assert {k for k in creds if k in env} == present
    assert all(env[k] == creds[k] for k in present)


def test_credentials_are_scrubbed_without_a_manifest(tmp_path: Path) -> None:
    env = child_env(dump(tmp_path, ["exec"], base_env(VAULT_TOKEN="s.tok", AZURE_CLIENT_SECRET="x")))
    assert "VAULT_TOKEN" not in env and "AZURE_CLIENT_SECRET" not in env


def test_inline_references(tmp_path: Path) -> None:
    write_project(tmp_path, "  TAKEN: from-manifest\n")
    inline = {"INLINE_USER": "dev://app/db#user", "UNDECLARED": "foo://x", "URL": "https://example.com", "TAKEN": "dev://app/db#user"}
    env = child_env(dump(tmp_path, ["exec"], base_env(**inline)))
    assert env["INLINE_USER"] == "u"
    assert env["UNDECLARED"] == "foo://x" and env["URL"] == "https://example.com"
    assert env["TAKEN"] == "from-manifest"
    env = child_env(dump(tmp_path, ["exec", "--no-inline"], base_env(**inline)))
    assert env["INLINE_USER"] == "dev://app/db#user"


def test_inline_reference_to_an_undeclared_source_without_manifest(tmp_path: Path) -> None:
    env = child_env(dump(tmp_path, ["exec"], base_env(X="dev://app/db#user")))
    assert env["X"] == "dev://app/db#user"


# -- check -------------------------------------------------------------------------------------


def test_check_prints_a_table_and_never_a_value(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        "  GOOD: dev://app/db#password\n"
        "  DEF: {ref: 'dev://app/db#nope', default: " + CANARY + "-default}\n"
        "  OPT: {ref: dev://app/none, optional: true}\n"
        "  LIT: " + CANARY + "-literal\n"
        "  MISS: dev://app/db#absent\n",
    )
    proc = run_launcher(["check"], env=base_env(INLINE="dev://app/db#password"), cwd=tmp_path)
    assert proc.returncode == 66, proc.stderr
    rows = [line.split() for line in proc.stdout.strip().splitlines()]
    assert rows[0] == ["NAME", "REF", "VERSION", "STATUS"]
    table = {row[0]: row[1:] for row in rows[1:]}
    assert table["GOOD"][0] == "dev://app/db#password" and table["GOOD"][2] == "ok" and table["GOOD"][1] != "-"
    assert table["DEF"] == ["dev://app/db#nope", "-", "default"]
    assert table["OPT"] == ["dev://app/none", "-", "optional"]
    assert table["LIT"] == ["-", "-", "ok"]
    assert table["MISS"] == ["dev://app/db#absent", "-", "missing"]
    assert table["INLINE"][2] == "ok"
    assert CANARY not in proc.stdout + proc.stderr
    assert proc.stderr.count("env.MISS") == 1  # the deciding error is reported once


def test_check_exits_with_the_code_exec_would(tmp_path: Path) -> None:
    write_project(tmp_path, "  MISS: dev://app/db#absent\n  MULTI: dev://app/db\n")
    check = run_launcher(["check"], env=base_env(), cwd=tmp_path)
    exec_ = run_launcher(["exec", "--", "true"], env=base_env(), cwd=tmp_path)
    assert check.returncode == exec_.returncode == 78  # 78 beats 66
    assert "invalid" in check.stdout and "missing" in check.stdout
    write_project(tmp_path, "  GOOD: dev://app/db#user\n")
    assert run_launcher(["check"], env=base_env(), cwd=tmp_path).returncode == 0


@pytest.mark.parametrize(
    "args",
    [
        ["--log-level", "debug", "check"],
        ["--log-level", "debug", "--log-format", "json", "check"],
        ["--log-level", "debug", "check", "--offline"],
        ["--log-level", "debug", "exec", "--", "true"],
        ["--log-level", "debug", "exec", "--", "definitely-not-a-command-4d2f"],
        ["--log-level", "debug", "env", "--format", "json", "-m", "missing-key.yaml"],
    ],
)
def test_logs_never_contain_a_secret_value(tmp_path: Path, args: list[str]) -> None:
    bindings = "  P: dev://app/db#password\n  T: 'x{{ dev://app/db#password }}y'\n  F: {ref: dev://app/db#password, file: true}\n"
    write_project(tmp_path, bindings + "  J: dev://app/json#k\n", {"app": {"db": {"user": "u", "password": CANARY}, "json": CANARY}})
    (tmp_path / "missing-key.yaml").write_text("version: 1\nsources:\n  dev: {type: file, path: secrets.json}\nenv:\n  P: dev://app/db\n")
    proc = run_launcher(args, env=base_env(INLINE="dev://app/db#password"), cwd=tmp_path)
    assert proc.returncode != 0 or "exec" in args or "--offline" in args
    assert CANARY not in proc.stdout and CANARY not in proc.stderr
    assert "Traceback" not in proc.stderr


# -- env ---------------------------------------------------------------------------------------


def test_env_formats(tmp_path: Path) -> None:
    write_project(tmp_path, "".join(f"  {k}: dev://t/{k}\n" for k in TRICKY), {"t": TRICKY})
    env = base_env(NOT_A_BINDING="x")
    as_json = run_launcher(["env", "--format", "json"], env=env, cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == TRICKY  # the bindings only, not the inherited environment
    dotenv = run_launcher(["env"], env=env, cwd=tmp_path)
    lines = dotenv.stdout.splitlines()
    assert "QUOTES='it'\\''s \"quoted\"'" in lines  # single quotes: nothing inside is expanded
    assert "DOLLAR='$HOME ${HOME} $(id) `id` $$'" in lines
    assert "BACKSLASH='C:\\path\\n\\t'" in lines
    assert "EMPTY=''" in lines
    assert "python-dotenv reads QUOTES, DOLLAR differently" in dotenv.stderr


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_env_dotenv_sourced_by_sh_runs_nothing(tmp_path: Path, shell: str) -> None:
    """`set -a; . ./file` gives back every value byte for byte: no $(id), backtick or $HOME is run or expanded."""
    write_project(tmp_path, "".join(f"  {k}: dev://t/{k}\n" for k in TRICKY), {"t": TRICKY})
    dotenv = run_launcher(["env"], env=base_env(), cwd=tmp_path)
    assert dotenv.returncode == 0, dotenv.stderr
    (tmp_path / "out.env").write_text(dotenv.stdout)
    out = tmp_path / "sourced.json"
    script = f'set -a; . ./out.env; set +a; exec "{sys.executable}" "{DUMP_ENV}" "{out}"'
    proc = subprocess.run([shell, "-c", script], env=base_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    env = json.loads(out.read_text(encoding="utf-8"))["env"]
    assert {k: env.get(k) for k in TRICKY} == TRICKY


def test_env_dotenv_read_by_python_dotenv(tmp_path: Path) -> None:
    dotenv_values = pytest.importorskip("dotenv").dotenv_values
    # A single quote is the one shape python-dotenv cannot read back (the launcher warns);
    # everything else comes back byte for byte, ${HOME} too when loaded without interpolation.
    plain = {k: v for k, v in TRICKY.items() if "'" not in v}
    write_project(tmp_path, "".join(f"  {k}: dev://t/{k}\n" for k in plain), {"t": plain})
    dotenv = run_launcher(["env"], env=base_env(), cwd=tmp_path)
    assert dotenv.returncode == 0, dotenv.stderr
    assert "python-dotenv reads DOLLAR differently" in dotenv.stderr  # ${HOME}: its own interpolation
    (tmp_path / "out.env").write_text(dotenv.stdout)
    assert dotenv_values(tmp_path / "out.env", interpolate=False) == plain
    no_dollar = {k: v for k, v in plain.items() if "${" not in v}
    assert {k: v for k, v in dotenv_values(tmp_path / "out.env").items() if k in no_dollar} == no_dollar


def test_env_shell_round_trips_through_eval(tmp_path: Path) -> None:
    write_project(tmp_path, "".join(f"  {k}: dev://t/{k}\n" for k in TRICKY), {"t": TRICKY})
    out = tmp_path / "eval.json"
    script = f'eval "$("{LAUNCHER}" env --format shell)" && exec "{sys.executable}" "{DUMP_ENV}" "{out}"'
    proc = subprocess.run(["bash", "-c", script], env=base_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    env = json.loads(out.read_text(encoding="utf-8"))["env"]
    assert {k: env.get(k) for k in TRICKY} == TRICKY


# -- init --------------------------------------------------------------------------------------


def test_init_writes_a_manifest_that_passes_check(tmp_path: Path) -> None:
    proc = run_launcher(["init"], env=base_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "launcher.yaml").exists()
    assert (tmp_path / "secrets.dev.yaml").stat().st_mode & 0o777 == 0o600
    offline = run_launcher(["check", "--offline"], env=base_env(), cwd=tmp_path)
    assert offline.returncode == 0, offline.stderr
    online = run_launcher(["check"], env=base_env(), cwd=tmp_path)
    assert online.returncode == 0, online.stderr


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "custom.yaml"
    target.write_text("keep me\n")
    proc = run_launcher(["init", str(target)], env=base_env(), cwd=tmp_path)
    assert proc.returncode == 73, proc.stderr
    assert "--force" in proc.stderr
    assert target.read_text() == "keep me\n"
    forced = run_launcher(["init", "--force", str(target)], env=base_env(), cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "version: 1" in target.read_text()
    assert run_launcher(["check", "--offline", "-m", str(target)], env=base_env(), cwd=tmp_path).returncode == 0


# -- logging -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("command", "code"), [(["exec", "--", "true"], 0), (["exec", "--", "definitely-not-a-command-4d2f"], 127),
                                                (["check", "-m", "nope.yaml"], 78)])
def test_json_logs_are_one_object_per_line(tmp_path: Path, command: list[str], code: int) -> None:
    write_project(tmp_path, "  A: dev://app/db#user\n")
    proc = run_launcher(["--log-format", "json", "--log-level", "debug", *command], env=base_env(), cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines
    for line in lines:
        record = json.loads(line)
        assert {"time", "level", "logger", "msg"} <= set(record)
    if code:
        assert json.loads(lines[-1])["level"] == "error" and json.loads(lines[-1])["exit_code"] == code


def test_log_format_from_the_environment(tmp_path: Path) -> None:
    write_project(tmp_path, "  A: dev://app/db#user\n")
    proc = run_launcher(["exec", "--", "true"], env=base_env(LAUNCHER_LOG_FORMAT="json", LAUNCHER_LOG_LEVEL="debug"), cwd=tmp_path)
    assert proc.returncode == 0
    assert any(json.loads(line)["msg"].startswith("resolved 1 variable from dev") for line in proc.stderr.splitlines())


def test_info_level_is_quiet_and_stdout_stays_clean(tmp_path: Path) -> None:
    """At info a launcher that works prints nothing: the command's output looks as if it ran alone."""
    write_project(tmp_path, "  A: dev://app/db#user\n")
    for command in ("exec", "run"):
        proc = run_launcher([command, "--", "printf", "%s", "child-output"], env=base_env(), cwd=tmp_path)
        assert proc.returncode == 0
        assert (proc.stdout, proc.stderr) == ("child-output", "")


def test_global_options_after_the_command(tmp_path: Path) -> None:
    write_project(tmp_path, "  A: dev://app/db#user\n")
    proc = run_launcher(["run", "--log-level", "debug", "--", "true"], env=base_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "resolved 1 variable from dev" in proc.stderr
    proc = run_launcher(["check", "--log-format", "json", "-m", "nope.yaml"], env=base_env(), cwd=tmp_path)
    assert proc.returncode == 78
    assert json.loads(proc.stderr.splitlines()[-1])["level"] == "error"


def test_usage_error_is_2() -> None:
    assert run_launcher(["exec"], env=base_env()).returncode == 2
    assert run_launcher(["frobnicate"], env=base_env()).returncode == 2


# -- output, in process ------------------------------------------------------------------------


def test_check_table_columns_and_extra_column() -> None:
    from launcher.output import check_table
    from launcher.resolve.resolver import BindingResult

    results = [BindingResult("A", "dev://a#k", "ok", "v1", value=CANARY), BindingResult("LONG_NAME", "-", "default", value=CANARY)]
    table = check_table(r for r in results)
    assert table.splitlines() == [
        "NAME       REF        VERSION  STATUS",
        "A          dev://a#k  v1       ok",
        "LONG_NAME  -          -        default",
    ]
    with_next = check_table((r for r in results), extra={"A": "30s"})
    assert with_next.splitlines()[0].endswith("NEXT_CHECK") and with_next.splitlines()[1].endswith("30s")
    assert CANARY not in table + with_next


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("dotenv", "A='x \"y\" $z\\n\n'\nB=''\nC='it'\\''s'"),
        ("shell", "export A='x \"y\" $z\\n\n'\nexport B=''\nexport C='it'\\''s'"),
        ("json", '{\n  "A": "x \\"y\\" $z\\\\n\\n",\n  "B": "",\n  "C": "it\'s"\n}'),
    ],
)
def test_format_env(fmt: str, expected: str) -> None:
    from launcher.output import format_env

    assert format_env({"A": 'x "y" $z\\n\n', "B": "", "C": "it's"}, fmt) == expected


def test_check_exits_78_like_exec_when_the_environment_is_too_large(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps({"big": "x" * 140_000}))
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text("version: 1\nsources:\n  dev: {type: file, path: ./s.json}\nenv:\n  BIG: dev://big\n")
    checked = run_launcher(["check", "-m", str(manifest)])
    executed = run_launcher(["exec", "-m", str(manifest), "--", "true"])
    assert checked.returncode == executed.returncode == 78
    assert "BIG" in checked.stderr and "file: true" in checked.stderr


def test_a_directory_as_manifest_is_78(tmp_path: Path) -> None:
    result = run_launcher(["check", "--offline", "-m", str(tmp_path)])
    assert result.returncode == 78 and "Traceback" not in result.stderr
