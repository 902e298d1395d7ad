"""One manifest, three backends in one run: OpenBao, Azure Key Vault (emulated) and a file.

The fetches of different backends run concurrently in one resolution; a
template can mix them; all-or-nothing and the exit-code priority hold across
backends (78 > 77 > 69 > 66).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import launcher_env, run_launcher
from tests.keyvault_emulator import KeyVaultEmulator
from tests.openbao import OpenBao, write_kv2

CANARY = "mixed-CANARY-44b0"
FAST_RETRY = {"attempts": 3, "initial_delay": "50ms", "max_delay": "100ms", "deadline": "2s"}


def mixed_manifest(tmp_path: Path, bao: OpenBao, kv: KeyVaultEmulator, base: str) -> str:
    (tmp_path / "secrets.yaml").write_text(yaml.safe_dump({"feature": {"flag": "on"}}))
    doc: dict[str, Any] = {
        "version": 1,
        "sources": {
            "prod": {"type": "vault", "address": bao.addr},
            "corp": kv.source(),
            "dev": {"type": "file", "path": "./secrets.yaml"},
        },
        "env": {
            "DB_USER": f"prod://secret/{base}/db#user",
            "API_KEY": "corp://api-key",
            "DATABASE_URL": f"postgres://{{{{ prod://secret/{base}/db#user }}}}:{{{{ corp://db-password }}}}@db/app",
            "FLAG": "dev://feature#flag",
        },
        "retry": FAST_RETRY,
    }
    path = tmp_path / "launcher.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def run_env(bao: OpenBao, kv: KeyVaultEmulator, **overrides: str) -> dict[str, str]:
    return launcher_env({"VAULT_TOKEN": bao.token, "AZURE_CLIENT_SECRET": kv.client_secret, **overrides})


def test_vault_azure_and_file_in_one_run(openbao: OpenBao, keyvault: KeyVaultEmulator, tmp_path: Path) -> None:
    base = openbao.unique("mixed")
    write_kv2(openbao, f"{base}/db", {"user": "app", "password": "unused"})
    keyvault.set_secret("api-key", "api-" + CANARY)
    keyvault.set_secret("db-password", "pw-" + CANARY)
    manifest = mixed_manifest(tmp_path, openbao, keyvault, base)
    code = "import os, json; print(json.dumps({k: os.environ[k] for k in ('DB_USER', 'API_KEY', 'DATABASE_URL', 'FLAG')}))"
    result = run_launcher(["exec", "-m", manifest, "--", sys.executable, "-c", code], env=run_env(openbao, keyvault))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "DB_USER": "app",
        "API_KEY": "api-" + CANARY,
        "DATABASE_URL": f"postgres://app:pw-{CANARY}@db/app",
        "FLAG": "on",
    }
    assert CANARY not in result.stderr and keyvault.client_secret not in result.stderr
    assert openbao.token not in result.stderr
    # secret/<base>/db was read once although two bindings use it.
    assert openbao.reads_of(f"secret/data/{base}/db") == 1


def test_check_lists_every_backend_without_values(openbao: OpenBao, keyvault: KeyVaultEmulator, tmp_path: Path) -> None:
    base = openbao.unique("mixed")
    write_kv2(openbao, f"{base}/db", {"user": "app"})
    version = keyvault.set_secret("api-key", "api-" + CANARY)
    keyvault.set_secret("db-password", "pw-" + CANARY)
    result = run_launcher(["check", "-m", mixed_manifest(tmp_path, openbao, keyvault, base)], env=run_env(openbao, keyvault))
    assert result.returncode == 0, result.stderr
    assert version in result.stdout
    for ref in (f"prod://secret/{base}/db#user", "corp://api-key", "dev://feature#flag"):
        assert ref in result.stdout
    assert CANARY not in result.stdout + result.stderr


def test_denied_vault_beats_unreachable_azure(openbao: OpenBao, keyvault: KeyVaultEmulator, tmp_path: Path) -> None:
    base = openbao.unique("mixed")
    write_kv2(openbao, f"{base}/db", {"user": "app"})
    manifest = mixed_manifest(tmp_path, openbao, keyvault, base)
    keyvault.stop()
    marker = tmp_path / "child-ran"
    code = f"open({str(marker)!r}, 'w').close()"
    result = run_launcher(["exec", "-m", manifest, "--", sys.executable, "-c", code],
                          env=run_env(openbao, keyvault, VAULT_TOKEN="not-a-token"))
    assert result.returncode == 77, result.stderr  # 77 (Vault) outranks 69 (Azure)
    assert not marker.exists()  # all or nothing: no child
    # `check` reports every failure, with the same exit code.
    result = run_launcher(["check", "-m", manifest], env=run_env(openbao, keyvault, VAULT_TOKEN="not-a-token"))
    assert result.returncode == 77
    assert "permission denied" in result.stderr and "cannot reach" in result.stderr
