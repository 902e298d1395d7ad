"""The manifest's JSON Schema: published as docs/manifest.schema.json, and as strict as the reader.

Editors check manifests with the schema as they are typed; ``launcher check --offline``
checks them with file:line. The two must agree on what is wrong with a manifest's shape:
a table of bad manifests is run through both.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from launcher.manifest.schema import KIND_SCHEMAS, schema_text
from launcher.model.settings import KINDS
from tests.helpers import LAUNCHER, launcher_env, run_launcher

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "docs" / "manifest.schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_published_schema_is_the_commands_output() -> None:
    printed = run_launcher(["schema"])
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == schema_text()
    assert PUBLISHED.read_text(encoding="utf-8") == printed.stdout, "run `launcher schema > docs/manifest.schema.json`"


def test_every_kind_of_setting_is_described() -> None:
    assert sorted(KIND_SCHEMAS) == sorted(KINDS)


def test_the_schema_names_every_source_type_and_vocabulary(validator: jsonschema.Draft202012Validator) -> None:
    schema: dict[str, Any] = validator.schema  # type: ignore[assignment]
    types = schema["$defs"]["source"]["properties"]["type"]["enum"]
    assert {"vault", "azure", "aws", "ssm", "gcp", "file"} <= set(types)
    watch = schema["properties"]["watch"]["properties"]
    assert watch["on_change"]["enum"] == ["ignore", "signal", "restart", "exit"]
    assert watch["interval"]["default"] == 60.0 and "checked" in watch["interval"]["description"]


GOOD = [
    "version: 1\n",
    "version: 1\nenv:\n  A: dev://x\n  B: {ref: 'dev://y#k', file: true, on_change: signal}\n  C: {value: literal}\n"
    "sources:\n  dev: {type: file, path: ./s.yaml}\n",
    "version: 1\nsources:\n  prod:\n    type: vault\n    auth: {method: approle, role_id: r, secret_id_file: /s}\n"
    "    tls: {ca_cert: /ca.pem}\nwatch: {enabled: true, interval: 30s, signal: SIGUSR1}\nretry: {jitter: none, attempts: 3}\n",
    "version: 1\nsources:\n  corp: {type: azure, vault_url: 'https://kv.vault.azure.net/', credential: workload_identity}\n",
    "version: 1\nprocess: {inherit: [PATH, HOME], stop_signal: hup, mask: true, core_dumps: false}\nmetrics: {listen: ':9464'}\n",
    "version: 1\nenv_from:\n  - {ref: 'vault://secret/app/config', prefix: APP_}\ncache: {ttl: 1h30m, max_entries: 10}\n",
]

# (a bad manifest, what `check --offline` says): the schema refuses each one too.
BAD = [
    ("version: 1\nenvv:\n  A: x\n", "envv: unknown key"),
    ("env:\n  A: x\n", "version: missing"),
    ("version: 2\n", "unsupported version"),
    ("version: 1\nwatch: {on_change: reboot}\n", "watch.on_change: 'reboot' is not one of"),
    ("version: 1\nwatch: {intervall: 5s}\n", "watch.intervall: unknown key"),
    ("version: 1\nwatch: {interval: soon}\n", "watch.interval: invalid duration"),
    ("version: 1\nretry: {attempts: [1]}\n", "retry.attempts"),
    ("version: 1\nretry: {jitter: some}\n", "retry.jitter"),
    ("version: 1\ncache: {max_entries: 0}\n", "cache.max_entries: must be at least 1"),
    ("version: 1\nprocess: {inherit: [1A]}\n", "process.inherit: '1A' is not a valid variable name"),
    ("version: 1\nprocess: {stop_signal: SIGNOPE}\n", "process.stop_signal: unknown signal"),
    ("version: 1\nprocess: {mask: maybe}\n", "process.mask: expected true or false"),
    ("version: 1\nsources:\n  dev: {type: file}\n", "sources.dev.path: missing"),
    ("version: 1\nsources:\n  dev: {type: consul}\n", "sources.dev.type: 'consul' is not one of"),
    ("version: 1\nsources:\n  dev: {path: ./s.yaml}\n", "sources.dev.type: missing"),
    ("version: 1\nsources:\n  dev: {type: file, path: ./s.yaml, region: x}\n", "sources.dev.region: unknown key"),
    ("version: 1\nsources:\n  Dev: {type: file, path: ./s.yaml}\n", "source names must match"),
    ("version: 1\nsources:\n  https: {type: file, path: ./s.yaml}\n", "well-known URL scheme"),
    ("version: 1\nsources:\n  v: {type: vault, auth: {method: approle}}\n", "sources.v.auth.role_id: missing"),
    ("version: 1\nsources:\n  v: {type: vault, auth: {method: token, role_id: r}}\n", "sources.v.auth.role_id: unknown key"),
    ("version: 1\nsources:\n  v: {type: vault, auth: {method: approle, role_id: r, secret_id: s, secret_id_file: /f}}\n",
     "give secret_id or secret_id_file, not both"),
    ("version: 1\nsources:\n  a: {type: azure, vault_url: 'http://kv.example/'}\n", "sources.a.vault_url: must be an https:// URL"),
    ("version: 1\nenv:\n  1A: x\n", "not a valid variable name"),
    ("version: 1\nenv:\n  A: {ref: 'vault://x', value: y}\n", "needs exactly one of"),
    ("version: 1\nenv:\n  A: {ref: 'vault://x', colour: red}\n", "env.A.colour: unknown key"),
    ("version: 1\nenv:\n  A: {ref: 'vault://x', on_change: reboot}\n", "env.A.on_change"),
    ("version: 1\nenv:\n  A: {ref: literal}\n", "holds a literal, not a reference"),
    ("version: 1\nenv:\n  A: {ref: 'vault://x', mode: '0640'}\n", "env.A.mode: goes with `path:`"),
    ("version: 1\nenv:\n  A: true\n", "read as a boolean"),
    ("version: 1\nenv_from:\n  - {prefix: APP_}\n", "env_from[0].ref: missing"),
    ("version: 1\nmetrics: {listen: ':99999'}\n", "metrics.listen"),
]


@pytest.mark.parametrize("text", GOOD)
def test_good_manifests_pass_both(text: str, tmp_path: Path, validator: jsonschema.Draft202012Validator) -> None:
    assert not list(validator.iter_errors(yaml.safe_load(text)))
    (tmp_path / "launcher.yaml").write_text(text)
    proc = run_launcher(["check", "--offline", "-m", str(tmp_path / "launcher.yaml")], env=launcher_env())
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("text", "says"), BAD, ids=[says for _, says in BAD])
def test_a_bad_manifest_is_refused_by_both(text: str, says: str, tmp_path: Path, validator: jsonschema.Draft202012Validator) -> None:
    (tmp_path / "launcher.yaml").write_text(text)
    proc = run_launcher(["check", "--offline", "-m", str(tmp_path / "launcher.yaml")], env=launcher_env())
    assert proc.returncode == 78 and says in proc.stderr, proc.stderr
    assert list(validator.iter_errors(yaml.safe_load(text))), "the schema let through what check --offline refuses"


def test_completion_scripts_are_produced_and_complete_the_commands() -> None:
    for shell in ("bash", "zsh", "fish"):
        script = run_launcher(["completion", shell])
        assert script.returncode == 0 and "_LAUNCHER_COMPLETE" in script.stdout, script.stderr
    # What a shell asks when the user types `launcher <TAB>`: the subcommands, from click.
    asked = subprocess.run([LAUNCHER], env=launcher_env({"_LAUNCHER_COMPLETE": "bash_complete", "COMP_WORDS": "launcher ",
                                                         "COMP_CWORD": "1"}), capture_output=True, text=True, timeout=30, check=False)
    offered = {line.split(",", 1)[-1] for line in asked.stdout.splitlines()}
    assert {"run", "exec", "check", "env", "init", "schema", "completion"} <= offered, asked.stdout
    bad = run_launcher(["completion", "powershell"])
    assert bad.returncode == 2


def test_init_names_the_schema_for_editors_and_writes_it_beside(tmp_path: Path) -> None:
    done = run_launcher(["init", str(tmp_path / "launcher.yaml")])
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "launcher.yaml").read_text()
    assert text.splitlines()[0] == "# yaml-language-server: $schema=launcher.schema.json"
    written = json.loads((tmp_path / "launcher.schema.json").read_text())
    assert written == json.loads(schema_text())
    jsonschema.validate(yaml.safe_load(text), written, cls=jsonschema.Draft202012Validator)
    # A schema file of the user's is never replaced.
    (tmp_path / "launcher.schema.json").write_text("{}")
    assert run_launcher(["init", "--force", str(tmp_path / "launcher.yaml")]).returncode == 0
    assert (tmp_path / "launcher.schema.json").read_text() == "{}"
