"""The manifest: malformed files exit 78 through the real CLI; valid ones parse as README says."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from launcher.errors import ManifestError, errors_of
from launcher.manifest import load_manifest, parse_manifest
from launcher.model.config import CacheConfig, Manifest, ProcessConfig, RetryConfig, WatchConfig
from launcher.model.refs import Reference
from launcher.sources.azure import AzureSourceConfig
from launcher.sources.file import FileSourceConfig
from launcher.sources.registry import default_scrub
from launcher.sources.vault import VaultSourceConfig
from tests.helpers import in_unprivileged_process, launcher_env, run_launcher

FILE_SRC = "sources:\n  dev: {type: file, path: secrets.yaml}\n"

# (id, manifest text, line of the error, text that must be in the message: the field, and more)
MALFORMED = [
    ("missing-version", "sources: {}\n", 1, ["version", "missing"]),
    ("version-2", "version: 2\n", 1, ["version", "unsupported version '2'"]),
    ("version-bool", "version: true\n", 1, ["version", "quote"]),
    ("unknown-top-key", "version: 1\nenvv: {}\n", 2, ["envv", "did you mean 'env'"]),
    ("unknown-cache-key", "version: 1\ncache:\n  ttl: 1s\n  size: 3\n", 4, ["cache.size", "unknown key"]),
    ("unknown-retry-key", "version: 1\nretry:\n  attempt: 3\n", 3, ["retry.attempt", "unknown key"]),
    ("unknown-watch-key", "version: 1\nwatch:\n  intervall: 3s\n", 3, ["watch.intervall", "unknown key"]),
    ("unknown-process-key", "version: 1\nprocess:\n  scrubb: []\n", 3, ["process.scrubb", "unknown key"]),
    ("unknown-source-key", "version: 1\nsources:\n  dev:\n    type: file\n    path: x\n    paht: y\n", 6,
     ["sources.dev.paht", "unknown key"]),
    ("unknown-vault-key", "version: 1\nsources:\n  v: {type: vault, adress: x}\n", 3, ["sources.v.adress", "unknown key"]),
    ("unknown-auth-key", "version: 1\nsources:\n  v:\n    type: vault\n    auth: {method: token, role: x}\n", 5, ["sources.v.auth.role"]),
    ("unknown-binding-key", "version: 1\nenv:\n  A: {value: x, reff: y}\n", 3, ["env.A.reff", "unknown key"]),
    ("unknown-env-from-key", "version: 1\nenv_from:\n  - {ref: vault://x, prefx: A}\n", 3, ["env_from[0].prefx", "unknown key"]),
    ("typo-source", "version: 1\nsources:\n  prod: {type: vault}\nenv:\n  A: prd://secret/x#y\n", 5,
     ["env.A", "unknown source 'prd' (did you mean 'prod'?) (declared: prod; built-in: aws, azure, gcp, ssm, vault)"]),
    ("typo-source-in-template", "version: 1\nenv:\n  A: 'x{{ valt://s#k }}'\n", 3,
     ["env.A", "unknown source 'valt'", "built-in: aws, azure, gcp, ssm, vault"]),
    ("typo-source-inline-ref", "version: 1\nenv:\n  A: {ref: 'prd://x'}\n", 3, ["env.A.ref", "unknown source 'prd'"]),
    ("scheme-as-source-name", "version: 1\nsources:\n  https: {type: file, path: x}\n", 3, ["sources.https", "well-known URL scheme"]),
    ("scheme-as-source-name-redis", "version: 1\nsources:\n  redis: {type: vault}\n", 3, ["sources.redis", "well-known URL scheme"]),
    ("bad-source-name", "version: 1\nsources:\n  Prod: {type: file, path: x}\n", 3, ["sources.Prod", "[a-z][a-z0-9_-]*"]),
    ("bad-source-name-digit", "version: 1\nsources:\n  1dev: {type: file, path: x}\n", 3, ["sources.1dev"]),
    ("source-without-type", "version: 1\nsources:\n  p:\n    path: x\n", 4, ["sources.p.type", "missing"]),
    ("source-bad-type", "version: 1\nsources:\n  p:\n    type: consul\n", 4, ["sources.p.type", "'consul' is not one of"]),
    ("azure-without-vault-url", "version: 1\nsources:\n  corp:\n    type: azure\n", 4, ["sources.corp.vault_url", "missing"]),
    ("azure-http-url", "version: 1\nsources:\n  corp: {type: azure, vault_url: 'http://x'}\n", 3, ["sources.corp.vault_url", "https"]),
    ("file-without-path", "version: 1\nsources:\n  dev:\n    type: file\n", 4, ["sources.dev.path", "missing"]),
    ("vault-bad-auth-method", "version: 1\nsources:\n  v: {type: vault, auth: {method: ldap}}\n", 3, ["sources.v.auth.method", "ldap"]),
    ("approle-without-role-id", "version: 1\nsources:\n  v: {type: vault, auth: {method: approle}}\n", 3, ["sources.v.auth.role_id"]),
    ("ref-and-value", "version: 1\nenv:\n  A:\n    ref: vault://x#y\n    value: z\n", 4,
     ["env.A", "exactly one of `ref`, `value` or `template`"]),
    ("neither-ref-nor-value", "version: 1\nenv:\n  A: {file: true}\n", 3, ["env.A", "exactly one of"]),
    ("ref-holds-literal", "version: 1\nenv:\n  A: {ref: hello}\n", 3, ["env.A.ref", "literal"]),
    ("ref-holds-url", "version: 1\nenv:\n  A: {ref: 'https://example.com'}\n", 3, ["env.A.ref", "literal"]),
    ("boolean-value", "version: 1\nenv:\n  DEBUG: yes\n", 3, ["env.DEBUG", "boolean", "quote"]),
    ("boolean-true", "version: 1\nenv:\n  DEBUG: true\n", 3, ["env.DEBUG", "boolean", "quote"]),
    ("null-value", "version: 1\nenv:\n  A: null\n", 3, ["env.A", "null", "quote"]),
    ("empty-value", "version: 1\nenv:\n  A:\n  B: x\n", 3, ["env.A", "null", "quote"]),
    ("boolean-default", "version: 1\nenv:\n  A: {ref: vault://x#y, default: no}\n", 3, ["env.A.default", "boolean"]),
    ("invalid-env-name", "version: 1\nenv:\n  1A: x\n", 3, ["env.1A", "not a valid variable name"]),
    ("invalid-env-name-dash", "version: 1\nenv:\n  A-B: x\n", 3, ["env.A-B", "not a valid variable name"]),
    ("interpolated-key-is-not-expanded", "version: 1\nenv:\n  ${NAME}: x\n", 3, ["env.${NAME}", "not a valid variable name"]),
    ("bad-duration", "version: 1\ncache:\n  ttl: 5 minutes\n", 3, ["cache.ttl", "invalid duration '5 minutes'"]),
    ("bad-duration-watch", "version: 1\nwatch:\n  interval: 1d\n", 3, ["watch.interval", "invalid duration"]),
    ("negative-stop-timeout", "version: 1\nprocess:\n  stop_timeout: -1s\n", 3, ["process.stop_timeout", "invalid duration"]),
    ("bad-signal", "version: 1\nwatch:\n  signal: SIGFOO\n", 3, ["watch.signal", "unknown signal 'SIGFOO'"]),
    ("bad-stop-signal", "version: 1\nprocess:\n  stop_signal: BOGUS\n", 3, ["process.stop_signal", "unknown signal"]),
    ("bad-on-change", "version: 1\nwatch:\n  on_change: reboot\n", 3, ["watch.on_change", "'reboot' is not one of"]),
    ("bad-binding-on-change", "version: 1\nenv:\n  A: {value: x, on_change: reboot}\n", 3, ["env.A.on_change", "reboot"]),
    ("bad-on-error", "version: 1\nwatch: {on_error: panic}\n", 2, ["watch.on_error", "panic"]),
    ("bad-jitter", "version: 1\nretry: {jitter: lots}\n", 2, ["retry.jitter", "lots"]),
    ("zero-attempts", "version: 1\nretry: {attempts: 0}\n", 2, ["retry.attempts", "at least 1"]),
    ("bad-boolean", "version: 1\nwatch: {enabled: maybe}\n", 2, ["watch.enabled", "true or false"]),
    ("unset-variable", "version: 1\nenv:\n  A: ${LAUNCHER_TEST_UNSET_VAR}\n", 3, ["env.A", "${LAUNCHER_TEST_UNSET_VAR} is not set"]),
    ("unset-variable-in-source", "version: 1\nsources:\n  v:\n    type: vault\n    address: ${LAUNCHER_TEST_UNSET_VAR}\n", 5,
     ["sources.v.address", "is not set"]),
    ("unterminated-variable", "version: 1\nenv:\n  A: 'x${HOME'\n", 3, ["env.A", "unterminated"]),
    ("env-from-with-key", "version: 1\nenv_from:\n  - ref: vault://secret/x#k\n", 3, ["env_from[0].ref", "drop the #key"]),
    ("env-from-literal", "version: 1\nenv_from:\n  - ref: hello\n", 3, ["env_from[0].ref", "not a reference"]),
    ("env-from-not-a-list", "version: 1\nenv_from: {ref: vault://x}\n", 2, ["env_from", "expected a list"]),
    ("env-from-bad-prefix", "version: 1\nenv_from:\n  - {ref: vault://x, prefix: 1A}\n", 3, ["env_from[0].prefix"]),
    ("duplicate-key", "version: 1\nenv:\n  A: x\n  B: y\n  A: z\n", 5, ["env.A", "duplicate key"]),
    ("duplicate-top-key", "version: 1\nenv: {}\nenv: {}\n", 3, ["env", "duplicate key"]),
    ("invalid-yaml", "version: 1\nenv:\n  A: [x\n", 4, ["invalid YAML"]),
    ("invalid-yaml-tab", "version: 1\nenv:\n\tA: x\n", 3, ["invalid YAML"]),
    ("non-mapping-top", "- version\n- 1\n", 1, ["expected a mapping, got a list"]),
    ("scalar-top", "version 1\n", 1, ["expected a mapping"]),
    ("empty-file", "", 1, ["empty manifest"]),
    ("env-is-a-list", "version: 1\nenv:\n  - A\n", 3, ["env", "expected a mapping"]),
    ("binding-is-a-list", "version: 1\nenv:\n  A: [x]\n", 3, ["env.A", "expected a mapping"]),
    ("inherit-bad-name", "version: 1\nprocess: {inherit: [A-B]}\n", 2, ["process.inherit", "'A-B'"]),
    ("version-on-file-source", f"version: 1\n{FILE_SRC}env:\n  A: dev://app/db?version=3#user\n", 5, ["env.A", "?version="]),
    ("version-on-file-source-env-from", f"version: 1\n{FILE_SRC}env_from:\n  - ref: dev://app?version=3\n", 5, ["env_from", "?version="]),
    ("unbalanced-template", "version: 1\nenv:\n  A: 'a }} {{ vault://x#y }} {{ b'\n", 3, ["env.A", "unbalanced", "use `value:`"]),
    ("template-without-reference", "version: 1\nenv:\n  A: 'a {{ hello }}'\n", 3, ["env.A", "does not hold a reference"]),
    ("bad-query", "version: 1\nenv:\n  A: vault://x?ver=1\n", 3, ["env.A", "only ?version=V"]),
    ("empty-key", "version: 1\nenv:\n  A: 'vault://x#'\n", 3, ["env.A", "empty #key"]),
    ("yaml-binary-tag", "version: 1\nenv:\n  A: !!binary aGVsbG8=\n", 3, ["env.A", "tag"]),
]


def assert_one_line_78(proc_stderr: str, returncode: int, expected: list[str]) -> str:
    assert returncode == 78, proc_stderr
    assert "Traceback" not in proc_stderr
    lines = [line for line in proc_stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc_stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


@pytest.mark.parametrize(("text", "line", "expected"), [pytest.param(t, n, e, id=i) for i, t, n, e in MALFORMED])
def test_malformed_manifest_exits_78(tmp_path: Path, text: str, line: int, expected: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    proc = run_launcher(["check", "--offline", "-m", str(path)], cwd=tmp_path)
    message = assert_one_line_78(proc.stderr, proc.returncode, expected)
    assert f"{path}:{line}:" in message
    assert proc.stdout == ""


@pytest.mark.parametrize(("text", "line", "expected"), [pytest.param(t, n, e, id=i) for i, t, n, e in MALFORMED[::9]])
def test_malformed_manifest_exits_78_from_exec(tmp_path: Path, text: str, line: int, expected: list[str]) -> None:
    (tmp_path / "launcher.yaml").write_text(text, encoding="utf-8")
    marker = tmp_path / "ran"
    proc = run_launcher(["exec", "--", "touch", str(marker)], cwd=tmp_path)  # ./launcher.yaml by default
    message = assert_one_line_78(proc.stderr, proc.returncode, expected)
    assert f"launcher.yaml:{line}:" in message
    assert not marker.exists()


def test_multi_field_secret_without_key_is_78_naming_fields(tmp_path: Path) -> None:
    (tmp_path / "secrets.yaml").write_text("app:\n  db:\n    user: u\n    password: hunter2-canary\n", encoding="utf-8")
    (tmp_path / "launcher.yaml").write_text(f"version: 1\n{FILE_SRC}env:\n  DB: dev://app/db\n", encoding="utf-8")
    for args in (["exec", "--", "true"], ["check"]):
        proc = run_launcher(args, cwd=tmp_path)
        assert proc.returncode == 78, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "launcher.yaml:5: env.DB" in proc.stderr and "fields: password, user" in proc.stderr
        assert "hunter2-canary" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("how", ["-m", "LAUNCHER_MANIFEST"])
@pytest.mark.parametrize("command", [["check", "--offline"], ["exec", "--", "true"], ["env"]])
def test_named_manifest_that_does_not_exist_is_78(tmp_path: Path, how: str, command: list[str]) -> None:
    missing = str(tmp_path / "nope.yaml")
    if how == "-m":
        proc = run_launcher([command[0], "-m", missing, *command[1:]], cwd=tmp_path)
    else:
        proc = run_launcher(command, env=launcher_env({"LAUNCHER_MANIFEST": missing}), cwd=tmp_path)
    assert proc.returncode == 78, proc.stderr
    assert "nope.yaml" in proc.stderr and "not found" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- in-process parsing ------------------------------------------------------------------


def parse(text: str, environ: dict[str, str] | None = None, filename: str = "/etc/app/launcher.yaml") -> Manifest:
    return parse_manifest(text, filename, environ or {})


def test_minimal_manifest_has_the_dataclass_defaults() -> None:
    m = parse("version: 1\n")
    assert m.env == () and m.env_from == () and dict(m.sources) == {}
    assert (m.cache, m.retry, m.watch, m.process) == (CacheConfig(), RetryConfig(), WatchConfig(), ProcessConfig())
    assert m.process.scrub == default_scrub() and m.process.files_dir is None
    assert m.cache.ttl == 8 * 3600 and m.retry.attempts == 4 and m.watch.signal == signal.SIGHUP


@pytest.mark.parametrize("number", ["0755", "1e3", "007", "0x1F", "1_000", "3.10", "+1", "2024-01-01", ".5"])
def test_yaml_numbers_keep_their_source_text(number: str) -> None:
    m = parse(f"version: 1\nenv:\n  MODE: {number}\n  BOX: {{value: {number}}}\n")
    assert [b.parts for b in m.env] == [(number,), (number,)]


def test_interpolation_applies_to_values_not_keys() -> None:
    env = {"HOST": "db", "EMPTY": "", "ADDR": "https://vault:8200"}
    m = parse(
        "version: 1\n"
        "sources:\n  v: {type: vault, address: '${ADDR}'}\n"
        "env:\n"
        "  URL: 'postgres://${HOST}:5432'\n"
        "  D1: ${UNSET:-d}\n"
        "  D2: ${EMPTY:-d}\n"
        "  CASH: 'a$$b $x'\n"
        "  REF: 'v://secret/${HOST}#k'\n"
        "cache: {ttl: '${TTL:-5m}'}\n",
        env,
    )
    values = {b.name: b.parts for b in m.env}
    assert values == {
        "URL": ("postgres://db:5432",),
        "D1": ("d",),
        "D2": ("d",),
        "CASH": ("a$b $x",),
        "REF": (Reference("v", "secret/db", "k"),),
    }
    assert m.cache.ttl == 300.0
    source = m.sources["v"]
    assert isinstance(source, VaultSourceConfig) and source.address == "https://vault:8200"


def test_interpolated_values_are_not_parsed_as_yaml() -> None:
    m = parse("version: 1\nenv:\n  A: ${X}\n", {"X": "true"})
    assert m.env[0].parts == ("true",)


def test_relative_paths_are_relative_to_the_manifest(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "launcher.yaml"
    path.parent.mkdir()
    path.write_text("version: 1\nsources:\n  dev: {type: file, path: ./s.yaml}\n  abs: {type: file, path: /x/s.yaml}\n", encoding="utf-8")
    m = load_manifest(path, environ={})
    assert m.sources["dev"] == FileSourceConfig(name="dev", path=str(tmp_path / "sub" / "s.yaml"))
    assert m.sources["abs"] == FileSourceConfig(name="abs", path="/x/s.yaml")


def test_bindings() -> None:
    m = parse(
        "version: 1\n"
        "env:\n"
        "  LIT: info\n"
        "  URL: https://example.com/x#y\n"
        "  REF: vault://secret/app#k\n"
        "  BOX: {value: 'vault://not/a/ref'}\n"
        "  TLS: {ref: azure://kv/tls, file: true, on_change: signal}\n"
        "  OPT: {ref: vault://a#b, default: ''}\n"
        "  OPT2: {ref: vault://a#c, optional: true}\n"
    )
    by_name = {b.name: b for b in m.env}
    assert by_name["LIT"].is_literal and by_name["URL"].is_literal and by_name["BOX"].is_literal
    assert by_name["BOX"].parts == ("vault://not/a/ref",)
    assert by_name["REF"].refs == [Reference("vault", "secret/app", "k")]
    assert by_name["TLS"].file and by_name["TLS"].on_change == "signal"
    assert by_name["OPT"].default == "" and by_name["OPT"].optional
    assert by_name["OPT2"].optional and by_name["OPT2"].default is None
    assert by_name["REF"].where == "/etc/app/launcher.yaml:5"


def test_scrub_extends_the_default_list() -> None:
    m = parse("version: 1\nprocess:\n  scrub: [MY_TOKEN]\n  passthrough: [VAULT_TOKEN]\n")
    assert m.process.scrub == (*default_scrub(), "MY_TOKEN")
    assert m.process.passthrough == ("VAULT_TOKEN",)


README_EXAMPLE = """\
version: 1

