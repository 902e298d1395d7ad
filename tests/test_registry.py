"""The source registry: a backend is one module plus one registry line (CONTRIBUTING.md, "Adding a backend")."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.errors import ManifestError, errors_of
from launcher.manifest import parse_manifest
from launcher.resolve.resolver import Resolver
from launcher.sources import catalog, registry
from launcher.sources.base import Leasing, TokenHolding, Versioned
from launcher.sources.catalog import backend
from launcher.sources.registry import builtins, default_scrub, types

# `google` itself is left out: checking that the gcp extra is installed imports the namespace
# packages `google` and `google.cloud`, which hold no code; every library under them is listed.
SDKS = ("hvac", "requests", "urllib3", "azure", "msal", "boto3", "botocore", "grpc", "proto", "google.auth", "google.api_core",
        "google.cloud.secretmanager_v1", "google.protobuf")


@pytest.fixture
def memory_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register tests/backends/memory.py: the one line a new backend adds."""
    monkeypatch.setitem(registry.REGISTRY, "memory", registry.Entry("tests.backends.memory", scrub=("MEMORY_TOKEN",)))
    backend.cache_clear()
    yield
    backend.cache_clear()


def test_parsing_a_manifest_imports_no_sdk(tmp_path: Path) -> None:
    """Every type declared and every built-in referenced: still no SDK until a source is opened."""
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text(
        "version: 1\n"
        "sources:\n"
        "  v: {type: vault, address: 'https://vault.example:8200', auth: {method: approle, role_id: r, secret_id: s}}\n"
        "  a: {type: azure, vault_url: 'https://kv.vault.azure.net/', credential: managed_identity}\n"
        "  f: {type: file, path: s.yaml}\n"
        "  s: {type: ssm, region: eu-west-1}\n"
        "  g: {type: gcp, project: p, endpoint: 'secretmanager.googleapis.com:443'}\n"
        "env:\n  A: v://secret/x#k\n  B: a://name\n  C: f://x\n  D: vault://secret/y#k\n  E: azure://kv/name\n"
        "  F: s:///app/db?label=live\n  G: ssm:///app/db?version=2\n"
        "  H: g://db\n  I: gcp://projects/p/secrets/db/versions/3\n"
    )
    code = (
        "import sys; from launcher.manifest import load_manifest; from launcher.resolve.resolver import inline_bindings\n"
        f"m = load_manifest({str(manifest)!r}); inline_bindings({{'X': 'vault://secret/z#k'}}, m)\n"
        f"print(sorted(n for n in sys.modules if any(n == s or n.startswith(s + '.') for s in {SDKS!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest("version: 1\nsources:\n  x: {type: consul}\n", "m.yaml", {})
    assert str(info.value) == f"m.yaml:3: sources.x.type: 'consul' is not one of: {', '.join(types())}"
    with pytest.raises(ManifestError, match=rf"sources.x.type: missing \(one of: {', '.join(types())}\)"):
        parse_manifest("version: 1\nsources:\n  x: {}\n", "m.yaml", {})


def test_capabilities_are_checked_protocols() -> None:
    from launcher.sources.file import FileSource, FileSourceConfig
    from launcher.sources.vault import VaultSourceConfig
    from launcher.sources.vault.source import VaultSource

    vault = VaultSource(VaultSourceConfig(name="v", address="http://127.0.0.1:9"), environ={"VAULT_TOKEN": "t"})
    try:
        assert isinstance(vault, Versioned) and isinstance(vault, Leasing) and isinstance(vault, TokenHolding)
    finally:
        vault.close()
    file = FileSource(FileSourceConfig(name="f", path="/dev/null"))
    assert isinstance(file, Versioned) and not isinstance(file, Leasing) and not isinstance(file, TokenHolding)


def test_a_new_backend_is_one_module_and_one_line(memory_backend: None, tmp_path: Path) -> None:
    text = ("version: 1\nsources:\n  mem:\n    type: memory\n    label: demo\n    values: [A, B]\n    ttl: 1m\n"
            "env:\n  X: mem://A\n")
    manifest = parse_manifest(text, str(tmp_path / "m.yaml"), {})
    config = manifest.sources["mem"]
    assert (config.type, config.label, config.values, config.ttl, config.mode) == ("memory", "demo", ("A", "B"), 60.0, "fast")  # type: ignore[attr-defined]
    resolution = Resolver(manifest).resolve({}, inline=False)
    assert resolution.values == {"X": "value-of-A"}
    assert "MEMORY_TOKEN" in default_scrub() and "memory" not in builtins()
    assert logging.getLogger("memory.lib").level == logging.WARNING  # capped when the backend was loaded


def test_a_new_backend_s_settings_are_checked_like_every_other(memory_backend: None) -> None:
    text = "version: 1\nsources:\n  mem:\n    type: memory\n    ttl: soon\n    mode: turbo\n    colour: red\nenv:\n  X: mem://a/b\n"
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "m.yaml", {})
    problems = [str(e) for e in errors_of(info.value)]
    assert problems == [
        "m.yaml:4: sources.mem.label: missing (a label for messages)",
        "m.yaml:5: sources.mem.ttl: invalid duration 'soon' (examples: 500ms, 30s, 5m, 1h30m, 10)",
        "m.yaml:6: sources.mem.mode: 'turbo' is not one of: fast, slow",
        "m.yaml:7: sources.mem.colour: unknown key (allowed: type, fallback, fallback_hold, values, label, ttl, mode)",
        "m.yaml:9: env.X: mem://a/b: memory paths are single words",
    ]


def test_a_backend_whose_extra_is_missing_is_78_naming_it(memory_backend: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    needy = replace(backend("memory"), requires=("a_module_that_is_not_installed",), extra="memory")
    monkeypatch.setattr(catalog, "backend", lambda kind: needy if kind == "memory" else backend.__wrapped__(kind))
    with pytest.raises(ManifestError) as info:
        parse_manifest("version: 1\nsources:\n  mem: {type: memory, label: x}\n", "m.yaml", {})
    assert "pip install 'secret-launcher[memory]'" in str(info.value) and str(info.value).startswith("m.yaml:3: sources.mem.type:")
