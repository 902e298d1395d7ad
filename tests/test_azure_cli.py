"""The real ``launcher`` CLI with an Azure source, against the HTTPS Key Vault emulator.

Every run plants canaries (secret values and the client secret) and asserts
they never reach stderr, nor ``check``'s output.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import launcher_env, run_launcher
from tests.keyvault_emulator import KeyVaultEmulator

CANARY = "value-CANARY-3c9e"
DB_JSON = json.dumps({"user": "app", "password": "pw-" + CANARY})
FAST_RETRY = {"attempts": 4, "initial_delay": "50ms", "max_delay": "100ms", "deadline": "3s"}
ROOT = Path(__file__).resolve().parent.parent


def write_manifest(tmp_path: Path, kv: KeyVaultEmulator, env: dict[str, Any], retry: dict[str, Any] | None = None,
                   **source: Any) -> str:
    doc = {"version": 1, "sources": {"corp": kv.source(**source)}, "env": env, "retry": retry or FAST_RETRY}
    path = tmp_path / "launcher.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def secret_env(kv: KeyVaultEmulator, **extra: str) -> dict[str, str]:
    return launcher_env({"AZURE_CLIENT_SECRET": kv.client_secret, **extra})


def assert_no_canary(result: subprocess.CompletedProcess[str], kv: KeyVaultEmulator, stdout: bool = False) -> None:
    streams = [result.stderr, result.stdout] if stdout else [result.stderr]
    for text in streams:
        assert CANARY not in text
        assert kv.client_secret not in text
        assert kv.federated_token not in text
        assert "kv-token-" not in text  # the emulator's access tokens


def test_latest_pinned_and_json_key(keyvault: KeyVaultEmulator, tmp_path: Path) -> None:
    v1 = keyvault.set_secret("api-key", "old-" + CANARY)
    keyvault.set_secret("api-key", "new-" + CANARY)
    keyvault.set_secret("db", DB_JSON)
    env = {"API_KEY": "corp://api-key", "PINNED": f"corp://api-key?version={v1}", "DB_USER": "corp://db#user",
           "DB_PASSWORD": "corp://db#password"}
    result = run_launcher(["env", "--format", "json", "-m", write_manifest(tmp_path, keyvault, env)], env=secret_env(keyvault))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"API_KEY": "new-" + CANARY, "PINNED": "old-" + CANARY, "DB_USER": "app",
                                         "DB_PASSWORD": "pw-" + CANARY}
    assert_no_canary(result, keyvault)
    # db is read once for both keys; the three concurrent first reads share one token.
    assert sum(1 for r in keyvault.requests if r.path.startswith("/secrets/db") and r.authorized) == 1
    assert keyvault.count("token") == 1


def test_exec_gives_the_child_values_but_not_our_credential(keyvault: KeyVaultEmulator, tmp_path: Path) -> None:
    keyvault.set_secret("api-key", CANARY)
    manifest = write_manifest(tmp_path, keyvault, {"API_KEY": "corp://api-key"})
    code = "import os, json; print(json.dumps([os.environ['API_KEY'], 'AZURE_CLIENT_SECRET' in os.environ]))"
    result = run_launcher(["exec", "-m", manifest, "--", sys.executable, "-c", code], env=secret_env(keyvault))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [CANARY, False]
    assert_no_canary(result, keyvault)


def test_check_shows_versions_never_values(keyvault: KeyVaultEmulator, tmp_path: Path) -> None:
    version = keyvault.set_secret("api-key", CANARY)
    keyvault.set_secret("db", DB_JSON)
    env = {"API_KEY": "corp://api-key", "DB_PASSWORD": "corp://db#password", "GONE": {"ref": "corp://gone", "default": ""}}
    result = run_launcher(["check", "-m", write_manifest(tmp_path, keyvault, env)], env=secret_env(keyvault))
    assert result.returncode == 0, result.stderr
    assert version in result.stdout
    assert "default" in result.stdout
    assert_no_canary(result, keyvault, stdout=True)


def _disable_latest(kv: KeyVaultEmulator) -> None:
    kv.set_enabled("api-key", kv.set_secret("api-key", CANARY + "-new"), enabled=False)


WRONG_SECRET = "wrong-secret-CANARY-x"
EXIT_CASES = [
    # id, arrange, reference, client secret (None: the right one), exit code, words in stderr
    ("missing-secret", None, "corp://nope", None, 66, "secret not found"),
    ("missing-json-key", None, "corp://db#nokey", None, 66, "no key 'nokey'"),
    ("not-json", None, "corp://api-key#field", None, 66, "JSON"),
    ("disabled-version", _disable_latest, "corp://api-key", None, 66, "disabled"),
    ("forbidden", lambda kv: kv.fail_next(10, 403, inner="AccessDenied"), "corp://api-key", None, 77, "permission denied"),
    ("wrong-client-secret", None, "corp://api-key", WRONG_SECRET, 77, "AADSTS7000215"),
    ("bad-name", None, "corp://not_a_name", None, 78, "not a Key Vault secret name"),
]


@pytest.mark.parametrize(("arrange", "ref", "client_secret", "code", "words"), [c[1:] for c in EXIT_CASES],
                         ids=[c[0] for c in EXIT_CASES])
def test_exit_codes(keyvault: KeyVaultEmulator, tmp_path: Path, arrange: Any, ref: str, client_secret: str | None, code: int,
                    words: str) -> None:
    keyvault.set_secret("api-key", CANARY)
    keyvault.set_secret("db", DB_JSON)
    if arrange:
        arrange(keyvault)
    env = secret_env(keyvault, **({"AZURE_CLIENT_SECRET": client_secret} if client_secret else {}))
    result = run_launcher(["env", "-m", write_manifest(tmp_path, keyvault, {"X": ref})], env=env)
    assert result.returncode == code, result.stderr
    assert words in result.stderr
    assert result.stdout == ""
    assert_no_canary(result, keyvault)
    assert WRONG_SECRET not in result.stderr


def test_throttled_twice_then_success(keyvault: KeyVaultEmulator, tmp_path: Path) -> None:
    keyvault.set_secret("api-key", CANARY)
    keyvault.fail_next(2, 429)
    manifest = write_manifest(tmp_path, keyvault, {"API_KEY": "corp://api-key"})
    result = run_launcher(["env", "--format", "json", "-m", manifest], env=secret_env(keyvault))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"API_KEY": CANARY}
    # Two 429s (each sent once: the SDK does not retry), then the challenge, then the read.
    assert [r.status for r in keyvault.requests if r.scope == "vault"] == [429, 429, 401, 200]


def test_throttled_until_attempts_run_out(keyvault: KeyVaultEmulator, tmp_path: Path) -> None:
    keyvault.set_secret("api-key", CANARY)
    keyvault.fail_next(100, 429)
    manifest = write_manifest(tmp_path, keyvault, {"API_KEY": "corp://api-key"})
    result = run_launcher(["env", "-m", manifest], env=secret_env(keyvault))
    assert result.returncode == 69, result.stderr
    assert "429" in result.stderr and "gave up after 4 attempts" in result.stderr
    assert keyvault.count("vault") == FAST_RETRY["attempts"]


def test_emulator_down_is_69_within_the_deadline(keyvault: KeyVaultEmulator, tmp_path: Path) -> None:
    retry = {"attempts": 50, "initial_delay": "50ms", "max_delay": "200ms", "deadline": "1s"}
    manifest = write_manifest(tmp_path, keyvault, {"API_KEY": "corp://api-key"}, retry=retry)
    keyvault.stop()
    started = time.monotonic()
    result = run_launcher(["env", "-m", manifest], env=secret_env(keyvault), timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 69, result.stderr
    assert "cannot reach" in result.stderr and "gave up" in result.stderr
    assert elapsed < 1 + 4  # the deadline, plus interpreter and SDK start-up on a slow machine


def test_token_endpoint_outage_is_retried(keyvault: KeyVaultEmulator, tmp_path: Path) -> None:
    keyvault.set_secret("api-key", CANARY)
    keyvault.fail_next(1, 503, scope="token", retry_after="1")
    # MSAL replays a 5xx from the token endpoint until its Retry-After (5 s without
    # one) has passed, so the attempt that succeeds is the first one after 1 s.
    retry = {"attempts": 8, "initial_delay": "300ms", "max_delay": "600ms", "jitter": "none", "deadline": "5s"}
    manifest = write_manifest(tmp_path, keyvault, {"API_KEY": "corp://api-key"}, retry=retry)
    result = run_launcher(["env", "--format", "json", "-m", manifest], env=secret_env(keyvault))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"API_KEY": CANARY}
    assert keyvault.count("token") == 2


@pytest.mark.parametrize("how", ["client_secret_file", "default", "workload_identity"])
def test_credential_kinds(keyvault: KeyVaultEmulator, tmp_path: Path, how: str) -> None:
    keyvault.set_secret("api-key", CANARY)
    source: dict[str, Any]
    if how == "client_secret_file":
        (tmp_path / "client-secret").write_text(keyvault.client_secret + "\n")
        source, env = {"client_secret_file": "./client-secret"}, launcher_env()
    elif how == "default":
        # Pinned to EnvironmentCredential; the authority comes from AZURE_AUTHORITY_HOST.
        source = {"credential": "default", "tenant_id": None, "client_id": None, "authority": None}
        env = launcher_env(keyvault.env())
    else:
        (tmp_path / "token").write_text(keyvault.federated_token)
        source = {"credential": "workload_identity", "tenant_id": None, "client_id": None}
        env = launcher_env({"AZURE_TENANT_ID": keyvault.tenant_id, "AZURE_CLIENT_ID": keyvault.client_id,
                            "AZURE_FEDERATED_TOKEN_FILE": str(tmp_path / "token")})
    manifest = write_manifest(tmp_path, keyvault, {"API_KEY": "corp://api-key"}, **source)
    result = run_launcher(["env", "--format", "json", "-m", manifest], env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"API_KEY": CANARY}
    assert_no_canary(result, keyvault)


def _imported_modules(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, set[str]]:
    """Run ``python -X importtime -m launcher ARGS``; return its exit code and imported module names."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "launcher", *args], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=60, check=False)
    modules = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    return result.returncode, modules


