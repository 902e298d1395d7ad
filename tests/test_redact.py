"""`launcher redact [-m MANIFEST] [FILE...]`: files or stdin to stdout with the secret values concealed, via the real command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import HELPERS_DIR, LAUNCHER, launcher_env, run_launcher, wait_for

PASSWORD = "pw-REDACT-51c9e0a7"
TOKEN = "tok-REDACT-9a3f17d2"
PEM = "-----BEGIN TEST KEY-----\nMIIBVwIBADANBgkqhkiG9w0BAQEF\nAASCAT8wggE7AgEAAkEAq7BFUpk\n-----END TEST KEY-----"
PIECES = str(HELPERS_DIR / "write_pieces.py")


def project(tmp: Path, extra: str = "") -> None:
    secrets = {"db": json.dumps({"user": "app", "password": PASSWORD}), "token": TOKEN, "pem": PEM, "path": "a/b<c>&d\u00e9"}
    (tmp / "secrets.json").write_text(json.dumps(secrets))
    (tmp / "launcher.yaml").write_text(
        "version: 1\nsources:\n  dev: {type: file, path: secrets.json}\n"
        f"env:\n  DB_PASSWORD: dev://db#password\n  TOKEN: dev://token\n  PEM: dev://pem\n  ODD: dev://path\n{extra}")


def test_files_and_stdin_are_redacted_with_every_rule(tmp_path: Path) -> None:
    project(tmp_path)
    odd = json.dumps("a/b<c>&d\u00e9")[1:-1]
    go = odd.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    php = odd.replace("/", "\\/")
    log = tmp_path / "build.log"
    log.write_text(
        f"password={PASSWORD}\n"
        f'config: {json.dumps({"db": json.dumps({"password": PASSWORD})})}\n'  # JSON inside JSON
        f"    {PEM.splitlines()[1]}\n"  # one line of a multi-line value
        f"go: {go}\nphp: {php}\n"
        "ordinary line, left alone\n")
    (tmp_path / "second.log").write_text(f"token {TOKEN[:12]}")  # the start of a value, then the end of the file
    result = run_launcher(["redact", str(log), "-", "second.log"], cwd=tmp_path, input=f"stdin {TOKEN}\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "password=<concealed>\n"
        'config: {"db": "{\\"password\\": \\"<concealed>\\"}"}\n'
        "    <concealed>\n"
        "go: <concealed>\n"
        "php: <concealed>\n"
        "ordinary line, left alone\n"
        "stdin <concealed>\n"
        f"token {TOKEN[:12]}"  # a file's end decides: not the whole value, shown as it is
    )
    assert result.stderr == ""


def test_a_live_stream_follows_the_hold_rule(tmp_path: Path) -> None:
    """`app | launcher redact`: a prompt shows while the writer waits; a value split by a pause is concealed whole."""
    project(tmp_path)
    out = tmp_path / "out"
    env = launcher_env({"TOKEN": TOKEN})
    writer = subprocess.Popen([sys.executable, PIECES, "out:key={TOKEN[:8]}", "sleep:0.3", "out:{TOKEN[8:]}\n", "out:Password: ",
                               "sleep:60"], stdout=subprocess.PIPE, env=env)
    assert writer.stdout is not None
    with open(out, "wb") as fh:
        redact = subprocess.Popen([LAUNCHER, "redact"], stdin=writer.stdout, stdout=fh, cwd=tmp_path, env=launcher_env())
        writer.stdout.close()
        try:
            wait_for(lambda: out.read_bytes() == b"key=<concealed>\nPassword: ", timeout=10, what="the prompt, while the writer waits")
        finally:
            writer.kill()
            writer.wait(timeout=10)
        assert redact.wait(timeout=10) == 0
    assert out.read_bytes() == b"key=<concealed>\nPassword: "


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["missing.log"], 66, "missing.log: no such file"),
        (["."], 2, ".: is a directory"),
        (["-m", "nope.yaml"], 78, "nope.yaml"),
    ],
)
def test_errors_are_one_line_with_the_documented_code(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    # An unreachable Vault: the input is checked before any secret is fetched (no 69 after retries).
    project(tmp_path, "  REMOTE: vault://secret/app#pw\nretry: {attempts: 5, deadline: 60s}\n")
    result = run_launcher(["redact", *args], cwd=tmp_path, env=launcher_env({"VAULT_ADDR": "http://127.0.0.1:9", "VAULT_TOKEN": "x"}),
                          input="", timeout=30)
    assert result.returncode == code, result.stderr
    assert message in result.stderr and len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_secret_that_cannot_be_read_fails_like_the_other_commands(tmp_path: Path) -> None:
    project(tmp_path, "  GONE: dev://no-such-key\n")
    result = run_launcher(["redact"], cwd=tmp_path, input=f"{TOKEN}\n")
    assert result.returncode == 66
    assert "env.GONE" in result.stderr and result.stdout == ""


def test_a_reader_that_goes_away_ends_it_quietly(tmp_path: Path) -> None:
    project(tmp_path)
    (tmp_path / "big.log").write_text(f"line {TOKEN}\n" * 200000)
    proc = subprocess.run(f"{LAUNCHER} redact big.log | head -n 1", shell=True, cwd=tmp_path, env=launcher_env(),
                          capture_output=True, timeout=60, check=False)
    assert proc.stdout == b"line <concealed>\n"
    assert proc.stderr == b""


def test_without_values_it_copies_and_warns(tmp_path: Path) -> None:
    result = run_launcher(["redact"], cwd=tmp_path, input="nothing secret here\n")
    assert result.returncode == 0
    assert result.stdout == "nothing secret here\n"
    assert "no secret values to conceal" in result.stderr
