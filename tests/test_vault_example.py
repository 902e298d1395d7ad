"""examples/vault/demo.sh runs end to end: dev server, secrets, the launcher three ways."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.openbao import demo_env

pytestmark = pytest.mark.vault
DEMO = Path(__file__).parent.parent / "examples" / "vault" / "demo.sh"


def test_demo_script(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    proc = subprocess.run(["bash", str(DEMO)], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "VAULT_TOKEN passed to the app: False" in proc.stdout
    assert "LEGACY_TOKEN  le**" in proc.stdout
    check = proc.stdout.split("== 2.")[1].split("== 3.")[0]
    assert "s3cr3t" not in check and "api-key-v" not in check and "legacy-token" not in check
    assert [line.split()[-1] for line in check.splitlines()[2:]] == ["ok"] * 6
