"""The vault source through the real CLI against a real OpenBao dev server.

Covers KV v1 and v2, version pins, deleted / destroyed versions, missing paths
and keys, single-field secrets, ``env_from``, exit codes for bad tokens,
denying policies and an unreachable server, ``check`` output and dedupe
(proved with the audit log). Canary values must never show up in stderr or in
``check`` output.
"""

from __future__ import annotations

import json
import secrets
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import launcher_env, run_launcher
from tests.openbao import OpenBao, write_kv2

pytestmark = pytest.mark.vault

PRINT_ENV = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]


def canary(tag: str) -> str:
    return f"canary-{tag}-{secrets.token_hex(6)}"


@dataclass
class Data:
    """What the ``data`` fixture wrote: paths and the canary values behind them."""

    base: str  # secret/<base>/... on the KV v2 mount "secret"
    kv1: str  # the KV v1 mount
    values: dict[str, str]

    def all_canaries(self) -> list[str]:
        return list(self.values.values())


@pytest.fixture(scope="module")
def data(openbao: OpenBao) -> Data:
    base, kv1 = openbao.unique("app"), openbao.unique("kv1")
    values = {f"v{n}": canary(f"v{n}") for n in range(1, 5)}
    values |= {"single": canary("single"), "kv1": canary("kv1"), "host": canary("host")}
    for n in range(1, 5):  # four versions; 1 deleted, 2 destroyed, 4 is the latest
        write_kv2(openbao, f"{base}/db", {"password": values[f"v{n}"], "user": "app"})
    kv = openbao.client.secrets.kv.v2
    kv.delete_secret_versions(path=f"{base}/db", versions=[1], mount_point="secret")
    kv.destroy_secret_versions(path=f"{base}/db", versions=[2], mount_point="secret")
    write_kv2(openbao, f"{base}/single", {"token": values["single"]})
    write_kv2(openbao, f"{base}/config", {"host": values["host"], "port": 5432, "db.name": "app", "2fa": "on"})
    openbao.client.sys.enable_secrets_engine("kv", path=kv1, options={"version": "1"})
    openbao.client.secrets.kv.v1.create_or_update_secret(path="app/db", secret={"password": values["kv1"], "user": "app"}, mount_point=kv1)
    return Data(base, kv1, values)


def env_for(openbao: OpenBao, tmp_path: Path, **extra: str) -> dict[str, str]:
    # HOME is private so a developer's ~/.vault-token can never leak into a test.
    return launcher_env({**openbao.env(), "HOME": str(tmp_path), **extra})


def assert_no_canary(data: Data, *texts: str) -> None:
    for text in texts:
        for value in data.all_canaries():
            assert value not in text


def test_done_when_inline_reference_exec(openbao: OpenBao, data: Data, tmp_path: Path) -> None:
    """DB_PASSWORD=vault://secret/app/db#password launcher exec -- app, with only VAULT_ADDR/VAULT_TOKEN."""
    env = env_for(openbao, tmp_path, DB_PASSWORD=f"vault://secret/{data.base}/db#password")
    proc = run_launcher(["exec", "--", *PRINT_ENV], env=env)
    assert proc.returncode == 0, proc.stderr
    child = json.loads(proc.stdout)
    assert child["DB_PASSWORD"] == data.values["v4"]
    assert "VAULT_TOKEN" not in child  # scrubbed by default
    assert_no_canary(data, proc.stderr)


# (reference relative to the fixture's paths, expected value name or exit code, text in stderr)
CASES = [
    ("secret/{base}/db#password", "v4", None),
    ("secret/{base}/db?version=3#password", "v3", None),
    ("secret/{base}/db#password?version=4", "v4", None),
    ("secret/{base}/single", "single", None),  # one field: #key may be omitted
    ("{kv1}/app/db#password", "kv1", None),
    ("secret/{base}/db?version=1#password", 66, "version 1 was deleted"),
    ("secret/{base}/db?version=2#password", 66, "version 2 was destroyed"),
    ("secret/{base}/db?version=99#password", 66, "not found"),
    ("secret/{base}/nope#password", 66, "not found"),
    ("secret/{base}/db#nokey", 66, "no key 'nokey'"),
    ("secret/{base}/db", 78, "several fields"),
    ("secret/{base}/db?version=abc#password", 78, "positive whole number"),
    ("{kv1}/app/db?version=1#password", 78, "KV v2"),
    ("nosuchmount/x#y", 66, "not found"),
]