sources:                        # optional; named backends (multi-vault)
  prod:
    type: vault
    address: https://vault.example.com:8200
    namespace: team-a
    auth: {method: approle, role_id: "${ROLE_ID}", secret_id_file: /run/secrets/sid}
    tls: {ca_cert: /etc/ssl/vault-ca.pem, skip_verify: false}
    revoke_on_exit: false
  corp:
    type: azure
    vault_url: https://corp-kv.vault.azure.net/
    credential: default
  dev:
    type: file
    path: ./secrets.dev.yaml

env:
  DB_PASSWORD: prod://secret/app/db#password
  API_KEY: corp://api-key
  PINNED: corp://api-key?version=0f3c9a
  DATABASE_URL: "postgres://{{ prod://secret/app/db#user }}:{{ prod://secret/app/db#password }}@db/app"
  TLS_KEY:
    ref: corp://tls-key
    file: true
  FEATURE_TOKEN:
    ref: prod://secret/app/flags#token
    default: ""
  LOG_LEVEL: info

env_from:
  - ref: prod://secret/app/config
    prefix: APP_

cache:   {ttl: 8h, max_entries: 500}
retry:   {attempts: 4, initial_delay: 1s, max_delay: 32s, multiplier: 2, jitter: full, deadline: 60s}
watch:
  enabled: false
  interval: 60s
  on_change: restart
  signal: SIGHUP
  debounce: 2s
  splay: 0s
  on_error: keep
  max_restarts: 5
  restart_window: 5m
process:
  stop_signal: SIGTERM
  stop_timeout: 10s
  pristine: false
  inherit: [PATH, HOME, LANG, TZ, TERM, USER]
  scrub: [VAULT_TOKEN, VAULT_SECRET_ID, AZURE_CLIENT_SECRET]
  passthrough: []
  signal_target: group
"""


def test_the_design_example_parses() -> None:
    m = parse(README_EXAMPLE, {"ROLE_ID": "r-1"})
    prod, corp = m.sources["prod"], m.sources["corp"]
    assert isinstance(prod, VaultSourceConfig) and prod.auth.method == "approle" and prod.auth.role_id == "r-1"
    assert prod.tls.skip_verify is False and prod.tls.ca_cert == "/etc/ssl/vault-ca.pem"
    assert isinstance(corp, AzureSourceConfig) and corp.vault_url == "https://corp-kv.vault.azure.net/"
    assert [b.name for b in m.env] == ["DB_PASSWORD", "API_KEY", "PINNED", "DATABASE_URL", "TLS_KEY", "FEATURE_TOKEN", "LOG_LEVEL"]
    assert m.env_from[0].prefix == "APP_" and m.env_from[0].ref == Reference("prod", "secret/app/config")
    # Every value in the example equals the default: the dataclasses hold them.
    assert (m.cache, m.retry, m.watch, m.process) == (CacheConfig(), RetryConfig(), WatchConfig(), ProcessConfig())


def test_parse_errors_are_manifest_errors_with_location() -> None:
    with pytest.raises(ManifestError) as info:
        parse("version: 1\nenv:\n  A: prd://x\n")
    assert info.value.exit_code == 78
    assert info.value.where == "/etc/app/launcher.yaml:3" and info.value.field == "env.A"


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ("corp://bad_name", "is not a Key Vault secret name"),
        ("azure://only-a-vault", "expected azure://VAULT-NAME/SECRET-NAME"),
        ("corp://api-key?version=not-hex!", "is not a Key Vault version id"),
    ],
)
def test_malformed_azure_references_fail_offline(tmp_path: Path, ref: str, problem: str) -> None:
    manifest = tmp_path / "launcher.yaml"
    manifest.write_text(
        "version: 1\nsources:\n  corp: {type: azure, vault_url: 'https://corp.vault.azure.net/', credential: client_secret}\n"
        f"env:\n  X: {ref}\n"
    )
    result = run_launcher(["check", "--offline", "-m", str(manifest)])
    assert result.returncode == 78
    assert f"launcher.yaml:5: env.X: {ref}" in result.stderr and problem in result.stderr


# -- bounds: nothing a manifest holds crashes (70) or hangs the reader -----------------------------

EXCEPTION_NAME_RE = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b|Traceback")


def manifest_error(text: str, environ: dict[str, str] | None = None) -> ManifestError:
    # How long adversarial inputs take is measured by benchmarks/bench_parser.py, never asserted here.
    with pytest.raises(ManifestError) as info:
        parse(text, environ)
    message = str(info.value)
    assert "\n" not in message and not EXCEPTION_NAME_RE.search(message), message
    return info.value


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        pytest.param("version: 1\nenv:\n  A: " + "[" * 10_000 + "]" * 10_000 + "\n", 3, "nesting depth", id="flow-lists"),
        pytest.param("version: 1\nenv:\n  A: " + "{a: " * 10_000 + "x" + "}" * 10_000 + "\n", 3, "nesting depth", id="flow-maps"),
        pytest.param("version: 1\nenv:\n" + "".join(" " * (i + 2) + "a:\n" for i in range(1_500)), 1_000, "nesting depth",
                     id="block-maps"),
        pytest.param("version: 1\nenv:\n  A: '" + "${U:-" * 1_000 + "x" + "}" * 1_000 + "'\n", 3, "nested too deeply",
                     id="interpolation"),
    ],
)
def test_deep_nesting_is_78_with_a_line(text: str, line: int, expected: str) -> None:
    err = manifest_error(text)
    assert err.where is not None and err.where.startswith("/etc/app/launcher.yaml:")
    assert abs(int(err.where.rsplit(":", 1)[1]) - line) <= 2 and expected in str(err)


def test_deep_interpolation_through_the_cli_is_78_not_70(tmp_path: Path) -> None:
    path = tmp_path / "launcher.yaml"
    path.write_text("version: 1\nenv:\n  A: '" + "${U:-" * 1_000 + "x" + "}" * 1_000 + "'\n", encoding="utf-8")
    proc = run_launcher(["check", "--offline", "-m", str(path)], cwd=tmp_path)
    assert_one_line_78(proc.stderr, proc.returncode, [f"{path}:3: env.A:", "nested too deeply"])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{" * 100_000, "unbalanced"),
        ("{{ vault://x" * 8_000, "unbalanced"),
        ("}" * 100_000, ""),  # no "{{": a literal
    ],
)
def test_huge_template_values_are_read_or_refused(value: str, message: str) -> None:
    text = f"version: 1\nenv:\n  A: '{value}'\n"  # their time: benchmarks/bench_parser.py
    if message:
        assert message in str(manifest_error(text))
    else:
        assert parse(text).env[0].parts == (value,)


# -- reading the file: plain words, no exception names -------------------------------------------


def read_error(path: Path | str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load_manifest(path, environ={})
    message = str(info.value)
    assert info.value.exit_code == 78 and "\n" not in message and not EXCEPTION_NAME_RE.search(message), message
    return info.value


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param("version: 1\n".encode("utf-16"), "not UTF-8 text (it looks like UTF-16; save it as UTF-8)", id="utf-16-bom"),
        pytest.param("version: 1\n".encode("utf-16-le"), "not UTF-8 text (it looks like UTF-16; save it as UTF-8)", id="utf-16le"),
        pytest.param("version: 1\n".encode("utf-16-be"), "not UTF-8 text (it looks like UTF-16; save it as UTF-8)", id="utf-16be"),
        pytest.param("version: 1\n".encode("utf-32"), "not UTF-8 text (it looks like UTF-32; save it as UTF-8)", id="utf-32"),
        pytest.param(b"version: 1\nenv:\n  A: caf\xe9\n", "not UTF-8 text (invalid byte at offset 24)", id="latin-1"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8 text (invalid byte at offset 0)", id="binary"),
    ],
)
def test_a_file_that_is_not_utf8_says_so(tmp_path: Path, data: bytes, expected: str) -> None:
    path = tmp_path / "launcher.yaml"
    path.write_bytes(data)
    err = read_error(path)
    assert str(err) == f"{path}: {expected}" and err.where == str(path)


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "launcher.yaml"
    path.write_bytes(b"\xef\xbb\xbfversion: 1\nenv:\n  A: x\n")
    assert load_manifest(path, environ={}).env[0].parts == ("x",)


def test_a_nul_byte_is_78_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "launcher.yaml"
    path.write_bytes(b"version: 1\nenv:\n  A: a\x00b\n")
    err = read_error(path)
    assert err.where == f"{path}:3" and "NUL byte" in str(err)


@pytest.mark.parametrize("char", ["\x07", "\x1b", "\x7f", "\ufffe"])
def test_a_control_character_is_78_in_plain_words(char: str) -> None:
    err = manifest_error(f"version: 1\nenv:\n  A: 'a{char}b'\n")
    assert err.where == "/etc/app/launcher.yaml:3" and f"U+{ord(char):04X} is not allowed" in str(err)


def test_a_directory_is_78(tmp_path: Path) -> None:
    err = read_error(tmp_path)
    assert str(err) == f"{tmp_path}: is a directory, not a manifest file"


def test_dev_zero_ends_quickly_as_too_large() -> None:
    assert str(read_error("/dev/zero")) == "/dev/zero: larger than 4 MiB; a manifest is a small text file"


def test_a_file_over_4_mib_is_78(tmp_path: Path) -> None:
    path = tmp_path / "launcher.yaml"
    path.write_text("version: 1\n" + "# padding\n" * (420 * 1024), encoding="utf-8")
    assert "larger than 4 MiB" in str(read_error(path))


def test_permission_denied_is_78(tmp_path: Path) -> None:
    path = tmp_path / "launcher.yaml"
    path.write_text("version: 1\n", encoding="utf-8")
    path.chmod(0)
    tmp_path.chmod(0o755)

    def attempt() -> str:
        try:
            load_manifest(path, environ={})
        except ManifestError as exc:
            return f"{exc.exit_code} {exc}"
        return "no error"

    assert in_unprivileged_process(attempt) == f"78 {path}: permission denied (cannot read the manifest)"


def test_file_errors_through_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "launcher.yaml"
    path.write_bytes("version: 1\n".encode("utf-16"))
    for target in (path, tmp_path, Path("/dev/zero")):
        proc = run_launcher(["check", "--offline", "-m", str(target)], cwd=tmp_path)
        line = assert_one_line_78(proc.stderr, proc.returncode, [f"{target}: "])
        assert not EXCEPTION_NAME_RE.search(line), line


# -- one line per problem -------------------------------------------------------------------------


def test_a_key_with_a_newline_cannot_forge_a_line(tmp_path: Path) -> None:
    text = 'version: 1\nenv:\n  "A\\nlauncher: resolved 3 variables": x\n  "B\\r\\x1b[2K": y\n'
    err = manifest_error(text)
    assert str(err) == (
        "/etc/app/launcher.yaml:3: env.A\\nlauncher: resolved 3 variables: not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)"
    )
    assert [str(e) for e in errors_of(err)][1].startswith("/etc/app/launcher.yaml:4: env.B\\r\\x1b[2K: ")
    path = tmp_path / "launcher.yaml"
    path.write_text(text, encoding="utf-8")
    proc = run_launcher(["check", "--offline", "-m", str(path)], cwd=tmp_path)
    assert proc.returncode == 78
    assert not any(line.startswith("launcher: resolved") for line in proc.stderr.splitlines()), proc.stderr
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr


def test_long_keys_are_shortened_in_messages() -> None:
    err = manifest_error(f"version: 1\ncache:\n  {'k' * 1_000}: 1\n")  # YAML's limit for a plain key: 1024
    assert len(str(err)) < 300 and "cache.kkkk" in str(err) and "..." in str(err)


# -- several problems at once ----------------------------------------------------------------------


def test_every_independent_problem_is_reported_in_file_order() -> None:
    err = manifest_error(
        "version: 1\n"                                      # 1
        "env:\n"                                            # 2
        "  A: prd://x#y\n"                                  # 3
        "  1B: x\n"                                         # 4
        "  C: {value: x, reff: y}\n"                        # 5
        "sources:\n"                                        # 6
        "  prod: {type: vault, adress: x}\n"                # 7
        "  v2: {type: vault, auth: {method: approle}}\n"    # 8
        "cache: {ttl: forever, max_entries: 0}\n"           # 9
        "process:\n"                                        # 10
        "  inherit: [A-B, OK, C-D]\n"                       # 11
        "bogus: 1\n"                                        # 12
    )
    problems = errors_of(err)
    assert [(e.where, e.field) for e in problems] == [
        ("/etc/app/launcher.yaml:3", "env.A"),
        ("/etc/app/launcher.yaml:4", "env.1B"),
        ("/etc/app/launcher.yaml:5", "env.C.reff"),
        ("/etc/app/launcher.yaml:7", "sources.prod.adress"),
        ("/etc/app/launcher.yaml:8", "sources.v2.auth.role_id"),
        ("/etc/app/launcher.yaml:9", "cache.ttl"),
        ("/etc/app/launcher.yaml:9", "cache.max_entries"),
        ("/etc/app/launcher.yaml:11", "process.inherit"),
        ("/etc/app/launcher.yaml:11", "process.inherit"),
        ("/etc/app/launcher.yaml:12", "bogus"),
    ]
    assert str(err) == str(problems[0]) == "/etc/app/launcher.yaml:3: env.A: unknown source 'prd' (did you mean 'prod'?) " \
        "(declared: prod, v2; built-in: aws, azure, gcp, ssm, vault)"
    assert all(e.exit_code == 78 and "\n" not in str(e) for e in problems)


def test_a_source_with_wrong_settings_does_not_make_its_references_unknown() -> None:
    err = manifest_error("version: 1\nsources:\n  dev: {type: file}\nenv:\n  A: dev://x#y\n  B: 'x{{ dev://y }}'\n")
    assert [str(e) for e in errors_of(err)] == ["/etc/app/launcher.yaml:3: sources.dev.path: missing (the YAML or JSON file of secrets)"]


def test_at_most_20_problems_then_a_count() -> None:
    err = manifest_error("version: 1\nenv:\n" + "".join(f"  {i}X: x\n" for i in range(25)))
    problems = errors_of(err)
    assert len(problems) == 21
    assert [e.where for e in problems[:20]] == [f"/etc/app/launcher.yaml:{i + 3}" for i in range(20)]
    assert str(problems[20]) == "/etc/app/launcher.yaml: ... and 5 more problems"


@pytest.mark.parametrize(
    "text",
    [
        "sources: {}\nenv: {1A: x}\nbogus: 1\n",  # no version
        "version: 2\nbogus: 1\nenv: {1A: x}\n",
        "- a\n- b\n",
    ],
)
def test_structural_problems_stop_at_once(text: str) -> None:
    assert len(errors_of(manifest_error(text))) == 1


def test_aliases_cannot_multiply_the_work() -> None:
    # Every binding is the same 200 KB scalar: 800 MB of text to read without a bound.
    text = f"version: 1\nx: &s '{'a' * 200_000}'\nenv:\n" + "".join(f"  A{i}: *s\n" for i in range(4_000))
    problems = [str(e) for e in errors_of(manifest_error(text))]
    assert problems == [
        "/etc/app/launcher.yaml:2: x: unknown key (allowed: version, sources, env, env_from, env_files, cache, retry, watch, "
        "process, audit, metrics)",
        "/etc/app/launcher.yaml:2: aliases repeat more than 4 MiB of the manifest; use fewer or smaller aliases",
    ]


def test_problems_are_counted_up_to_a_bound() -> None:
    err = manifest_error("version: 1\nprocess: {inherit: [" + "A-," * 300_000 + "]}\n")
    assert str(errors_of(err)[-1]) == "/etc/app/launcher.yaml: ... and 980 more problems (reading stopped there)"


def test_aliases_used_modestly_are_fine() -> None:
    m = parse(
        "version: 1\n"
        "sources:\n"
        "  a: {type: vault, auth: &auth {method: approle, role_id: r, secret_id_file: /s}}\n"
        "  b: {type: vault, auth: *auth}\n"
    )
    a, b = m.sources["a"], m.sources["b"]
    assert isinstance(a, VaultSourceConfig) and isinstance(b, VaultSourceConfig) and a.auth == b.auth


# -- paths -----------------------------------------------------------------------------------------


def test_process_files_dir_is_a_path_relative_to_the_manifest() -> None:
    assert parse("version: 1\nprocess: {files_dir: ./run/secrets}\n").process.files_dir == "/etc/app/run/secrets"
    assert parse("version: 1\nprocess: {files_dir: /dev/shm}\n").process.files_dir == "/dev/shm"
    assert parse("version: 1\nprocess: {files_dir: null}\n").process.files_dir is None
    assert parse("version: 1\nprocess: {files_dir: '${D:-/x}'}\n").process.files_dir == "/x"
    assert "process.files_dir: must not be empty" in str(manifest_error("version: 1\nprocess: {files_dir: ''}\n"))


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('version: 1\nsources:\n  dev: {type: file, path: "a\\0b"}\n', "sources.dev.path"),
        ('version: 1\nsources:\n  v: {type: vault, tls: {ca_cert: "/x\\0"}}\n', "sources.v.tls.ca_cert"),
        ('version: 1\nprocess:\n  files_dir: "/run\\0x"\n', "process.files_dir"),
        ('version: 1\nenv:\n  A: {value: "a\\0b"}\n', "env.A.value"),
    ],
)
def test_a_nul_character_in_a_value_is_78_at_parse_time(text: str, field: str) -> None:
    err = manifest_error(text)
    assert err.where == "/etc/app/launcher.yaml:3" and err.field == field and "NUL character" in str(err)


def test_every_kind_of_setting_has_a_reader() -> None:
    """``Kind`` is a closed vocabulary: a new kind of setting is read somewhere, or the reader refuses to exist."""
    from launcher.manifest.settings import READERS
    from launcher.model.settings import KINDS

    assert sorted(READERS) == sorted(KINDS)