def test_azure_is_imported_only_when_used(keyvault: KeyVaultEmulator, tmp_path: Path) -> None:
    (tmp_path / "secrets.yaml").write_text("app:\n  token: abc\n")
    file_only = {"version": 1, "sources": {"dev": {"type": "file", "path": "./secrets.yaml"}}, "env": {"TOKEN": "dev://app#token"}}
    (tmp_path / "file.yaml").write_text(yaml.safe_dump(file_only))
    code, modules = _imported_modules(["env", "-m", "file.yaml"], launcher_env(), tmp_path)
    assert code == 0
    assert "launcher.resolve.resolver" in modules  # the probe sees our imports at all
    assert not {m for m in modules if m.split(".")[0] in ("azure", "msal")}

    keyvault.set_secret("api-key", CANARY)
    manifest = write_manifest(tmp_path, keyvault, {"API_KEY": "corp://api-key"})
    code, modules = _imported_modules(["env", "-m", manifest], secret_env(keyvault), tmp_path)
    assert code == 0
    assert "azure.keyvault.secrets" in modules


def test_vault_only_run_does_not_import_azure(tmp_path: Path) -> None:
    manifest = {"version": 1, "env": {"TOKEN": "vault://secret/app#token"},
                "retry": {"attempts": 1, "initial_delay": "10ms", "deadline": "1s"}}
    (tmp_path / "vault.yaml").write_text(yaml.safe_dump(manifest))
    # Nothing listens there: the run fails, but only after the vault backend was loaded.
    env = launcher_env({"VAULT_ADDR": "http://127.0.0.1:9", "VAULT_TOKEN": "t"})
    code, modules = _imported_modules(["env", "-m", "vault.yaml"], env, tmp_path)
    assert code == 69
    assert "launcher.sources.vault" in modules
    assert not {m for m in modules if m.split(".")[0] in ("azure", "msal")}


def test_example_manifest_is_valid() -> None:
    result = run_launcher(["check", "--offline", "-m", str(ROOT / "examples" / "azure" / "launcher.yaml")])
    assert result.returncode == 0, result.stderr
    assert "valid (7 bindings, 1 source)" in result.stdout
