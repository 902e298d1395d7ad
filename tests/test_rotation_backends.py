"""Rotation against real backends: OpenBao KV v2, the Key Vault emulator, PostgreSQL leases."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import HELPERS_DIR, Running, wait_for
from tests.keyvault_emulator import KeyVaultEmulator
from tests.openbao import OpenBao, write_kv2
from tests.postgres import Postgres
from tests.tcp_proxy import tcp_proxy


def vault_manifest(tmp: Path, env: dict[str, Any], watch: dict[str, Any], sources: dict[str, Any] | None = None) -> str:
    doc: dict[str, Any] = {"version": 1, "env": env, "watch": {"enabled": True, **watch}, "process": {"stop_timeout": "2s"}}
    if sources:
        doc["sources"] = sources
    return yaml.safe_dump(doc)


def vault_running(tmp: Path, text: str, names: list[str], env: dict[str, str], child: list[str] | None = None) -> Running:
    """``Running`` with Vault credentials in the launcher's environment."""
    return Running(tmp, text, names, env={**env, "HOME": str(tmp)}, child=child)


def test_kv2_rotation_restarts_within_interval_plus_debounce(openbao: OpenBao, tmp_path: Path) -> None:
    path = f"rot/{openbao.unique()}"
    write_kv2(openbao, path, {"password": "first-value"})
    text = vault_manifest(tmp_path, {"DB_PASSWORD": f"vault://secret/{path}#password"}, {"interval": "1s", "debounce": "200ms"})
    with vault_running(tmp_path, text, ["DB_PASSWORD"], openbao.env()) as run:
        assert run.wait_events("start", 1)[0]["env"] == {"DB_PASSWORD": "first-value"}
        write_kv2(openbao, path, {"password": "second-value"})
        # interval (+10 % jitter) + debounce + 1 s for the restart itself
        second = run.wait_events("start", 2, timeout=1.1 + 0.2 + 1.0)[1]
        assert second["env"] == {"DB_PASSWORD": "second-value"}
        assert "second-value" not in run.log() and "first-value" not in run.log()
        assert run.stop() == 0


def test_kv2_without_rotation_reads_metadata_only(openbao: OpenBao, tmp_path: Path) -> None:
    path = f"rot/{openbao.unique()}"
    write_kv2(openbao, path, {"password": "steady"})
    text = vault_manifest(tmp_path, {"A": f"vault://secret/{path}#password", "B": f"vault://secret/{path}#password"},
                          {"interval": "200ms", "debounce": "0s"})
    with vault_running(tmp_path, text, ["A", "B"], openbao.env()) as run:
        run.wait_events("start", 1)
        wait_for(lambda: openbao.reads_of(f"secret/metadata/{path}") >= 10, timeout=15, what="10 metadata checks")
        assert openbao.reads_of(f"secret/data/{path}") == 1  # the start-up read only: no value re-read
        assert len(run.events("start")) == 1
        assert run.stop() == 0


def test_backend_outage_keeps_the_child_and_a_later_rotation_is_picked_up(openbao: OpenBao, tmp_path: Path) -> None:
    path = f"rot/{openbao.unique()}"
    write_kv2(openbao, path, {"token": "t1"})
    port = int(openbao.addr.rsplit(":", 1)[1])
    with tcp_proxy("127.0.0.1", port) as proxy:
        text = vault_manifest(tmp_path, {"TOKEN": f"vault://secret/{path}#token"},
                              {"interval": "200ms", "debounce": "0s"})
        text += "retry: {attempts: 1}\n"
        with vault_running(tmp_path, text, ["TOKEN"], {**openbao.env(), "VAULT_ADDR": proxy.addr}) as run:
            first = run.wait_events("start", 1)[0]
            proxy.down()
            wait_for(lambda: proxy.refused >= 4, timeout=15, what="several checks against the dead backend")
            assert run.log().count("is failing") == 1
            assert run.proc.poll() is None and len(run.events("start")) == 1
            ok = len(run.audit("check", ref=f"vault://secret/{path}", outcome="ok"))
            proxy.back_up()
            run.wait_audit("check", ok + 1, ref=f"vault://secret/{path}", outcome="ok")
            write_kv2(openbao, path, {"token": "t2"})
            second = run.wait_events("start", 2)[1]
            assert second["env"] == {"TOKEN": "t2"} and second["pid"] != first["pid"]
            assert run.stop() == 0


def test_azure_rotation_restarts_the_child(keyvault: KeyVaultEmulator, tmp_path: Path) -> None:
    keyvault.set_secret("api-key", "key-one")
    text = vault_manifest(tmp_path, {"API_KEY": "corp://api-key"}, {"interval": "200ms", "debounce": "0s"},
                          sources={"corp": keyvault.source()})
    with vault_running(tmp_path, text, ["API_KEY"], {"AZURE_CLIENT_SECRET": keyvault.client_secret}) as run:
        assert run.wait_events("start", 1)[0]["env"] == {"API_KEY": "key-one"}
        keyvault.set_secret("api-key", "key-two")
        assert run.wait_events("start", 2)[1]["env"] == {"API_KEY": "key-two"}
        assert "key-two" not in run.log()
        assert run.stop() == 0