@pytest.mark.parametrize(("ref", "expected", "message"), CASES, ids=[c[0] for c in CASES])
def test_reference_table(openbao: OpenBao, data: Data, tmp_path: Path, ref: str, expected: str | int, message: str | None) -> None:
    full = "vault://" + ref.format(base=data.base, kv1=data.kv1)
    proc = run_launcher(["env", "--format", "json"], env=env_for(openbao, tmp_path, SECRET=full))
    if isinstance(expected, str):
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["SECRET"] == data.values[expected]
    else:
        assert proc.returncode == expected, proc.stderr
        assert message is not None and message in proc.stderr
        assert "SECRET" in proc.stderr  # the message names the variable
    assert_no_canary(data, proc.stderr)


def test_env_from_whole_secret(openbao: OpenBao, data: Data, tmp_path: Path) -> None:
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text(f"version: 1\nenv_from:\n  - ref: vault://secret/{data.base}/config\n    prefix: APP_\n")
    proc = run_launcher(["exec", "-m", str(manifest), "--", *PRINT_ENV], env=env_for(openbao, tmp_path))
    assert proc.returncode == 0, proc.stderr
    child = json.loads(proc.stdout)
    assert (child["APP_HOST"], child["APP_PORT"], child["APP_DB_NAME"], child["APP_2FA"]) == (data.values["host"], "5432", "app", "on")


def test_check_shows_versions_and_marks_missing(openbao: OpenBao, data: Data, tmp_path: Path) -> None:
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text(
        "version: 1\nenv:\n"
        f"  LATEST: vault://secret/{data.base}/db#password\n"
        f"  PINNED: vault://secret/{data.base}/db?version=3#password\n"
        f"  OLD: vault://{data.kv1}/app/db#password\n"
        f"  GONE: vault://secret/{data.base}/missing#password\n"
    )
    proc = run_launcher(["check", "-m", str(manifest)], env=env_for(openbao, tmp_path))
    assert proc.returncode == 66, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[1:]}
    assert rows["LATEST"][2:] == ["4", "ok"]
    assert rows["PINNED"][2:] == ["3", "ok"]
    assert rows["OLD"][2:] == ["1", "ok"]  # KV v1 keeps no versions: the first one this process saw
    assert rows["GONE"][2:] == ["-", "missing"]
    assert_no_canary(data, proc.stdout, proc.stderr)


def test_wrong_token_is_77(openbao: OpenBao, data: Data, tmp_path: Path) -> None:
    env = env_for(openbao, tmp_path, VAULT_TOKEN="not-a-token", X=f"vault://secret/{data.base}/db#password")
    proc = run_launcher(["env"], env=env)
    assert proc.returncode == 77, proc.stderr
    assert "permission denied" in proc.stderr and "not-a-token" not in proc.stderr


def test_policy_denying_the_path_is_77(openbao: OpenBao, data: Data, tmp_path: Path) -> None:
    openbao.policy("only-other", 'path "secret/data/other/*" { capabilities = ["read"] }')
    token = openbao.child_token(["only-other"])
    env = env_for(openbao, tmp_path, VAULT_TOKEN=token, X=f"vault://secret/{data.base}/db#password")
    proc = run_launcher(["check"], env=env)
    assert proc.returncode == 77, proc.stderr
    assert "denied" in proc.stdout and token not in proc.stdout + proc.stderr
    assert_no_canary(data, proc.stdout, proc.stderr)


