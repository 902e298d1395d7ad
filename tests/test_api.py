"""The Python API (docs/guides/python.md): the CLI's engine in-process, against the file source, OpenBao and the Key Vault emulator."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

import launcher
from launcher.api import Client, Secrets
from launcher.errors import CompoundError, LauncherError, ManifestError, NotFoundError, errors_of
from launcher.model.config import SourceConfig
from launcher.sources.base import Secret
from tests.fakes import ScriptedSource
from tests.fault_proxy import fault_proxy
from tests.helpers import FakeHTTP, launcher_env, run_launcher, wait_for
from tests.keyvault_emulator import KeyVaultEmulator
from tests.openbao import OpenBao, write_kv2

CANARY = "canary-3b9e-api"
MANIFEST = """\
version: 1
sources:
  dev: {type: file, path: ./secrets.yaml}
env:
  DB_PASSWORD: dev://db#password
  DB_URL: "postgres://{{ dev://db#user }}:{{ dev://db#password }}@db/app"
  API_KEY: {ref: dev://api, file: true}
  LOG_LEVEL: info
  FLAG: {ref: dev://flags#beta, default: "off"}
env_from:
  - {ref: dev://app, prefix: APP_}
"""
SECRETS = {"db": {"user": "alice", "password": "pw-" + CANARY}, "api": "key-" + CANARY, "app": {"color": "blue"}}


@pytest.fixture
def dev(tmp_path: Path) -> Path:
    """A manifest over a file source (``secrets.yaml`` next to it)."""
    write_secrets(tmp_path, SECRETS)
    (tmp_path / "launcher.yaml").write_text(MANIFEST)
    return tmp_path / "launcher.yaml"


def write_secrets(folder: Path, doc: dict[str, Any]) -> None:
    (folder / "secrets.yaml").write_text(yaml.safe_dump(doc))


def no_canary(*texts: object) -> None:
    for text in texts:
        assert CANARY not in str(text) and CANARY not in repr(text)


# -- the package face -----------------------------------------------------------------


def test_import_launcher_imports_no_cli_sdk_or_yaml() -> None:
    heavy = ["click", "hvac", "requests", "urllib3", "azure", "boto3", "botocore", "google", "grpc", "pydantic", "pydantic_settings",
             "yaml"]
    code = (f"import sys, json, launcher\nheavy = {heavy!r}\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m == 'launcher.api')))\n"
            "launcher.Client, launcher.load, launcher.NotFoundError\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy[:-1])))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=launcher_env())
    bare, used = (json.loads(line) for line in proc.stdout.splitlines())
    assert bare == []  # not even the API module: every name is lazy
    assert used == []  # the API itself needs YAML, never click or an SDK


def test_public_names_are_lazy_and_errors_are_the_launchers() -> None:
    import launcher.errors as errors

    assert set(launcher.__all__) <= set(dir(launcher))
    for name in launcher.__all__:
        assert getattr(launcher, name) is not None
    for name in ("LauncherError", "NotFoundError", "AuthError", "UnavailableError", "ManifestError", "CompoundError"):
        assert getattr(launcher, name) is getattr(errors, name)
    assert (launcher.NotFoundError.exit_code, launcher.AuthError.exit_code, launcher.UnavailableError.exit_code,
            launcher.ManifestError.exit_code) == (66, 77, 69, 78)
    with pytest.raises(AttributeError, match="no attribute 'lod'"):
        launcher.lod  # type: ignore[attr-defined]  # noqa: B018


# -- load / get with the file source ------------------------------------------------------


def test_load_resolves_every_binding_and_shows_names_only(dev: Path) -> None:
    env = launcher.load(dev)
    assert dict(env) == {"DB_PASSWORD": "pw-" + CANARY, "DB_URL": f"postgres://alice:pw-{CANARY}@db/app",
                         "API_KEY": "key-" + CANARY, "LOG_LEVEL": "info", "FLAG": "off", "APP_COLOR": "blue"}
    assert repr(env) == str(env) == "Secrets(names=['API_KEY', 'APP_COLOR', 'DB_PASSWORD', 'DB_URL', 'FLAG', 'LOG_LEVEL'])"
    no_canary(env, env.keys(), env.values(), env.items())
    assert env.version("DB_PASSWORD") and env.version("DB_PASSWORD") == env.version("DB_URL")
    assert env.version("APP_COLOR") and env.version("LOG_LEVEL") is None and env.version("FLAG") is None
    with pytest.raises(KeyError):
        env.version("NOPE")
    with pytest.raises(TypeError):
        env["DB_PASSWORD"] = "x"  # type: ignore[index]
    assert not hasattr(env, "update") and not hasattr(env, "__dict__")


def test_values_and_versions_are_the_clis(dev: Path) -> None:
    env = launcher.load(dev)
    cli_env = run_launcher(["env", "-m", str(dev), "--format", "json"], env=launcher_env())
    assert cli_env.returncode == 0, cli_env.stderr
    by_cli = json.loads(cli_env.stdout)
    assert by_cli.pop("API_KEY") != env["API_KEY"]  # the CLI's is the path of a file holding the value
    assert by_cli == {k: v for k, v in env.items() if k != "API_KEY"}
    check = run_launcher(["check", "-m", str(dev)], env=launcher_env())
    rows = {line.split()[0]: line.split()[-2] for line in check.stdout.splitlines()[1:]}
    assert rows.pop("APP_*") == env.version("APP_COLOR")
    assert rows == {name: env.version(name) or "-" for name in env if not name.startswith("APP_")}


def test_the_manifest_is_found_as_on_the_command_line(dev: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert launcher.load(environ={"LAUNCHER_MANIFEST": str(dev)})["LOG_LEVEL"] == "info"
    monkeypatch.chdir(dev.parent)
    assert launcher.load(environ={})["LOG_LEVEL"] == "info"  # ./launcher.yaml
    assert launcher.get("dev://db#user", environ={}) == "alice"
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    assert dict(launcher.load(environ={})) == {}  # no manifest: built-in sources only
    with pytest.raises(ManifestError) as info:
        launcher.load("nowhere.yaml")
    assert (str(info.value), info.value.exit_code) == ("nowhere.yaml: manifest not found", 78)


def test_inline_references_are_resolved_unless_turned_off(dev: Path) -> None:
    environ = {"EXTRA": "dev://db#user", "HOME_PAGE": "https://example.com"}
    assert launcher.load(dev, environ=environ)["EXTRA"] == "alice"
    assert "HOME_PAGE" not in launcher.load(dev, environ=environ)
    assert "EXTRA" not in launcher.load(dev, environ=environ, inline=False)


def test_get_picks_keys_and_raises_the_launchers_errors(dev: Path) -> None:
    with Client(dev) as client:
        assert client.get("dev://db#user") == "alice"
        assert client.get("dev://api") == "key-" + CANARY
        with pytest.raises(NotFoundError) as missing:
            client.get("dev://db#nokey")
        assert str(missing.value) == "dev://db#nokey: no key 'nokey' (fields: password, user)"
        with pytest.raises(ManifestError) as several:
            client.get("dev://db")
        assert "add #KEY" in str(several.value) and several.value.exit_code == 78
        with pytest.raises(ManifestError, match=r"unknown source 'prd'.*dev"):
            client.get("prd://db#user")
        with pytest.raises(ManifestError) as literal:
            client.get(CANARY)  # a value pasted where a reference belongs is never echoed
        for err in (missing.value, several.value, literal.value):
            no_canary(err, err.args)


def test_errors_carry_file_line_and_match_the_cli(dev: Path) -> None:
    text = MANIFEST.replace("env_from:", "  GONE: dev://nothing#here\n  BAD: dev://db\nenv_from:")
    dev.write_text(text)
    gone_line = text.splitlines().index("  GONE: dev://nothing#here") + 1
    with pytest.raises(CompoundError) as info:
        launcher.load(dev)
    err = info.value
    assert [type(e) for e in err.errors] == [NotFoundError, ManifestError]  # manifest order
    assert str(err.errors[0]).startswith(f"{dev}:{gone_line}: env.GONE: dev://nothing: ")
    assert err.exit_code == 78  # the most fundamental
    cli = run_launcher(["env", "-m", str(dev)], env=launcher_env())
    assert cli.returncode == err.exit_code
    for problem in errors_of(err):
        assert problem.message in cli.stderr
    no_canary(err, *err.errors, cli.stderr)
    # One failure is raised as it is, so ``except launcher.NotFoundError`` catches it.
    dev.write_text(MANIFEST.replace("env_from:", "  GONE: dev://nothing#here\nenv_from:"))
    with pytest.raises(NotFoundError, match=rf"^{dev}:{gone_line}: env.GONE: "):
        launcher.load(dev)


# -- cache, stats, invalidation, rotation checks ---------------------------------------


def test_stats_count_hits_misses_fetches_and_evictions(dev: Path) -> None:
    dev.write_text(MANIFEST + "cache: {max_entries: 2}\n")
    with Client(dev) as client:
        for ref in ("dev://db#user", "dev://db#password", "dev://api", "dev://app#color", "dev://db#user", "dev://api"):
            client.get(ref)
        # db: miss, hit; api: miss (2 entries); app: miss, evicts db; db: miss, evicts api; api: miss, evicts app.
        assert client.stats() == {"hits": 1, "misses": 5, "fetches": 5, "evictions": 3, "expirations": 0, "size": 2}


def test_invalidate_one_or_all(dev: Path) -> None:
    with Client(dev) as client:
        client.load()
        fetched = client.stats()["fetches"]
        client.get("dev://db#user")
        assert client.stats()["fetches"] == fetched
        client.invalidate("dev://db#password")  # the key does not matter: the secret is dropped
        client.get("dev://db#user")
        assert client.stats()["fetches"] == fetched + 1
        client.invalidate()
        assert client.stats()["size"] == 0
        client.load()
        assert client.stats()["fetches"] == fetched + 1 + fetched  # every secret read again


def test_has_rotated_is_the_watchers_cheap_check(dev: Path) -> None:
    with Client(dev) as client:
        assert client.has_rotated("dev://db#user") is False  # not read yet: read now
        assert client.get("dev://db#user") == "alice"
        assert client.has_rotated("dev://db#user") is False
        write_secrets(dev.parent, {**SECRETS, "db": {"user": "bob", "password": "pw2-" + CANARY}})
        assert client.has_rotated("dev://db#password") is True
        assert client.get("dev://db#user") == "bob"  # the stale entry was dropped
        assert client.has_rotated("dev://db#user") is False


@pytest.mark.parametrize("fails", [False, True])
def test_concurrent_gets_of_one_secret_share_one_read(dev: Path, fails: bool) -> None:
    release = threading.Event()
    gated = ScriptedSource("dev", {"p": Secret(fields={"k": "v-" + CANARY}, version="3")}, gate=release)
    if fails:
        gated.error = NotFoundError("dev://p: not found")

    def factory(config: SourceConfig) -> ScriptedSource:
        return gated

    outcomes: list[object] = []

    def one(client: Client) -> None:
        try:
            outcomes.append(client.get("dev://p#k"))
        except LauncherError as exc:
            outcomes.append(exc)

    with Client(dev, source_factory=factory) as client:  # type: ignore[arg-type]
        threads = [threading.Thread(target=one, args=(client,)) for _ in range(20)]
        for thread in threads:
            thread.start()
        wait_for(lambda: client.stats()["misses"] == 20, what="20 gets to miss the cache")
        release.set()
        for thread in threads:
            thread.join(10)
        assert len(gated.fetches) == 1 and client.stats()["fetches"] == 1
    if fails:
        assert len(outcomes) == 20 and all(isinstance(o, NotFoundError) for o in outcomes)
    else:
        assert outcomes == ["v-" + CANARY] * 20


# -- watching ---------------------------------------------------------------------------


def test_watch_calls_back_with_the_changed_names_and_keeps_the_latest(dev: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[tuple[frozenset[str], Secrets]] = []
    with Client(dev) as client:
        handle = client.watch(lambda names, secrets: seen.append((names, secrets)), interval=0.2)
        first = handle.secrets
        assert first["DB_PASSWORD"] == "pw-" + CANARY
        write_secrets(dev.parent, {**SECRETS, "db": {"user": "alice", "password": "pw2-" + CANARY}})
        wait_for(lambda: seen, what="the change to be seen")
        names, secrets = seen[0]
        assert names == frozenset({"DB_PASSWORD", "DB_URL"})
        assert secrets["DB_PASSWORD"] == "pw2-" + CANARY and handle.secrets is secrets
        assert secrets.version("DB_PASSWORD") != first.version("DB_PASSWORD")
        started = time.monotonic()
        handle.stop()
        assert time.monotonic() - started < 1.0
    assert "secrets changed: DB_PASSWORD, DB_URL" in caplog.text
    no_canary(caplog.text)


def test_a_failing_callback_is_logged_and_watching_goes_on(dev: Path, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def callback(names: frozenset[str], secrets: Secrets) -> None:
        calls.append(secrets["DB_PASSWORD"])
        if len(calls) == 1:
            raise RuntimeError("a bug in the application")

    with Client(dev) as client, client.watch(callback, interval=0.2):
        for n in (2, 3):
            write_secrets(dev.parent, {**SECRETS, "db": {"user": "alice", "password": f"pw{n}-{CANARY}"}})
            wait_for(lambda n=n: len(calls) == n - 1, what=f"rotation {n - 1}")
    records = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(records) == 1 and "callback" in records[0].getMessage() and records[0].exc_info is not None


def test_an_outage_keeps_the_values_and_warns_once(dev: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Without FLAG: the watcher takes "still missing" of an optional secret as its source answering.
    dev.write_text(MANIFEST.replace('  FLAG: {ref: dev://flags#beta, default: "off"}\n', ""))
    errors: list[LauncherError] = []
    changes: list[frozenset[str]] = []
    with Client(dev) as client:
        handle = client.watch(lambda names, secrets: changes.append(names), on_error=errors.append, interval=0.1)
        before = handle.secrets
        (dev.parent / "secrets.yaml").unlink()
        wait_for(lambda: len(errors) >= 3, what="several failed checks")
        assert handle.secrets is before and changes == []
        assert {e.exit_code for e in errors} == {66}
        assert sum("is failing" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING) == 1
        write_secrets(dev.parent, {**SECRETS, "api": "key2-" + CANARY})
        wait_for(lambda: changes, what="the rotation after the outage")
        assert changes[0] == frozenset({"API_KEY"}) and handle.secrets["API_KEY"] == "key2-" + CANARY
    no_canary(caplog.text, *errors)


def test_close_stops_every_watch_and_refuses_further_use(dev: Path) -> None:
    client = Client(dev)
    handle = client.watch(interval=0.1)
    stopped_from_callback = threading.Event()

    def stop_self(names: frozenset[str], secrets: Secrets) -> None:
        other.stop()  # from the watcher's own thread: must not deadlock
        stopped_from_callback.set()

    other = client.watch(stop_self, interval=0.1)
    write_secrets(dev.parent, {**SECRETS, "api": "key3-" + CANARY})
    wait_for(stopped_from_callback.is_set, what="the callback to stop its own watch")
    client.close()
    assert handle._stopped.is_set()
    with pytest.raises(RuntimeError, match="closed"):
        client.get("dev://db#user")
    with pytest.raises(RuntimeError, match="closed"):
        client.load()


# -- OpenBao ------------------------------------------------------------------------------


def bao_manifest(tmp: Path, openbao: OpenBao, env: dict[str, str], address: str | None = None, extra: str = "") -> Path:
    (tmp / "token").write_text(openbao.token)
    doc = {"version": 1, "sources": {"bao": {"type": "vault", "address": address or openbao.addr,
                                             "auth": {"method": "token", "token_file": "./token"}}}, "env": env}
    path = tmp / "launcher.yaml"
    path.write_text(yaml.safe_dump(doc) + extra)
    return path


@pytest.mark.vault
def test_twenty_threads_fifty_gets_five_secrets_make_five_reads(openbao: OpenBao, tmp_path: Path) -> None:
    base = f"api/{openbao.unique()}"
    for i in range(5):
        write_kv2(openbao, f"{base}/s{i}", {"v": f"{i}-{CANARY}"})
    refs = [f"bao://secret/{base}/s{i}#v" for i in range(5)]
    barrier = threading.Barrier(20)
    wrong: list[str] = []
    with Client(bao_manifest(tmp_path, openbao, {})) as client:

        def worker() -> None:
            barrier.wait(10)
            for n in range(50):
                i = n % 5
                if client.get(refs[i]) != f"{i}-{CANARY}":
                    wrong.append(refs[i])

        threads = [threading.Thread(target=worker) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        stats = client.stats()
    assert wrong == []
    assert [openbao.reads_of(f"secret/data/{base}/s{i}") for i in range(5)] == [1] * 5
    assert stats["fetches"] == 5 and stats["hits"] + stats["misses"] == 1000 and stats["size"] == 5


@pytest.mark.vault
def test_watch_sees_a_kv2_rotation_within_three_seconds(openbao: OpenBao, tmp_path: Path) -> None:
    path = f"api/{openbao.unique()}"
    write_kv2(openbao, path, {"password": "one-" + CANARY})
    seen: list[Secrets] = []
    manifest = bao_manifest(tmp_path, openbao, {"DB_PASSWORD": f"bao://secret/{path}#password"})
    with Client(manifest) as client, client.watch(lambda names, s: seen.append(s), interval=1) as handle:
        assert handle.secrets.version("DB_PASSWORD") == "1"
        assert not client.has_rotated(f"bao://secret/{path}#password")
        version = write_kv2(openbao, path, {"password": "two-" + CANARY})
        started = time.monotonic()
        wait_for(lambda: seen, timeout=3, what="the rotation")
        assert time.monotonic() - started < 3
        assert seen[0]["DB_PASSWORD"] == "two-" + CANARY and seen[0].version("DB_PASSWORD") == str(version)
        assert handle.secrets.version("DB_PASSWORD") == str(version)


@pytest.mark.vault
def test_watch_renews_leases(openbao: OpenBao, tmp_path: Path) -> None:
    fake = FakeHTTP(status=201)  # the RabbitMQ management API the engine calls
    try:
        mount = openbao.unique("rabbitmq")
        client = openbao.client
        client.sys.enable_secrets_engine("rabbitmq", path=mount)
        client.adapter.post(f"/v1/{mount}/config/connection",
                            json={"connection_uri": fake.url, "username": "guest", "password": "guest", "verify_connection": False})
        client.adapter.post(f"/v1/{mount}/config/lease", json={"ttl": 3, "max_ttl": 600})
        client.adapter.post(f"/v1/{mount}/roles/app", json={"vhosts": '{"/": {"configure": ".*", "write": ".*", "read": ".*"}}'})
        env = {"MQ_USER": f"bao://{mount}/creds/app#username", "MQ_PASSWORD": f"bao://{mount}/creds/app#password"}
        renewals = openbao.requests_to("sys/leases/renew")
        changes: list[frozenset[str]] = []
        with Client(bao_manifest(tmp_path, openbao, env)) as api, api.watch(lambda names, s: changes.append(names)) as handle:
            user = handle.secrets["MQ_USER"]
            # 3 s leases are renewed at 2 s: two renewals within 6 s, and still the same user.
            wait_for(lambda: openbao.requests_to("sys/leases/renew") >= renewals + 2, timeout=8, what="two lease renewals")
            assert handle.secrets["MQ_USER"] == user and changes == []
    finally:
        fake.stop()


@pytest.mark.vault
def test_stop_returns_within_a_second_while_a_check_stalls(openbao: OpenBao, tmp_path: Path) -> None:
    path = f"api/{openbao.unique()}"
    write_kv2(openbao, path, {"k": "v-" + CANARY})
    port = int(openbao.addr.rsplit(":", 1)[1])
    with fault_proxy("127.0.0.1", port) as proxy:
        manifest = bao_manifest(tmp_path, openbao, {"K": f"bao://secret/{path}#k"}, address=proxy.addr,
                                extra="retry: {attempts: 1, deadline: 5s}\n")
        with Client(manifest) as client:
            handle = client.watch(interval=0.1)
            proxy.set_mode("stall")
            wait_for(lambda: proxy.requests["stall"] >= 1, what="a check to hang on the stalled server")
            started = time.monotonic()
            handle.stop()
            assert time.monotonic() - started < 1.0
            assert handle.secrets["K"] == "v-" + CANARY


@pytest.mark.vault
def test_asyncio_keeps_running_while_a_fetch_waits_on_a_slow_server(openbao: OpenBao, tmp_path: Path) -> None:
    path = f"api/{openbao.unique()}"
    write_kv2(openbao, path, {"k": "v-" + CANARY})
    port = int(openbao.addr.rsplit(":", 1)[1])
    with fault_proxy("127.0.0.1", port) as proxy:
        proxy.set_mode("latency", latency=1.0)  # each new connection's first answer comes 1 s late
        manifest = bao_manifest(tmp_path, openbao, {"K": f"bao://secret/{path}#k"}, address=proxy.addr)

        async def main() -> tuple[str, Secrets, int, float]:
            ticks = 0
            done = asyncio.Event()

            async def ticker() -> None:  # another task: it must keep running meanwhile
                nonlocal ticks
                while not done.is_set():
                    ticks += 1
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(ticker())
            started = time.monotonic()
            with Client(manifest) as client:
                value, secrets = await asyncio.gather(client.aget(f"bao://secret/{path}#k"), launcher.aload(manifest))
            elapsed = time.monotonic() - started
            done.set()
            await task
            return value, secrets, ticks, elapsed

        value, secrets, ticks, elapsed = asyncio.run(main())
    assert value == secrets["K"] == "v-" + CANARY
    assert elapsed >= 1.0
    assert ticks >= 25  # about 100 if the loop never blocked; a blocked loop would tick once or twice


# -- Azure Key Vault (emulator) -----------------------------------------------------------


def test_key_vault_get_has_rotated_and_watch(keyvault: KeyVaultEmulator, tmp_path: Path) -> None:
    keyvault.set_secret("api-key", "one-" + CANARY)
    (tmp_path / "client-secret").write_text(keyvault.client_secret)
    doc = {"version": 1, "sources": {"corp": keyvault.source(client_secret_file="./client-secret")},
           "env": {"API_KEY": "corp://api-key"}}
    (tmp_path / "launcher.yaml").write_text(yaml.safe_dump(doc))
    seen: list[Secrets] = []
    with Client(tmp_path / "launcher.yaml") as client:
        assert client.get("corp://api-key") == "one-" + CANARY
        assert client.has_rotated("corp://api-key") is False
        two = keyvault.set_secret("api-key", "two-" + CANARY)
        assert client.has_rotated("corp://api-key") is True
        assert client.get("corp://api-key") == "two-" + CANARY
        assert client.get(f"corp://api-key?version={two}") == "two-" + CANARY
        with client.watch(lambda names, s: seen.append(s), interval=0.2) as handle:
            assert handle.secrets.version("API_KEY") == two
            three = keyvault.set_secret("api-key", "three-" + CANARY)
            wait_for(lambda: seen, what="the Key Vault rotation")
            assert seen[0]["API_KEY"] == "three-" + CANARY and seen[0].version("API_KEY") == three


# -- the examples -------------------------------------------------------------------------

EXAMPLES = Path(__file__).parent.parent / "examples" / "python"


def test_the_example_script_runs_and_prints_no_value(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "python")
    proc = subprocess.run([sys.executable, str(tmp_path / "python" / "script.py")], capture_output=True, text=True,
                          env=launcher_env(), timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Secrets(names=['API_KEY', 'DATABASE_URL', 'DB_PASSWORD', 'LOG_LEVEL'])" in proc.stdout
    assert "s3cr3t" not in proc.stdout + proc.stderr and "dev-api-key" not in proc.stdout + proc.stderr


def test_the_example_service_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "python")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(tmp_path / "python" / "service.py"), str(port)], env=launcher_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def status() -> dict[str, Any] | None:
            try:
                return dict(requests.get(f"http://127.0.0.1:{port}/", timeout=1).json())
            except requests.ConnectionError:
                return None

        body = wait_for(status, timeout=20, what="the example service to answer")
        assert body["api_key_length"] == len("dev-api-key-1234") and body["pool_generation"] == 1
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert "s3cr3t" not in output and "dev-api-key" not in output
