"""examples/vault/mtls/demo.sh, shortened: certificates of 9 s renewed under a client looping for 20 s.

The full run (3 minutes, 60 s certificates) is the same script with its defaults.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.openbao import demo_env

pytestmark = [pytest.mark.vault, pytest.mark.slow]
DEMO = Path(__file__).parent.parent / "examples" / "vault" / "mtls" / "demo.sh"


def test_the_server_reloads_each_renewal_and_no_handshake_fails(tmp_path: Path) -> None:
    env = demo_env(tmp_path, DURATION="20", MTLS_TTL="9s")
    proc = subprocess.run(["bash", str(DEMO)], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith('{"handshakes"')))
    reloads = int(proc.stdout.split("server reloads: ")[1].split()[0])
    assert counts["failed"] == 0 and counts["handshakes"] > 100, counts
    assert reloads >= 2 and counts["serials"] >= reloads  # the client saw every certificate the server loaded
    assert "handshake failed" not in proc.stdout and "reload failed" not in proc.stdout
    assert "PRIVATE KEY" not in proc.stdout + proc.stderr