def test_unreachable_server_is_69_within_the_deadline(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text(
        "version: 1\nenv:\n  X: vault://secret/app/db#password\n"
        "retry: {attempts: 3, initial_delay: 50ms, max_delay: 100ms, deadline: 5s}\n"
    )
    env = launcher_env({"VAULT_ADDR": f"http://127.0.0.1:{port}", "VAULT_TOKEN": "t", "HOME": str(tmp_path)})
    started = time.monotonic()
    proc = run_launcher(["exec", "-m", str(manifest), "--", "true"], env=env)
    assert proc.returncode == 69, proc.stderr
    assert time.monotonic() - started < 10
    assert "connection refused" in proc.stderr and "3 attempts" in proc.stderr


def test_no_address_is_78_and_no_token_is_77(tmp_path: Path) -> None:
    ref = {"X": "vault://secret/app/db#password"}
    proc = run_launcher(["env"], env=launcher_env({**ref, "HOME": str(tmp_path), "VAULT_TOKEN": "t"}))
    assert proc.returncode == 78 and "VAULT_ADDR" in proc.stderr
    proc = run_launcher(["env"], env=launcher_env({**ref, "HOME": str(tmp_path), "VAULT_ADDR": "http://127.0.0.1:9"}))
    assert proc.returncode == 77 and "no token" in proc.stderr


def test_token_from_home_vault_token_file(openbao: OpenBao, data: Data, tmp_path: Path) -> None:
    (tmp_path / ".vault-token").write_text(openbao.token + "\n")
    env = launcher_env({"VAULT_ADDR": openbao.addr, "HOME": str(tmp_path), "X": f"vault://secret/{data.base}/single"})
    proc = run_launcher(["env", "--format", "json"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["X"] == data.values["single"]


def test_dedupe_twenty_bindings_two_paths_two_reads(openbao: OpenBao, tmp_path: Path) -> None:
    base = openbao.unique("dedupe")
    for name in ("a", "b"):
        write_kv2(openbao, f"{base}/{name}", {f"k{i}": f"value-{name}-{i}" for i in range(10)})
    lines = [f"  V_{name.upper()}{i}: vault://secret/{base}/{name}#k{i}" for name in ("a", "b") for i in range(10)]
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text("version: 1\nenv:\n" + "\n".join(lines) + "\n")
    proc = run_launcher(["env", "-m", str(manifest), "--format", "json"], env=env_for(openbao, tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out) == 20 and out["V_B7"] == "value-b-7"
    assert openbao.reads_of(f"secret/data/{base}/a") == 1
    assert openbao.reads_of(f"secret/data/{base}/b") == 1
    assert "pool is full" not in proc.stderr


def test_namespace_from_variable_and_manifest(openbao: OpenBao, tmp_path: Path) -> None:
    ns, value = openbao.unique("ns"), canary("ns")
    openbao.client.adapter.post(f"/v1/sys/namespaces/{ns}")
    in_ns = {"X-Vault-Namespace": ns}
    openbao.client.adapter.post("/v1/sys/mounts/secret", json={"type": "kv", "options": {"version": "2"}}, headers=in_ns)
    openbao.client.adapter.post("/v1/secret/data/app/db", json={"data": {"password": value}}, headers=in_ns)
    env = env_for(openbao, tmp_path, VAULT_NAMESPACE=ns, X="vault://secret/app/db#password")
    proc = run_launcher(["env", "--format", "json"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"X": value}
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text(f"version: 1\nsources:\n  team:\n    type: vault\n    namespace: {ns}\nenv:\n  X: team://secret/app/db#password\n")
    proc = run_launcher(["env", "-m", str(manifest), "--format", "json"], env=env_for(openbao, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"X": value}


def test_many_paths_at_once_share_one_pool_without_warnings(openbao: OpenBao, tmp_path: Path) -> None:
    base = openbao.unique("pool")
    for i in range(40):
        write_kv2(openbao, f"{base}/s{i}", {"v": f"value-{i}"})
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text("version: 1\nenv:\n" + "".join(f"  V{i}: vault://secret/{base}/s{i}#v\n" for i in range(40)))
    proc = run_launcher(["--log-level", "debug", "env", "-m", str(manifest), "--format", "json"], env=env_for(openbao, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["V39"] == "value-39"
    assert "pool is full" not in proc.stderr
    assert openbao.requests_to(f"sys/internal/ui/mounts/secret/{base}/s0") + sum(
        openbao.requests_to(f"sys/internal/ui/mounts/secret/{base}/s{i}") for i in range(1, 40)) == 1  # one detection per mount


def test_path_with_escaped_hash_question_mark_and_space(openbao: OpenBao, tmp_path: Path) -> None:
    base, value = openbao.unique("odd"), canary("odd")
    write_kv2(openbao, f"{base}/a#b?c d", {"k": value})
    env = env_for(openbao, tmp_path, X=f"vault://secret/{base}/a%23b%3Fc d#k")
    proc = run_launcher(["env", "--format", "json"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"X": value}
