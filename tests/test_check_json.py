"""``launcher check --format json``: per-binding objects and a summary, valid against the shipped schema.

Each test runs the installed ``launcher`` and validates its stdout with
``jsonschema`` against docs/check-format.schema.json; the exit code must be the
one the text form gives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.helpers import launcher_env, run_launcher
from tests.openbao import OpenBao, write_kv2

SCHEMA = json.loads((Path(__file__).parents[1] / "docs" / "check-format.schema.json").read_text())
CANARY = "canary-3f9d1b-never-print-me"


def checked(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[dict[str, Any], int]:
    """Run ``check --format json`` and the text form; same exit code, JSON valid against the schema."""
    as_json = run_launcher(["check", "--format", "json", *args], env=env or launcher_env(), cwd=tmp_path)
    as_text = run_launcher(["check", *args], env=env or launcher_env(), cwd=tmp_path)
    assert as_json.returncode == as_text.returncode, (as_json.stderr, as_text.stderr)
    assert CANARY not in as_json.stdout + as_json.stderr
    doc: dict[str, Any] = json.loads(as_json.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["summary"]["exit_code"] == as_json.returncode
    return doc, as_json.returncode


def project(tmp_path: Path, env_yaml: str, extra: str = "") -> None:
    (tmp_path / "secrets.json").write_text(json.dumps({"app": {"db": {"user": "u", "password": CANARY}, "token": CANARY}}))
    (tmp_path / "launcher.yaml").write_text(f"version: 1\nsources:\n  dev: {{type: file, path: secrets.json}}\n{extra}env:\n{env_yaml}")


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["name"]: b for b in doc["bindings"]}


def test_every_status_per_binding_and_the_exit_code_of_the_text_form(tmp_path: Path) -> None:
    project(tmp_path, "  PASSWORD: dev://app/db#password\n"
                      "  GONE: dev://app/db#nope\n"
                      "  WITH_DEFAULT: {ref: dev://app/missing#x, default: fallback}\n"
                      "  MAYBE: {ref: dev://app/missing#x, optional: true}\n"
                      "  LEVEL: info\n")
    doc, code = checked(tmp_path)
    assert code == 66
    rows = by_name(doc)
    assert rows["PASSWORD"]["status"] == "ok" and rows["PASSWORD"]["version"] and rows["PASSWORD"]["message"] is None
    assert rows["PASSWORD"]["ref"] == "dev://app/db#password"
    assert rows["GONE"]["status"] == "missing" and "nope" in rows["GONE"]["message"] and rows["GONE"]["version"] is None
    assert "launcher.yaml:" in rows["GONE"]["message"]  # where the binding is
    assert rows["WITH_DEFAULT"]["status"] == "default" and rows["MAYBE"]["status"] == "optional"
    assert rows["LEVEL"] == {"name": "LEVEL", "ref": "-", "version": None, "status": "ok", "message": None,
                             "answered_by": None}
    assert all("next_check" not in b for b in doc["bindings"])  # not watching
    summary = doc["summary"]
    assert summary["status"] == "failed" and summary["bindings"] == 5 and not summary["offline"]
    assert summary["counts"] == {"ok": 2, "missing": 1, "default": 1, "optional": 1}
    assert summary["manifest"].endswith("launcher.yaml") and summary["problems"] == []


def test_all_ok_exits_0_and_next_check_when_watching(tmp_path: Path) -> None:
    project(tmp_path, "  PASSWORD: dev://app/db#password\n  PINNED_LITERAL: {value: x}\n", extra="watch: {enabled: true, interval: 30s}\n")
    doc, code = checked(tmp_path)
    assert code == 0 and doc["summary"]["status"] == "ok" and doc["summary"]["counts"] == {"ok": 2}
    rows = by_name(doc)
    assert rows["PASSWORD"]["next_check"] == "~30s" and rows["PINNED_LITERAL"]["next_check"] == "-"


def test_an_invalid_manifest_is_still_json_with_its_problems(tmp_path: Path) -> None:
    (tmp_path / "launcher.yaml").write_text("version: 1\nenv:\n  A: prd://x#y\nwatch: {interval: soon}\n")
    doc, code = checked(tmp_path)
    assert code == 78 and doc["bindings"] == [] and doc["summary"]["status"] == "failed"
    problems = doc["summary"]["problems"]
    assert len(problems) == 2 and any("prd" in p for p in problems) and any("launcher.yaml:4" in p for p in problems)


def test_offline_json(tmp_path: Path) -> None:
    project(tmp_path, "  PASSWORD: dev://app/db#password\n  LEVEL: info\n")
    doc, code = checked(tmp_path, "--offline")
    assert code == 0 and doc["bindings"] == []
    assert doc["summary"]["offline"] and doc["summary"]["bindings"] == 2 and doc["summary"]["status"] == "ok"


@pytest.mark.vault
def test_vault_denied_and_missing_per_binding(openbao: OpenBao, tmp_path: Path) -> None:
    path = f"check/{openbao.unique()}"
    write_kv2(openbao, f"{path}/ok", {"password": CANARY})
    write_kv2(openbao, f"{path}/secret", {"password": CANARY})
    policy = openbao.unique("pol")
    openbao.policy(policy, f'path "secret/data/{path}/ok" {{ capabilities = ["read"] }}\n'
                           f'path "secret/data/{path}/none" {{ capabilities = ["read"] }}\n')
    token = openbao.child_token([policy])
    (tmp_path / "launcher.yaml").write_text(
        f"version: 1\nenv:\n  OK: vault://secret/{path}/ok#password\n  DENIED: vault://secret/{path}/secret#password\n"
        f"  GONE: vault://secret/{path}/none#password\n")
    doc, code = checked(tmp_path, env=launcher_env({**openbao.env(), "VAULT_TOKEN": token, "HOME": str(tmp_path)}))
    rows = by_name(doc)
    assert code == 77  # denied outranks missing, as in the text form
    assert (rows["OK"]["status"], rows["OK"]["version"]) == ("ok", "1")
    assert rows["DENIED"]["status"] == "denied" and rows["GONE"]["status"] == "missing"
    assert doc["summary"]["counts"] == {"ok": 1, "denied": 1, "missing": 1}
