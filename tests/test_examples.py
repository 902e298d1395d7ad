"""Every example manifest is valid as shipped (`launcher check --offline`, and the manifest's JSON
Schema that editors use), those inside Kubernetes ConfigMaps included."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from launcher.manifest.schema import manifest_schema
from tests.helpers import launcher_env, run_launcher

ROOT = Path(__file__).resolve().parent.parent


def is_kubernetes(path: Path) -> bool:
    """A file of Kubernetes objects (every document has ``kind``), not a launcher manifest."""
    documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    return bool(documents) and all(isinstance(d, dict) and "kind" in d for d in documents)


# Secrets files are data, not manifests.
YAML_FILES = sorted(p for p in (ROOT / "examples").rglob("*.yaml") if "secrets" not in p.name)
MANIFESTS = [p for p in YAML_FILES if not is_kubernetes(p)]
KUBERNETES = [p for p in YAML_FILES if is_kubernetes(p)]
IN_CONFIGMAPS = [
    (path, f"{doc['metadata']['name']}/{key}")
    for path in KUBERNETES
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
    if doc and doc.get("kind") == "ConfigMap"
    for key, text in (doc.get("data") or {}).items()
    if key.endswith((".yaml", ".yml")) and isinstance(yaml.safe_load(text), dict) and "version" in yaml.safe_load(text)
]


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[str(p.relative_to(ROOT)) for p in MANIFESTS])
def test_example_manifest_passes_check_offline(manifest: Path) -> None:
    proc = run_launcher(["check", "--offline", "-m", str(manifest)], env=launcher_env(), cwd=manifest.parent)
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout
    jsonschema.validate(yaml.safe_load(manifest.read_text(encoding="utf-8")), manifest_schema(),
                        cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize(("path", "entry"), IN_CONFIGMAPS, ids=[f"{p.relative_to(ROOT)}:{e}" for p, e in IN_CONFIGMAPS])
def test_manifest_in_a_configmap_passes_check_offline(path: Path, entry: str, tmp_path: Path) -> None:
    name, key = entry.split("/", 1)
    doc = next(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d and d.get("kind") == "ConfigMap"
               and d["metadata"]["name"] == name)
    manifest = tmp_path / key
    manifest.write_text(doc["data"][key], encoding="utf-8")
    proc = run_launcher(["check", "--offline", "-m", str(manifest)], env=launcher_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout
    jsonschema.validate(yaml.safe_load(doc["data"][key]), manifest_schema(), cls=jsonschema.Draft202012Validator)


def test_every_kubernetes_example_carries_a_checked_manifest() -> None:
    assert {p for p, _ in IN_CONFIGMAPS} == set(KUBERNETES)
