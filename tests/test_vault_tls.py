"""TLS to Vault: a private ``bao server -dev-tls`` and the launcher CLI.

The right CA (``tls.ca_cert`` or VAULT_CACERT) works; a wrong CA fails with a
clear message and exit 77 (a certificate that does not verify is an
authentication failure of the server, never retried; see vault_auth.py).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.helpers import launcher_env, run_launcher
from tests.openbao import OpenBao, running_openbao, write_kv2

pytestmark = pytest.mark.vault


@pytest.fixture(scope="module")
def tls_bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    with running_openbao(tmp_path_factory.mktemp("openbao-tls"), tls=True, audit=False) as server:
        yield server


@pytest.fixture(scope="module")
def value(tls_bao: OpenBao) -> str:
    secret = f"canary-tls-{secrets.token_hex(6)}"
    write_kv2(tls_bao, "app/db", {"password": secret})
    return secret


def run(tls_bao: OpenBao, tmp_path: Path, tls_yaml: str, **env: str) -> tuple[int, str, str]:
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text(
        f"version: 1\nsources:\n  bao:\n    type: vault\n    address: {tls_bao.addr}\n{tls_yaml}"
        "env:\n  X: bao://secret/app/db#password\n"
        "retry: {attempts: 2, initial_delay: 10ms, deadline: 5s}\n"
    )
    proc = run_launcher(["env", "-m", str(manifest), "--format", "json"],
                        env=launcher_env({"VAULT_TOKEN": tls_bao.token, "HOME": str(tmp_path), **env}))
    return proc.returncode, proc.stdout, proc.stderr


def test_ca_cert_from_the_manifest(tls_bao: OpenBao, value: str, tmp_path: Path) -> None:
    code, out, err = run(tls_bao, tmp_path, f"    tls: {{ca_cert: {tls_bao.ca_cert}}}\n")
    assert code == 0, err
    assert json.loads(out) == {"X": value}


def test_ca_cert_from_vault_cacert(tls_bao: OpenBao, value: str, tmp_path: Path) -> None:
    assert tls_bao.ca_cert is not None
    code, out, err = run(tls_bao, tmp_path, "", VAULT_CACERT=tls_bao.ca_cert)
    assert code == 0, err
    assert json.loads(out) == {"X": value}


def test_wrong_ca_is_77_with_a_clear_message(tls_bao: OpenBao, value: str, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    code, out, err = run(tls_bao, tmp_path, f"    tls: {{ca_cert: {other}}}\n")
    assert code == 77, err
    assert "TLS certificate is not trusted" in err and "gave up" not in err  # not retried
    assert value not in out + err


def test_system_trust_store_does_not_know_the_dev_ca(tls_bao: OpenBao, value: str, tmp_path: Path) -> None:
    code, _, err = run(tls_bao, tmp_path, "")
    assert code == 77 and "not trusted" in err


def test_skip_verify(tls_bao: OpenBao, value: str, tmp_path: Path) -> None:
    code, out, err = run(tls_bao, tmp_path, "    tls: {skip_verify: true}\n")
    assert code == 0, err
    assert json.loads(out) == {"X": value}
    assert "TLS verification is off" in err and "InsecureRequestWarning" not in err
