"""The SSM source as a user sees it: the installed ``launcher`` against moto's HTTP server.

Also the Python API, failover between two SSM sources, and one manifest that
mixes OpenBao, SSM and a file. In-process tests are in tests/test_ssm.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

import launcher
from tests.helpers import HELPERS_DIR, LAUNCHER, run_launcher, scrape, wait_for
from tests.openbao import OpenBao, write_kv2

if TYPE_CHECKING:  # imported by pytest as a plugin, so that its asserts are rewritten
    from tests.moto_server import Forwarder, MotoServer

pytest_plugins = ["tests.moto_server"]

CANARY = "ssm-cli-CANARY-5e2d"
ROOT = Path(__file__).resolve().parent.parent
FAST_RETRY = {"attempts": 2, "initial_delay": "10ms", "deadline": "5s"}


def cli_env(moto_server: MotoServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAUNCHER_", "VAULT_", "AZURE_", "BAO_"))}
    return {**env, **moto_server.env(), **extra}


def put(moto_server: MotoServer, name: str, value: str, kind: str = "String") -> str:
    return str(moto_server.ssm.put_parameter(Name=name, Value=value, Type=kind, Overwrite=True)["Version"])


def write(tmp_path: Path, manifest: dict[str, Any]) -> Path:
    path = tmp_path / "launcher.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def audit_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_example_manifest_is_valid_offline(moto_server: MotoServer) -> None:
    manifest = ROOT / "examples" / "aws" / "ssm.yaml"
    result = run_launcher(["check", "--offline", "-m", str(manifest)], env=cli_env(moto_server))
    assert result.returncode == 0, result.stderr


def test_env_and_check_with_declared_builtin_inline_and_env_from(moto_server: MotoServer, aws_forwarder: Forwarder,
                                                                 tmp_path: Path) -> None:
    root = "/" + moto_server.unique("app")
    put(moto_server, f"{root}/db", json.dumps({"user": "app", "password": CANARY}), "SecureString")
    api_version = put(moto_server, f"{root}/api-key", "api-" + CANARY, "SecureString")
    put(moto_server, f"{root}/config/log-level", "debug")
    put(moto_server, f"{root}/config/feature/beta", "on")
    put(moto_server, f"{root}/token", "old")
    put(moto_server, f"{root}/token", "new")
    moto_server.ssm.label_parameter_version(Name=f"{root}/token", ParameterVersion=1, Labels=["stable"])
    write(tmp_path, {
        "version": 1,
        "sources": {"prod": {"type": "ssm", "region": "us-east-1", "endpoint_url": aws_forwarder.url}},
        "env": {"DB_USER": f"prod://{root}/db#user", "DB_PASSWORD": f"prod://{root}/db#password", "API": f"ssm://{root}/api-key",
                "STABLE": f"prod://{root}/token?label=stable", "FIRST": f"prod://{root}/token?version=1"},
        "env_from": [{"ref": f"prod://{root}/config/", "prefix": "CFG_"}],
    })
    audit = tmp_path / "audit.jsonl"
    env = cli_env(moto_server, INLINE=f"ssm://{root}/db#password")  # the built-in source: AWS_* variables
    result = run_launcher(["env", "--format", "json", "--audit", str(audit)], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"CFG_LOG_LEVEL": "debug", "CFG_FEATURE_BETA": "on", "DB_USER": "app",
                                         "DB_PASSWORD": CANARY, "API": "api-" + CANARY, "STABLE": "old", "FIRST": "old",
                                         "INLINE": CANARY}
    fetched = {(e["source"], e["ref"], e.get("version")) for e in audit_events(audit) if e["event"] == "fetch"}
    assert ("ssm", f"ssm:/{root}/api-key", api_version) in fetched
    assert ("prod", f"prod:/{root}/token:stable", "1") in fetched
    check = run_launcher(["check", "--format", "json"], env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    rows = {row["name"]: row for row in json.loads(check.stdout)["bindings"]}
    assert (rows["API"]["version"], rows["STABLE"]["version"], rows["DB_USER"]["status"]) == (api_version, "1", "ok")
    assert len(rows["CFG_*"]["version"]) == 12  # a tree's version: a digest of its names and versions
    assert CANARY not in check.stdout + check.stderr + result.stderr + audit.read_text()


@pytest.mark.parametrize(
    ("prepare", "code"),
    [("missing", 66), ("missing-version", 66), ("denied", 77), ("kms-denied", 77), ("throttled", 69), ("unreachable", 69),
     ("no-region", 78), ("bad-name", 78), ("invalid", 78)],
)
def test_exit_codes(moto_server: MotoServer, aws_forwarder: Forwarder, tmp_path: Path, prepare: str, code: int) -> None:
    name = "/" + moto_server.unique("app") + "/secret"
    put(moto_server, name, CANARY, "SecureString")
    env = cli_env(moto_server, AWS_ENDPOINT_URL_SSM=aws_forwarder.url)
    ref = f"ssm://{name}"
    if prepare == "missing":
        ref += "-nope"
    elif prepare == "missing-version":
        ref += "?version=9"
    elif prepare == "denied":
        aws_forwarder.fail_next(5, 400, "AccessDeniedException")
    elif prepare == "kms-denied":
        aws_forwarder.fail_next(5, 400, "AccessDeniedException", message="(Service: AWSKMS; Status Code: 400)")
    elif prepare == "throttled":
        aws_forwarder.fail_next(5, 400, "ThrottlingException")
    elif prepare == "unreachable":
        env["AWS_ENDPOINT_URL_SSM"] = f"http://127.0.0.1:{closed_port()}"
    elif prepare == "no-region":
        del env["AWS_REGION"]
    elif prepare == "bad-name":
        ref = "ssm:///bad name!"
    else:
        aws_forwarder.fail_next(5, 400, "ValidationException", message="Parameter name: can't be prefixed with ssm")
    write(tmp_path, {"version": 1, "env": {"SECRET": ref}, "retry": FAST_RETRY})
    for command in (["env"], ["check"]):
        result = run_launcher(command, env=env, cwd=tmp_path)
        assert result.returncode == code, result.stderr
        assert CANARY not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr and "Exception" not in result.stderr.replace("AccessDeniedException", "")


def test_a_stalled_server_ends_in_69_within_the_deadline(moto_server: MotoServer, aws_forwarder: Forwarder,
                                                        tmp_path: Path) -> None:
    import time

    aws_forwarder.fail_next(20, 0)  # every request stalls (botocore would wait 10 s for each)
    write(tmp_path, {"version": 1, "env": {"A": "ssm:///app/a", "B": "ssm:///app/b#k"},
                     "retry": {"attempts": 5, "initial_delay": "100ms", "deadline": "2s"}})
    started = time.monotonic()
    result = run_launcher(["env"], env=cli_env(moto_server, AWS_ENDPOINT_URL_SSM=aws_forwarder.url), cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert result.returncode == 69, result.stderr
    assert "before the deadline" in result.stderr
    spent = [float(s) for s in re.findall(r"gave up after \d+ attempts? in ([\d.]+)s", result.stderr)]
    assert len(spent) == 2 and max(spent) <= 2 + 1, result.stderr  # the deadline plus 1 s, for each secret
    assert elapsed < 8, f"took {elapsed:.1f}s"  # botocore's 10 s read timeout alone would take longer


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_check_and_run_watch_see_a_new_version_and_a_moved_label(moto_server: MotoServer, aws_forwarder: Forwarder,
                                                                 tmp_path: Path) -> None:
    """A put (a new version) and a moved label are rotations, seen through metadata reads only."""
    name = "/" + moto_server.unique("rotating")
    put(moto_server, name, "v1-" + CANARY, "SecureString")
    put(moto_server, name + "/labelled", "blue")
    put(moto_server, name + "/labelled", "green")
    moto_server.ssm.label_parameter_version(Name=name + "/labelled", ParameterVersion=1, Labels=["live"])
    write(tmp_path, {"version": 1, "env": {"TOKEN": f"ssm://{name}", "COLOUR": f"ssm://{name}/labelled?label=live"},
                     "watch": {"interval": "1s", "debounce": "0s"}})
    env = cli_env(moto_server, AWS_ENDPOINT_URL=aws_forwarder.url)
    check = run_launcher(["check"], env=env, cwd=tmp_path)
    assert check.returncode == 0 and " 1 " in check.stdout, check.stderr
    out, audit, port = tmp_path / "events.jsonl", tmp_path / "audit.jsonl", closed_port()
    proc = subprocess.Popen([LAUNCHER, "run", "--watch", "--audit", str(audit), "--metrics", f"127.0.0.1:{port}", "--", sys.executable,
                             str(HELPERS_DIR / "record_env.py"), str(out), "TOKEN", "COLOUR"],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        starts = lambda: [e["env"] for e in audit_events(out) if e["event"] == "start"]  # noqa: E731
        wait_for(starts, what="the child's first start")
        assert starts()[0] == {"TOKEN": "v1-" + CANARY, "COLOUR": "blue"}
        reads = decrypting_reads(aws_forwarder)
        # Each round: DescribeParameters for TOKEN, an undecrypted GetParameter for the label.
        wait_for(lambda: aws_forwarder.count("DescribeParameters") >= 2 and undecrypted_reads(aws_forwarder) >= 2,
                 what="version checks")
        assert decrypting_reads(aws_forwarder) == reads, "checks decrypt no value while nothing changes"
        wait_for(lambda: [e for e in audit_events(audit) if e["event"] == "check" and e["source"] == "ssm"],
                 what="check events in the audit trail")
        checks = ("launcher_secret_checks_total", (("outcome", "ok"), ("source", "ssm")))
        samples = wait_for(lambda: (found := scrape(port)).get(checks, 0) >= 2 and found, what="check counts in /metrics")
        assert samples.get(("launcher_secret_fetches_total", (("outcome", "ok"), ("source", "ssm")))) == 2
        second = put(moto_server, name, "v2-" + CANARY, "SecureString")
        wait_for(lambda: {"TOKEN": "v2-" + CANARY, "COLOUR": "blue"} in starts(), timeout=15, what="the restart with the new value")
        moto_server.ssm.label_parameter_version(Name=name + "/labelled", ParameterVersion=2, Labels=["live"])
        wait_for(lambda: {"TOKEN": "v2-" + CANARY, "COLOUR": "green"} in starts(), timeout=15, what="the restart on the moved label")
        assert f" {second} " in run_launcher(["check"], env=env, cwd=tmp_path).stdout
        kinds = [e["event"] for e in audit_events(audit)]
        assert kinds.count("restart") >= 2 and "rotation" in kinds
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert CANARY not in stderr


def decrypting_reads(forwarder: Forwarder) -> int:
    return sum(1 for body in list(forwarder.bodies) if body and body.get("WithDecryption") is True)


def undecrypted_reads(forwarder: Forwarder) -> int:
    return sum(1 for body in list(forwarder.bodies) if body and body.get("WithDecryption") is False)


def test_failover_between_two_ssm_sources(moto_server: MotoServer, tmp_path: Path) -> None:
    name = "/" + moto_server.unique("app") + "/db"
    put(moto_server, name, CANARY, "SecureString")
    write(tmp_path, {
        "version": 1,
        "sources": {"prod": {"type": "ssm", "endpoint_url": f"http://127.0.0.1:{closed_port()}", "fallback": "dr"},
                    "dr": {"type": "ssm", "endpoint_url": moto_server.url}},
        "env": {"DB": f"prod://{name}"},
        "retry": FAST_RETRY,
    })
    audit = tmp_path / "audit.jsonl"
    result = run_launcher(["env", "--format", "json", "--audit", str(audit)], env=cli_env(moto_server), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"DB": CANARY}
    assert "dr" in result.stderr and "connection refused" in result.stderr  # the failover's one warning line
    assert [e["source"] for e in audit_events(audit) if e["event"] == "failover"] == ["dr"]


def test_python_api(moto_server: MotoServer, aws_env: dict[str, str], tmp_path: Path) -> None:
    name = "/" + moto_server.unique("app") + "/db"
    put(moto_server, name, json.dumps({"password": CANARY}), "SecureString")
    assert launcher.get(f"ssm://{name}#password") == CANARY
    path = write(tmp_path, {"version": 1, "env": {"DB": f"ssm://{name}#password"}})
    with launcher.Client(str(path)) as client:
        secrets = client.load()
        assert (secrets["DB"], secrets.version("DB")) == (CANARY, "1")
        assert client.has_rotated(f"ssm://{name}#password") is False
        put(moto_server, name, json.dumps({"password": "rotated"}), "SecureString")
        assert client.has_rotated(f"ssm://{name}#password") is True
        assert client.get(f"ssm://{name}#password") == "rotated"
    with pytest.raises(launcher.NotFoundError):
        launcher.get(f"ssm://{name}-nope")


def test_vault_ssm_and_file_in_one_run(openbao: OpenBao, moto_server: MotoServer, tmp_path: Path) -> None:
    base = openbao.unique("mixed")
    write_kv2(openbao, f"{base}/db", {"user": "app"})
    name = "/" + moto_server.unique("mixed") + "/db-password"
    put(moto_server, name, "pw-" + CANARY, "SecureString")
    (tmp_path / "secrets.yaml").write_text(yaml.safe_dump({"feature": {"flag": "on"}}))
    write(tmp_path, {
        "version": 1,
        "sources": {"prod": {"type": "vault", "address": openbao.addr}, "dev": {"type": "file", "path": "./secrets.yaml"}},
        "env": {"DB_USER": f"prod://secret/{base}/db#user", "FLAG": "dev://feature#flag",
                "DATABASE_URL": f"postgres://{{{{ prod://secret/{base}/db#user }}}}:{{{{ ssm://{name} }}}}@db/app"},
    })
    code = "import os, json; print(json.dumps({k: os.environ[k] for k in ('DB_USER', 'FLAG', 'DATABASE_URL')}))"
    result = run_launcher(["exec", "--", sys.executable, "-c", code], env=cli_env(moto_server, VAULT_TOKEN=openbao.token),
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"DB_USER": "app", "FLAG": "on", "DATABASE_URL": f"postgres://app:pw-{CANARY}@db/app"}
    assert CANARY not in result.stderr
