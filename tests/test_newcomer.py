"""What a new user tripped on (issue 28): each test fails on the code before the fix.

Subprocess tests of the installed command where the user sees the behaviour;
the Python API's are in-process, as a program uses it.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import launcher_env, run_launcher


def test_vault_errors_name_the_openbao_variables_too(tmp_path: Path) -> None:
    """With only BAO_* set, "no address" and "no token" name what the user can set, BAO_* included."""
    no_address = run_launcher(["check"], env=launcher_env({"BAO_TOKEN": "t", "DB": "vault://secret/app#x"}), cwd=tmp_path)
    assert no_address.returncode == 78, no_address.stderr
    assert "VAULT_ADDR (or BAO_ADDR)" in no_address.stderr
    # No token anywhere (HOME has no ~/.vault-token): 77 before any request reaches the address.
    no_token = run_launcher(["check"], env=launcher_env({"BAO_ADDR": "http://127.0.0.1:9", "DB": "vault://secret/app#x",
                                                         "HOME": str(tmp_path)}), cwd=tmp_path)
    assert no_token.returncode == 77, no_token.stderr
    assert "VAULT_TOKEN (or BAO_TOKEN)" in no_token.stderr