def test_postgres_credentials_roll_over_before_they_expire_and_are_revoked(
    openbao: OpenBao, postgres: Postgres, tmp_path: Path
) -> None:
    mount = openbao.unique("db")
    client = openbao.client
    client.sys.enable_secrets_engine("database", path=mount)
    client.write(f"{mount}/config/pg", plugin_name="postgresql-database-plugin", allowed_roles="app",
                 connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{postgres.port}/postgres?sslmode=disable",
                 username=postgres.admin, password=postgres.password)
    client.write(f"{mount}/roles/app", db_name="pg", default_ttl="4s", max_ttl="8s",
                 creation_statements=["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"])
    sources = {"bao": {"type": "vault", "revoke_on_exit": True}}
    env = {"PGUSER": f"bao://{mount}/creds/app#username", "PGPASSWORD": f"bao://{mount}/creds/app#password"}
    text = vault_manifest(tmp_path, env, {"interval": "1s", "debounce": "2s"}, sources=sources)
    out = tmp_path / "events.jsonl"  # where Running reads events from
    child = [sys.executable, str(HELPERS_DIR / "pg_client.py"), str(out), str(postgres.bindir / "psql"), str(postgres.port)]
    with vault_running(tmp_path, text, [], openbao.env(), child=child) as run:
        first = run.wait_events("start", 1)[0]
        second = run.wait_events("start", 2, timeout=15)[1]  # a new lease before the first one's 8 s max TTL
        assert second["user"] != first["user"]
        wait_for(lambda: [e for e in run.events("login") if e["pid"] == second["pid"]], what="a login with the new credentials")
        assert "renewed the lease" in run.log()
        assert run.stop() == 0
    logins = run.events("login")
    assert logins and all(e["ok"] for e in logins), json.dumps([e for e in logins if not e["ok"]])[:2000]
    assert any(e["pid"] == first["pid"] for e in logins)
    # revoke_on_exit: the current lease's database role is dropped when the launcher exits.
    wait_for(lambda: second["user"] not in postgres.roles(), timeout=10, what="the revoked role to be dropped")


def test_a_run_of_several_token_ttls_keeps_working(openbao: OpenBao, tmp_path: Path) -> None:
    path = f"rot/{openbao.unique()}"
    write_kv2(openbao, path, {"password": "before"})
    policy = openbao.unique("pol")
    openbao.policy(policy, f'path "secret/data/{path}" {{ capabilities = ["read"] }}\n'
                           f'path "secret/metadata/{path}" {{ capabilities = ["read"] }}')
    mount, role = openbao.unique("approle"), openbao.unique("role")
    client = openbao.client
    client.sys.enable_auth_method("approle", path=mount)
    # Tokens live 4 s and can be renewed up to 6 s: the launcher must renew, then log in again.
    client.adapter.post(f"/v1/auth/{mount}/role/{role}", json={"token_policies": [policy], "token_ttl": "4s", "token_max_ttl": "6s"})
    role_id = client.adapter.get(f"/v1/auth/{mount}/role/{role}/role-id")["data"]["role_id"]
    (tmp_path / "sid").write_text(client.adapter.post(f"/v1/auth/{mount}/role/{role}/secret-id")["data"]["secret_id"])
    sources = {"bao": {"type": "vault", "address": openbao.addr,
                       "auth": {"method": "approle", "role_id": role_id, "secret_id_file": "./sid", "mount": mount}}}
    text = vault_manifest(tmp_path, {"DB_PASSWORD": f"bao://secret/{path}#password"}, {"interval": "300ms", "debounce": "0s"},
                          sources=sources)
    with vault_running(tmp_path, text, ["DB_PASSWORD"], {}) as run:
        run.wait_events("start", 1)
        logins = f"auth/{mount}/login"
        wait_for(lambda: openbao.requests_to(logins) >= 3, timeout=20, what="two logins after the first (past two max TTLs)")
        # Whether a renewal or a fresh login comes first depends on the 1 s maintenance phase;
        # renewal at 2/3 of the TTL is proven with an injected clock in test_vault_auth.py.
        assert "is failing" not in run.log() and len(run.events("start")) == 1
        write_kv2(openbao, path, {"password": "after"})
        assert run.wait_events("start", 2)[1]["env"] == {"DB_PASSWORD": "after"}
        assert run.stop() == 0


def test_a_rotation_during_an_outage_is_applied_once_soon_after_recovery(openbao: OpenBao, tmp_path: Path) -> None:
    """During an outage the source is probed at most every interval; on its
    first answer every secret of it is checked at once, so 12 secrets that rotated while it
    was away restart the child once (the red team saw 4-8 restarts, and recovery noticed
    13-15 s late with a 2 s interval)."""
    import time

    paths = [f"outage/{openbao.unique()}" for _ in range(12)]
    for path in paths:
        write_kv2(openbao, path, {"v": "before"})
    env = {f"S{i}": f"vault://secret/{path}#v" for i, path in enumerate(paths)}
    port = int(openbao.addr.rsplit(":", 1)[1])
    with tcp_proxy("127.0.0.1", port) as proxy:
        text = vault_manifest(tmp_path, env, {"interval": "2s", "debounce": "0s"}) + "retry: {attempts: 1, deadline: 3s}\n"
        with vault_running(tmp_path, text, list(env), {**openbao.env(), "VAULT_ADDR": proxy.addr}) as run:
            run.wait_events("start", 1)
            proxy.down()
            run.wait_audit("check", outcome="unavailable", timeout=15)
            wait_for(lambda: proxy.refused >= 3, timeout=15, what="probes of the dead backend")
            for path in paths:
                write_kv2(openbao, path, {"v": "after"})  # all rotate while the launcher cannot see them
            back = time.monotonic()
            proxy.back_up()
            second = run.wait_events("start", 2, timeout=20)[1]
            noticed = time.monotonic() - back
            assert second["env"] == {name: "after" for name in env}
            run.wait_more_checks(env["S0"].split("#")[0], 3)  # three more rounds: nothing else happens
            assert len(run.events("start")) == 2, "one action for the whole rotation"
            assert noticed < 2 * 2.0 + 5.0, f"the recovery was acted on {noticed:.1f}s after it (interval 2s)"
            assert run.stop() == 0
