"""Every example manifest is valid as shipped (`launcher check --offline`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import launcher_env, run_launcher

ROOT = Path(__file__).resolve().parent.parent
# Kubernetes files (k8s.yaml) hold manifests inside ConfigMaps; secrets files are data.
MANIFESTS = sorted(p for p in (ROOT / "examples").rglob("*.yaml") if p.name != "k8s.yaml" and "secrets" not in p.name)


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[str(p.relative_to(ROOT)) for p in MANIFESTS])
def test_example_manifest_passes_check_offline(manifest: Path) -> None:
    proc = run_launcher(["check", "--offline", "-m", str(manifest)], env=launcher_env(), cwd=manifest.parent)
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout
