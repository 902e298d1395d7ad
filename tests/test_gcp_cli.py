"""The Google Secret Manager source through the installed ``launcher``, where a user sees it.

``check``, ``env``, ``exec`` and ``run --watch`` against the suite's emulator: exit codes,
GKE Workload Identity through a metadata server, a key file, gRPC (plaintext and TLS),
the SDK's own logging, failover between two sources, the Python API, a manifest that
mixes file, Vault and Google, and what is imported when.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.gcp_emulator import PROJECT, SecretManagerEmulator
from tests.helpers import HELPERS_DIR, LAUNCHER, launcher_env, run_launcher, wait_for
from tests.openbao import OpenBao, write_kv2

if TYPE_CHECKING:
    from tests.moto_server import MotoServer

pytest_plugins = ["tests.moto_server"]

CANARY = "gcp-CANARY-7d31"
ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False, env=env)


def test_importing_the_module_imports_no_sdk() -> None:
    result = _python(
        "import sys\n"
        "from launcher.model.refs import Reference\n"
        "from launcher.sources.gcp import config, source\n"
        "src = source.GcpSource(config.GcpSourceConfig(name='gcp', project='p'))\n"
        "assert config.reference_problem(config.GcpSourceConfig(name='gcp'), Reference('gcp', 'db')) is None\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'google', 'grpc', 'requests', 'proto'}))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_missing_sdk_is_78_naming_the_extra(tmp_path: Path) -> None:
    (tmp_path / "launcher.yaml").write_text("version: 1\nsources:\n  g: {type: gcp}\nenv:\n  A: g://db\n")
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['google.cloud.secretmanager_v1'] = None\n")
    env = launcher_env({"PYTHONPATH": str(hide)})
    result = run_launcher(["check", "--offline"], env=env, cwd=tmp_path)
    assert result.returncode == 78, result.stderr
    assert "pip install 'secret-launcher[gcp]'" in result.stderr and "Traceback" not in result.stderr


# -- the installed launcher --------------------------------------------------------------------


def gcp_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The launcher's environment with no Google settings of the host and no metadata server."""
    env = launcher_env(drop=[k for k in os.environ if k.startswith(("GOOGLE_", "GCE_", "CLOUDSDK_"))])
    # Port 9 (discard) on loopback refuses at once: no real metadata server, no gcloud files.
    return {**env, "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"), "GCE_METADATA_HOST": "127.0.0.1:9",
            "GCE_METADATA_IP": "127.0.0.1:9", **extra}


def write_manifest(tmp_path: Path, env: dict[str, Any], sources: dict[str, Any] | None = None, **more: Any) -> Path:
    doc = {"version": 1, "sources": sources or {}, "env": env, **more}
    path = tmp_path / "launcher.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def emulated(emu: SecretManagerEmulator, **overrides: Any) -> dict[str, Any]:
    return {"type": "gcp", "endpoint": emu.url, "credentials": "none", "project": PROJECT, **overrides}


def test_cli_env_and_check_with_declared_builtin_and_inline_references(gcp: SecretManagerEmulator, tmp_path: Path) -> None:
    gcp.add_version("db", json.dumps({"user": "app", "password": "old"}))
    gcp.add_version("db", json.dumps({"user": "app", "password": CANARY}))
    gcp.add_version("api-key", "api-" + CANARY)
    sources = {"sm": emulated(gcp), "gcp": emulated(gcp)}  # declaring `gcp` configures the built-in gcp://
    write_manifest(tmp_path, {"DB_USER": "sm://db#user", "DB_PASSWORD": f"sm://projects/{PROJECT}/secrets/db#password",
                              "API": "gcp://api-key", "OLD": "sm://db/versions/1#password"}, sources)
    env = gcp_env(tmp_path, INLINE="gcp://db#password")
    result = run_launcher(["env", "--format", "json"], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"DB_USER": "app", "DB_PASSWORD": CANARY, "API": "api-" + CANARY, "OLD": "old",
                                         "INLINE": CANARY}
    check = run_launcher(["check", "--format", "json", "--audit", str(tmp_path / "audit.jsonl")], env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    fetched = {e["ref"]: e["version"] for e in audit if e["event"] == "fetch"}
    assert fetched["sm://db"] == "2" and fetched["sm://db/versions/1"] == "1" and fetched["gcp://api-key"] == "1"
    assert CANARY not in (tmp_path / "audit.jsonl").read_text()
    rows = {row["name"]: (row["version"], row["status"]) for row in json.loads(check.stdout)["bindings"]}
    assert rows["DB_USER"] == rows["DB_PASSWORD"] == ("2", "ok") and rows["OLD"] == ("1", "ok") and rows["API"] == ("1", "ok")
    table = run_launcher(["check"], env=env, cwd=tmp_path)
    assert table.returncode == 0 and "VERSION" in table.stdout
    assert gcp.count("get") == 0  # check reads (secretmanager.versions.access); it asks for no metadata
    assert CANARY not in check.stdout + check.stderr + table.stdout + result.stderr


def test_cli_env_from_a_json_payload(gcp: SecretManagerEmulator, tmp_path: Path) -> None:
    gcp.add_version("config", json.dumps({"api-key": CANARY, "db_url": "postgres://db/app"}))
    write_manifest(tmp_path, {}, {"gcp": emulated(gcp)}, env_from=[{"ref": "gcp://config", "prefix": "APP_"}])
    result = run_launcher(["env", "--format", "json"], env=gcp_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"APP_API_KEY": CANARY, "APP_DB_URL": "postgres://db/app"}


@pytest.mark.parametrize(
    ("prepare", "code"),
    [("missing", 66), ("denied", 77), ("unavailable", 69), ("disabled", 78), ("bad-ref", 78), ("no-credentials", 77),
     ("no-project", 78)],
)
def test_cli_exit_codes(gcp: SecretManagerEmulator, tmp_path: Path, prepare: str, code: int) -> None:
    gcp.add_version("db", CANARY)
    ref, source, extra = "gcp://db", emulated(gcp), {}
    if prepare == "missing":
        ref = "gcp://nope"
    elif prepare == "denied":
        gcp.deny("db")
    elif prepare == "unavailable":
        gcp.fail_next(10, "UNAVAILABLE")
    elif prepare == "disabled":
        gcp.set_state("db", "1", "DISABLED")
    elif prepare == "bad-ref":
        ref = "gcp://db?version=1"
    elif prepare == "no-credentials":
        source = {"type": "gcp", "endpoint": gcp.url}
        extra["NO_GCE_CHECK"] = "true"  # google-auth's own switch: no metadata server probe (and its pauses)
    else:
        del source["project"]
    write_manifest(tmp_path, {"SECRET": ref}, {"gcp": source}, retry={"attempts": 2, "initial_delay": "10ms", "deadline": "5s"})
    result = run_launcher(["env"], env=gcp_env(tmp_path, **extra), cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert CANARY not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and lines[-1].startswith("launcher: error: ")
    assert all(line.startswith("launcher: warning: ") for line in lines[:-1])  # retries, announced
    assert len(lines) == (2 if prepare == "unavailable" else 1)
    if prepare == "disabled":
        assert "version 1 is DISABLED" in result.stderr
    if prepare == "bad-ref":  # found without any request, with file:line
        offline = run_launcher(["check", "--offline"], env=gcp_env(tmp_path), cwd=tmp_path)
        assert offline.returncode == 78
        assert "launcher.yaml:" in offline.stderr and "env.SECRET:" in offline.stderr and "gcp://db/versions/1" in offline.stderr
        assert gcp.count() == 0
    if prepare == "no-credentials":
        assert "no Google credentials" in result.stderr and gcp.count() == 0


def test_cli_gke_workload_identity_through_the_metadata_server(gcp_auth: SecretManagerEmulator, tmp_path: Path) -> None:
    """On GKE with Workload Identity, ADC asks the metadata server for the token and the project."""
    gcp_auth.add_version("db", CANARY)
    write_manifest(tmp_path, {"SECRET": "gcp://db"}, {"gcp": {"type": "gcp", "endpoint": gcp_auth.url}})
    env = gcp_env(tmp_path, **gcp_auth.metadata_env())
    result = run_launcher(["env", "--format", "json"], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"SECRET": CANARY}
    assert gcp_auth.count("metadata") >= 2  # the token and the project
    assert [(r.authorized, r.status) for r in gcp_auth.requests if r.kind == "access"] == [(True, "OK")]
    gcp_auth.fail_next(50, "UNAVAILABLE", kind="metadata")
    down = run_launcher(["env"], env={**env, "LAUNCHER_LOG_LEVEL": "error"}, cwd=tmp_path)
    assert down.returncode in (69, 77), down.stderr  # 69 when the token endpoint does not answer
    assert CANARY not in down.stderr and "Traceback" not in down.stderr


def test_cli_key_file_is_used_and_scrubbed_from_the_child(gcp_auth: SecretManagerEmulator, tmp_path: Path) -> None:
    gcp_auth.add_version("db", CANARY)
    key = gcp_auth.service_account_key(tmp_path)
    write_manifest(tmp_path, {"SECRET": "gcp://db"}, {"gcp": {"type": "gcp", "endpoint": gcp_auth.url}})
    code = "import os, json; print(json.dumps([os.environ.get('SECRET'), os.environ.get('GOOGLE_APPLICATION_CREDENTIALS')]))"
    result = run_launcher(["exec", "--", sys.executable, "-c", code], env=gcp_env(tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(key)),
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [CANARY, None]


def test_cli_grpc_endpoint(gcp: SecretManagerEmulator, tmp_path: Path) -> None:
    gcp.add_version("db", CANARY)
    write_manifest(tmp_path, {"SECRET": "sm://db"}, {"sm": emulated(gcp, endpoint=gcp.grpc_target())})
    result = run_launcher(["env", "--format", "json"], env=gcp_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"SECRET": CANARY}
    assert [r.transport for r in gcp.requests] == ["grpc"]
    assert result.stderr == ""  # gRPC's C core says nothing on stderr


def test_cli_grpc_says_nothing_of_its_own_when_the_server_goes_away(gcp: SecretManagerEmulator, tmp_path: Path) -> None:
    """gRPC's C core logs a server's GOAWAY at INFO on stderr unless GRPC_VERBOSITY says otherwise when it loads."""
    gcp.add_version("db", CANARY)
    write_manifest(tmp_path, {"SECRET": "sm://db"}, {"sm": emulated(gcp, endpoint=gcp.grpc_target())},
                   watch={"interval": "1s"})
    out, audit = tmp_path / "events.jsonl", tmp_path / "audit.jsonl"
    proc = subprocess.Popen([LAUNCHER, "run", "--watch", "--audit", str(audit), "--", sys.executable, str(HELPERS_DIR / "record_env.py"),
                             str(out), "SECRET"],
                            env=gcp_env(tmp_path), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def checks() -> list[str]:
        lines = audit.read_text().splitlines() if audit.exists() else []
        return [e["outcome"] for e in map(json.loads, lines) if e["event"] == "check"]

    try:
        wait_for(lambda: out.exists() and "ok" in checks(), what="the child's start and a version check")
        assert "GRPC_VERBOSITY" not in proc_environ(proc.pid)  # the variable was set for the import only
        gcp.stop_grpc()  # GOAWAY, then refused: the next check fails and the launcher says so
        wait_for(lambda: "unavailable" in checks(), what="a failed check")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "source sm is failing" in stderr  # the outage, in the launcher's words
    assert [line for line in stderr.splitlines() if not line.startswith("launcher: ")] == []


def proc_environ(pid: int) -> str:
    """The variables a process has now, as text (of a process of ours: the launcher is not dumpable, its child is)."""
    import psutil

    children = psutil.Process(pid).children()
    return "\n".join(children[0].environ()) if children else ""


def test_cli_grpc_over_tls_with_a_key_file(gcp_auth: SecretManagerEmulator, tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    target = gcp_auth.grpc_target(tls=(cert.private_key_pem.bytes(), b"".join(b.bytes() for b in cert.cert_chain_pems)))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    gcp_auth.add_version("db", CANARY)
    write_manifest(tmp_path, {"SECRET": "gcp://db"}, {"gcp": {"type": "gcp", "endpoint": target}})
    env = gcp_env(tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(gcp_auth.service_account_key(tmp_path)),
                  GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=str(tmp_path / "ca.pem"))
    result = run_launcher(["env", "--format", "json"], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"SECRET": CANARY}
    assert [(r.transport, r.authorized) for r in gcp_auth.requests] == [("grpc", True)]


def test_cli_sdk_debug_logging_never_prints_a_value(gcp: SecretManagerEmulator, tmp_path: Path) -> None:
    """GOOGLE_SDK_PYTHON_LOGGING_SCOPE turns on the SDK's own DEBUG logging, which prints whole answers."""
    gcp.add_version("db", CANARY)
    write_manifest(tmp_path, {"REST": "gcp://db", "GRPC": "grpc://db"},
                   {"gcp": emulated(gcp), "grpc": emulated(gcp, endpoint=gcp.grpc_target())})
    for scope in ("google", "google.cloud.secretmanager_v1"):
        env = gcp_env(tmp_path, GOOGLE_SDK_PYTHON_LOGGING_SCOPE=scope)
        result = run_launcher(["--log-level", "debug", "env"], env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.count(CANARY) == 2
        assert base64_of(CANARY) not in result.stderr and CANARY not in result.stderr


def base64_of(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def test_cli_check_and_run_watch_see_a_rotation_without_reading_payloads(gcp: SecretManagerEmulator, tmp_path: Path) -> None:
    gcp.add_version("rotating", "v1-" + CANARY)
    write_manifest(tmp_path, {"TOKEN": "gcp://rotating"}, {"gcp": emulated(gcp)}, watch={"interval": "1s", "debounce": "0s"})
    env = gcp_env(tmp_path)
    out = tmp_path / "events.jsonl"
    proc = subprocess.Popen([LAUNCHER, "run", "--watch", "--", sys.executable, str(HELPERS_DIR / "record_env.py"), str(out), "TOKEN"],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        events = lambda: [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []  # noqa: E731
        wait_for(lambda: events(), what="the child's first start")
        reads = gcp.count("access")
        wait_for(lambda: gcp.count("get") >= 2, what="version checks")
        assert gcp.count("access") == reads, "checks read no payload while nothing changes"
        gcp.add_version("rotating", "v2-" + CANARY)
        wait_for(lambda: [e for e in events() if e["event"] == "start" and e["env"]["TOKEN"] == "v2-" + CANARY],
                 timeout=10, what="the restart with the new value")
        check = run_launcher(["check", "--format", "json"], env=env, cwd=tmp_path)
        assert json.loads(check.stdout)["bindings"][0]["version"] == "2"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    assert CANARY not in stderr


def test_cli_failover_between_two_google_sources(gcp: SecretManagerEmulator, tmp_path: Path) -> None:
    second = SecretManagerEmulator()
    second.start()
    try:
        gcp.add_version("db", CANARY)
        second.add_version("db", CANARY)
        gcp.fail_next(1000, "UNAVAILABLE")  # the primary is down
        sources = {"primary": emulated(gcp, fallback="secondary"), "secondary": emulated(second)}
        write_manifest(tmp_path, {"SECRET": "primary://db"}, sources, retry={"attempts": 2, "initial_delay": "50ms", "deadline": "6s"})
        result = run_launcher(["exec", "--", sys.executable, "-c", "import os; print(os.environ['SECRET'], end='')"],
                              env=gcp_env(tmp_path), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout == CANARY
        assert [r.status for r in gcp.requests] == ["UNAVAILABLE", "UNAVAILABLE"]  # its two attempts
        assert [r.status for r in second.requests] == ["OK"]
        assert "failing over to secondary" in result.stderr and CANARY not in result.stderr
    finally:
        second.stop()


def test_python_api_get_load_and_has_rotated(gcp: SecretManagerEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import launcher

    gcp.add_version("db", json.dumps({"password": CANARY}))
    manifest = write_manifest(tmp_path, {"DB_PASSWORD": "gcp://db#password"}, {"gcp": emulated(gcp)})
    with launcher.Client(str(manifest)) as client:
        assert client.get("gcp://db#password") == CANARY
        secrets = client.load()
        assert secrets["DB_PASSWORD"] == CANARY and secrets.version("DB_PASSWORD") == "1"
        assert not client.has_rotated("gcp://db#password")
        gcp.add_version("db", json.dumps({"password": "rotated"}))
        assert client.has_rotated("gcp://db#password")
        assert client.get("gcp://db#password") == "rotated"
    assert [r.kind for r in gcp.requests] == ["access", "get", "get", "access"]


def test_file_google_vault_and_ssm_in_one_run(gcp: SecretManagerEmulator, openbao: OpenBao, moto_server: MotoServer,
                                              tmp_path: Path) -> None:
    gcp.add_version("api", json.dumps({"key": "gcp-" + CANARY}))
    base = openbao.unique("mixed-gcp")
    write_kv2(openbao, f"{base}/db", {"password": "bao-" + CANARY})
    parameter = "/" + moto_server.unique("mixed-gcp") + "/token"
    moto_server.ssm.put_parameter(Name=parameter, Value="ssm-" + CANARY, Type="SecureString", Overwrite=True)
    (tmp_path / "secrets.yaml").write_text("flag: on-" + CANARY + "\n")
    sources = {"dev": {"type": "file", "path": "./secrets.yaml"}, "gcp": emulated(gcp)}
    url = f"x://{{{{ gcp://api#key }}}}:{{{{ vault://secret/{base}/db#password }}}}@{{{{ ssm://{parameter} }}}}"
    write_manifest(tmp_path, {"A": "gcp://api#key", "B": f"vault://secret/{base}/db#password", "C": "dev://flag",
                              "D": f"ssm://{parameter}", "URL": url}, sources)
    env = gcp_env(tmp_path, **openbao.env(), **moto_server.env())
    result = run_launcher(["env", "--format", "json"], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"A": "gcp-" + CANARY, "B": "bao-" + CANARY, "C": "on-" + CANARY, "D": "ssm-" + CANARY,
                                         "URL": f"x://gcp-{CANARY}:bao-{CANARY}@ssm-{CANARY}"}
    check = run_launcher(["check"], env=env, cwd=tmp_path)
    assert check.returncode == 0 and CANARY not in check.stdout + check.stderr, check.stderr
    gcp.fail_next(10, "PERMISSION_DENIED")  # all or nothing, across backends
    denied = run_launcher(["env"], env=env, cwd=tmp_path)
    assert denied.returncode == 77 and CANARY not in denied.stdout + denied.stderr


def _imported(args: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "launcher", *args], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=60, check=False)
    return result, {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}


def test_google_libraries_are_imported_only_when_a_source_is_opened(gcp: SecretManagerEmulator, tmp_path: Path) -> None:
    (tmp_path / "secrets.yaml").write_text("token: abc\n")
    (tmp_path / "file.yaml").write_text(yaml.safe_dump({"version": 1, "sources": {"dev": {"type": "file", "path": "./secrets.yaml"}},
                                                        "env": {"TOKEN": "dev://token"}}))
    gcp.add_version("db", CANARY)
    write_manifest(tmp_path, {"TOKEN": "dev://token", "SECRET": "g://db"},
                   {"dev": {"type": "file", "path": "./secrets.yaml"}, "g": emulated(gcp)})
    for args in (["env", "-m", "file.yaml"], ["check", "--offline"]):  # a file-only run; a gcp source declared, not opened
        result, modules = _imported(args, gcp_env(tmp_path), tmp_path)
        assert result.returncode == 0, result.stderr
        assert "launcher.manifest" in modules  # the probe sees our imports at all
        # `google` and `google.cloud` are namespace packages (no code), imported by the check that the extra is installed.
        assert not {m for m in modules if m.split(".")[0] in ("google", "grpc", "proto")} - {"google", "google.cloud"}, args
    result, modules = _imported(["env"], gcp_env(tmp_path), tmp_path)
    assert result.returncode == 0 and "google.cloud.secretmanager_v1" in modules


def test_example_manifest_is_valid(tmp_path: Path) -> None:
    result = run_launcher(["check", "--offline", "-m", str(ROOT / "examples" / "gcp" / "launcher.yaml")], env=gcp_env(tmp_path))
    assert result.returncode == 0, result.stderr
