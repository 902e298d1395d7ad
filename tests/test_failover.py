"""Failover (docs/operations/failover.md): a source that is unavailable is answered by its ``fallback``.

First the wrapper's decisions with scripted sources and a fake clock (routing, hold
and probe, leases, versions, the budget, the manifest rules); then the real thing:
two OpenBao servers holding the same KV data, with the primary killed, stalled or
taken down under ``launcher run --watch``, and two Key Vault emulators.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from launcher import deadline
from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError, TransientError, UnavailableError
from launcher.events import Event
from launcher.manifest import parse_manifest
from launcher.model.config import Binding, Manifest, RetryConfig, WatchConfig
from launcher.model.refs import Reference
from launcher.resolve.failover import FailoverSource
from launcher.resolve.resolver import Resolver
from launcher.resolve.watcher import Rotation, Watcher
from launcher.sources.base import Lease, Leasing, Secret, TokenHolding, Versioned
from launcher.sources.file import FileSourceConfig
from tests.fakes import ManualClock, ScriptedSource
from tests.helpers import Running, launcher_env, raise_failure, run_launcher
from tests.keyvault_emulator import KeyVaultEmulator
from tests.openbao import OpenBao, running_openbao, write_kv2
from tests.tcp_proxy import tcp_proxy

# -- scripted sources -------------------------------------------------------------


def secret(version: int, lease: str | None = None) -> Secret:
    """What a scripted backend answers for ``db``: the same value on both sides, its own version."""
    return Secret(value="same-value", version=str(version), lease=Lease(lease, 30.0, True) if lease else None)


def scripted(name: str, version: int = 1, down: bool = False) -> ScriptedSource:
    source = ScriptedSource(name, {"db": secret(version)})
    source.down = down
    return source


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[tuple[str, str | None, str | None]]:
        return [(e.kind, e.source, e.reason) for e in self.events if e.kind in ("failover", "recovery")]


RETRY = RetryConfig(attempts=3, initial_delay=1.0, deadline=10.0)


def pair(hold: float = 30.0) -> tuple[FailoverSource, ScriptedSource, ScriptedSource, ManualClock, Recorder]:
    primary, fallback, now, events = scripted("prod"), scripted("dr", version=7), ManualClock(draw=0.0), Recorder()
    source = FailoverSource(primary, fallback, hold=hold, retry=RETRY, clock=now.clock(), events=events)
    return source, primary, fallback, now, events


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "launcher.resolve.failover" and r.levelno == logging.WARNING]


# -- the wrapper's decisions --------------------------------------------------------


def test_an_unavailable_primary_is_answered_by_the_fallback_and_held_off(caplog: pytest.LogCaptureFixture) -> None:
    source, primary, fallback, now, events = pair()
    primary.down = True
    assert source.fetch("db", None).value == "same-value"
    assert primary.calls == ["fetch db"] * 3  # its own retry policy, within its half of the budget
    assert fallback.calls == ["fetch db"]
    now.advance(29.0)
    assert source.fetch("db", None).version == "7"
    assert primary.calls == ["fetch db"] * 3  # held off: not asked again
    (line,) = warnings_of(caplog)
    assert line.startswith("source prod is unavailable, failing over to dr (prod is tried again in 30s): prod://db: connection refused")
    assert events.kinds() == [("failover", "dr", "prod")]
    assert events.events[0].ref == "prod://db"


def test_after_the_hold_one_probe_decides(caplog: pytest.LogCaptureFixture) -> None:
    source, primary, fallback, now, events = pair(hold=5.0)
    primary.down = True
    source.fetch("db", None)
    now.advance(5.0)
    source.fetch("db", None)  # the probe: one attempt, failed; held off again, quietly
    assert primary.calls == ["fetch db"] * 4
    now.advance(4.0)
    source.fetch("db", None)
    assert len(primary.calls) == 4
    primary.down = False
    now.advance(1.0)
    assert source.fetch("db", None).version == "1"  # the probe answers: the primary is in use again
    source.fetch("db", None)
    assert len(primary.calls) == 6 and len(fallback.calls) == 3
    assert events.kinds() == [("failover", "dr", "prod"), ("recovery", "prod", None)]
    assert len(warnings_of(caplog)) == 2
    assert "source prod answers again; reads go back to it from dr" in warnings_of(caplog)[1]


def test_only_one_caller_probes_while_the_others_are_answered_by_the_fallback() -> None:
    source, primary, _fallback, now, _ = pair(hold=5.0)
    primary.down = True
    source.fetch("db", None)
    now.advance(5.0)
    primary.down = False
    entered, release = threading.Event(), threading.Event()
    real_fetch = primary.fetch

    def slow_fetch(path: str, version: str | None) -> Secret:
        entered.set()
        release.wait(5)
        return real_fetch(path, version)

    primary.fetch = slow_fetch  # type: ignore[method-assign]
    prober = threading.Thread(target=source.fetch, args=("db", None))
    prober.start()
    entered.wait(5)
    assert source.fetch("db", None).version == "7"  # meanwhile: the fallback
    release.set()
    prober.join(5)
    assert not source.failed_over


@pytest.mark.parametrize("error", [
    NotFoundError("prod://db: not found"), AuthError("prod://db: permission denied"), ManifestError("prod://db: bad request"),
], ids=["66", "77", "78"])
def test_missing_denied_and_invalid_never_fail_over(error: LauncherError) -> None:
    source, primary, fallback, _, events = pair()
    primary.error = error
    with pytest.raises(type(error)):
        source.fetch("db", None)
    with pytest.raises(type(error)):
        source.current_version("db")
    assert fallback.calls == [] and events.events == []


def test_both_unavailable_is_a_final_69_naming_both() -> None:
    source, primary, fallback, _, _ = pair()
    primary.down = fallback.down = True
    with pytest.raises(UnavailableError) as info:
        source.fetch("db", None)
    assert not isinstance(info.value, TransientError)  # final: the resolver does not retry it again
    assert info.value.exit_code == 69
    assert "prod://db: connection refused" in str(info.value) and "fallback dr: dr://db: connection refused" in str(info.value)
    with pytest.raises(UnavailableError, match="prod is held off after failing; fallback dr"):
        source.fetch("db", None)


def test_the_primary_gets_half_the_budget_and_the_fallback_the_rest() -> None:
    primary, fallback = scripted("prod", down=True), scripted("dr")
    source = FailoverSource(primary, fallback, hold=30.0, retry=RetryConfig(attempts=1, deadline=10.0))
    with deadline.bound(8.0):
        source.fetch("db", None)
    assert primary.budgets[0] is not None and 3.9 < primary.budgets[0] <= 4.0
    assert fallback.budgets[0] is not None and 7.5 < fallback.budgets[0] <= 8.0
    fallback.budgets.clear()
    source.fetch("db", None)  # outside any bound: retry.deadline; held off, so all of it
    assert fallback.budgets[0] is not None and 9.5 < fallback.budgets[0] <= 10.0


def test_a_lease_is_renewed_where_it_was_issued() -> None:
    source, primary, fallback, now, _ = pair(hold=1.0)
    primary.script = {"db": secret(1, lease="prod-lease")}
    fallback.script = {"db": secret(7, lease="dr-lease")}
    primary.down = True
    from_fallback = source.fetch("db", None).lease
    assert from_fallback is not None
    primary.down = False
    now.advance(1.0)
    from_primary = source.fetch("db", None).lease  # the probe: the primary is back
    assert from_primary is not None and not source.failed_over
    assert source.renew_lease(from_fallback) is not None
    assert source.renew_lease(from_primary) is not None
    assert fallback.renewals == [from_fallback.lease_id] and primary.renewals == [from_primary.lease_id]
    fallback.down = True  # a lease is never renewed anywhere else
    with pytest.raises(TransientError):
        source.renew_lease(from_fallback)
    assert primary.renewals == [from_primary.lease_id]


def test_a_check_answered_by_another_source_reports_a_version_never_seen() -> None:
    source, primary, _fallback, now, _ = pair(hold=1.0)
    primary.script = {"db": secret(7)}  # the same number on both, for a different reason: still not comparable
    assert source.fetch("db", None).version == "7"
    assert source.current_version("db") == "7"
    primary.down = True
    assert source.current_version("db") == "7@dr"  # re-read it: the supervisor compares the values
    assert source.fetch("db", None).version == "7"
    assert source.current_version("db") == "7"
    primary.down, primary.script = False, {"db": secret(9)}
    now.advance(1.0)
    assert source.current_version("db") == "9@prod"
    source.fetch("db", None)
    assert source.current_version("db") == "9"


def test_capabilities_and_close_are_delegated() -> None:
    source, primary, fallback, _, _ = pair()
    assert isinstance(source, Versioned) and isinstance(source, Leasing) and isinstance(source, TokenHolding)
    assert source.token_ttl() is None and source.maintain_token() is None  # neither has a token
    source.close()
    assert (primary.closed, fallback.closed) == (1, 0)  # the fallback is the resolver's, under its own name


# -- through the resolver and the watcher ------------------------------------------


def file_source(name: str, **settings: Any) -> FileSourceConfig:
    return FileSourceConfig(name=name, path="/dev/null", **settings)


def test_the_resolver_wraps_a_source_that_has_a_fallback() -> None:
    primary, fallback = scripted("prod", down=True), scripted("dr")
    manifest = Manifest(sources={"prod": file_source("prod", fallback="dr"), "dr": file_source("dr")},
                        env=(Binding("DB", (Reference("prod", "db"),)),), retry=RetryConfig(attempts=1))
    resolver = Resolver(manifest, source_factory=lambda cfg: {"prod": primary, "dr": fallback}[cfg.name])
    assert isinstance(resolver.source("prod"), FailoverSource) and resolver.source("dr") is fallback
    resolution = resolver.resolve({})
    raise_failure(resolution)
    assert resolution.values == {"DB": "same-value"}
    resolver.close()
    assert (primary.closed, fallback.closed) == (1, 1)


def test_a_cycle_in_a_manifest_built_in_code_is_78_not_a_hang() -> None:
    manifest = Manifest(sources={"a": file_source("a", fallback="b"), "b": file_source("b", fallback="a")})
    resolver = Resolver(manifest, source_factory=lambda cfg: scripted(cfg.name))
    with pytest.raises(ManifestError, match=r"sources.a.fallback: fallback cycle: a -> b -> a"):
        resolver.source("a")


def test_the_watcher_re_reads_once_per_change_of_source_and_never_loops() -> None:
    primary, fallback, now = scripted("prod", version=3), scripted("dr", version=1), ManualClock(draw=0.0)
    manifest = Manifest(sources={"prod": file_source("prod", fallback="dr", fallback_hold=5.0), "dr": file_source("dr")},
                        env=(Binding("DB", (Reference("prod", "db"),)),), retry=RetryConfig(attempts=1),
                        watch=WatchConfig(enabled=True, interval=1.0))
    resolver = Resolver(manifest, source_factory=lambda cfg: {"prod": primary, "dr": fallback}[cfg.name],
                        clock=now.clock(), max_workers=1)
    posted: list[object] = []
    watcher = Watcher(manifest, resolver, {}, posted.append, clock=now.clock())
    watcher.track(resolver.resolve({}))

    def rounds(n: int) -> None:
        for _ in range(n):
            now.advance(1.0)
            watcher.poll()

    primary.down = True
    rounds(12)  # the hold passes twice: failed probes change nothing
    reads = [c for c in fallback.calls if c.startswith("fetch")]
    assert reads == ["fetch db"]  # one re-read when the answering source changed
    (rotation,) = posted
    assert isinstance(rotation, Rotation) and rotation.resolution.values == {"DB": "same-value"}
    primary.down = False
    rounds(12)
    assert [c for c in primary.calls if c.startswith("fetch")] == ["fetch db", "fetch db"]  # start-up, and back once
    assert len(posted) == 2 and all(isinstance(p, Rotation) and p.resolution.values == {"DB": "same-value"} for p in posted)


# -- the manifest -------------------------------------------------------------------


def parse(text: str) -> Manifest:
    return parse_manifest(text, "/etc/app/launcher.yaml", {})


def problems(text: str) -> list[str]:
    with pytest.raises(ManifestError) as info:
        parse(text)
    return [str(e) for e in (info.value, *info.value.more)]


def test_every_type_takes_fallback_and_fallback_hold() -> None:
    manifest = parse(
        "version: 1\nsources:\n"
        "  a: {type: vault, address: 'http://a:8200', fallback: b, fallback_hold: 1m}\n"
        "  b: {type: vault, address: 'http://b:8200', fallback: c}\n"
        "  c: {type: vault, address: 'http://c:8200'}\n"
        "  k1: {type: azure, vault_url: 'https://k1.vault.azure.net/', fallback: k2}\n"
        "  k2: {type: azure, vault_url: 'https://k2.vault.azure.net/'}\n"
        "  f1: {type: file, path: ./one.yaml, fallback: f2}\n"
        "  f2: {type: file, path: ./two.yaml}\n"
    )
    assert (manifest.sources["a"].fallback, manifest.sources["a"].fallback_hold) == ("b", 60.0)
    assert (manifest.sources["b"].fallback, manifest.sources["b"].fallback_hold) == ("c", 30.0)
    assert manifest.sources["c"].fallback is None
    assert manifest.sources["k1"].fallback == "k2" and manifest.sources["f1"].fallback == "f2"


def test_fallback_problems_are_78_with_file_and_line() -> None:
    found = problems(
        "version: 1\nsources:\n"
        "  a: {type: file, path: ./a.yaml, fallback: b}\n"
        "  b: {type: file, path: ./b.yaml, fallback: c}\n"
        "  c: {type: file, path: ./c.yaml, fallback: a}\n"
        "  d: {type: file, path: ./d.yaml, fallback: nowhere}\n"
        "  e: {type: file, path: ./e.yaml, fallback: e}\n"
        "  f: {type: vault, address: 'http://f:8200', fallback: a}\n"
        "  g: {type: file, path: ./g.yaml, fallback: vault}\n"
    )
    assert found == [
        "/etc/app/launcher.yaml:3: sources.a.fallback: fallback cycle: a -> b -> c -> a",
        "/etc/app/launcher.yaml:6: sources.d.fallback: unknown source 'nowhere': a fallback is a declared source "
        "(declared: a, b, c, d, e, f, g)",
        "/etc/app/launcher.yaml:7: sources.e.fallback: fallback cycle: e -> e",
        "/etc/app/launcher.yaml:8: sources.f.fallback: 'a' is type file and 'f' type vault: "
        "a fallback holds the same paths, so it is a source of the same type",
        "/etc/app/launcher.yaml:9: sources.g.fallback: unknown source 'vault': a fallback is a declared source "
        "(declared: a, b, c, d, e, f, g)",
    ]


def test_fallback_hold_is_a_duration() -> None:
    assert problems("version: 1\nsources:\n  a: {type: file, path: ./a.yaml, fallback_hold: soon}\n") == [
        "/etc/app/launcher.yaml:3: sources.a.fallback_hold: invalid duration 'soon' (examples: 500ms, 30s, 5m, 1h30m, 10)",
    ]


def test_the_documented_examples_parse() -> None:
    page = (Path(__file__).parent.parent / "docs" / "operations" / "failover.md").read_text()
    examples = [block.split("```", 1)[0] for block in page.split("```yaml\n")[1:]]
    assert len(examples) == 2
    for example in examples:
        manifest = parse(example)
        first, second = manifest.sources.values()
        assert first.fallback == second.name and second.fallback is None


# -- two real OpenBao servers ---------------------------------------------------------


@pytest.fixture(scope="module")
def secondary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    """A second ``bao server -dev`` (the DR or secondary-region server), for this module."""
    with running_openbao(tmp_path_factory.mktemp("openbao-secondary")) as server:
        yield server


def write_both(primary: OpenBao, secondary: OpenBao, path: str, data: dict[str, Any]) -> None:
    write_kv2(primary, path, data)
    write_kv2(secondary, path, data)


def vault_manifest(tmp: Path, primary_addr: str, primary: OpenBao, secondary: OpenBao, env: dict[str, str],
                   retry: dict[str, Any] | None = None, watch: dict[str, Any] | None = None) -> Path:
    (tmp / "prod.token").write_text(primary.token)
    (tmp / "dr.token").write_text(secondary.token)
    doc: dict[str, Any] = {
        "version": 1,
        "sources": {
            "prod": {"type": "vault", "address": primary_addr, "auth": {"method": "token", "token_file": "./prod.token"},
                     "fallback": "dr", "fallback_hold": "1s"},
            "dr": {"type": "vault", "address": secondary.addr, "auth": {"method": "token", "token_file": "./dr.token"}},
        },
        "env": env,
        "retry": retry or {"attempts": 3, "initial_delay": "100ms", "max_delay": "500ms", "deadline": "6s"},
        "process": {"stop_timeout": "2s"},
    }
    if watch is not None:
        doc["watch"] = {"enabled": True, **watch}
    path = tmp / "launcher.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


PRINT = [sys.executable, "-c", "import os, sys; sys.stdout.write(os.environ['DB_PASSWORD'])"]


def exec_timed(manifest: Path, tmp: Path) -> tuple[Any, float]:
    started = time.monotonic()
    proc = run_launcher(["exec", "-m", str(manifest), "--", *PRINT], env=launcher_env({"HOME": str(tmp)}))
    return proc, time.monotonic() - started


def test_exec_with_the_primary_killed_reads_from_the_secondary(openbao: OpenBao, secondary: OpenBao, tmp_path: Path) -> None:
    path = f"fo/{secondary.unique()}"
    with running_openbao(tmp_path / "primary", audit=False) as primary:
        write_both(primary, secondary, path, {"password": "kv-canary-41c7"})
        addr = primary.addr
    # The primary is gone now: nothing listens at its address.
    manifest = vault_manifest(tmp_path, addr, primary, secondary, {"DB_PASSWORD": f"prod://secret/{path}#password"})
    proc, elapsed = exec_timed(manifest, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "kv-canary-41c7"
    assert elapsed < 6.0  # within retry.deadline
    assert proc.stderr.count("failing over to dr") == 1 and "kv-canary" not in proc.stderr
    assert secondary.reads_of(f"secret/data/{path}") == 1


def test_a_stalled_primary_fails_over_within_the_deadline(openbao: OpenBao, secondary: OpenBao, tmp_path: Path) -> None:
    from tests.fault_proxy import fault_proxy

    path = f"fo/{secondary.unique()}"
    write_both(openbao, secondary, path, {"password": "stall-canary-9e2d"})
    port = int(openbao.addr.rsplit(":", 1)[1])
    with fault_proxy("127.0.0.1", port, "stall") as proxy:
        manifest = vault_manifest(tmp_path, proxy.addr, openbao, secondary, {"DB_PASSWORD": f"prod://secret/{path}#password"},
                                  retry={"attempts": 3, "initial_delay": "100ms", "deadline": "4s"})
        proc, elapsed = exec_timed(manifest, tmp_path)
        assert proxy.requests["stall"] >= 1
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "stall-canary-9e2d"
    assert elapsed < 4.0 + 1.0  # the primary's half (2s) timed out, then the secondary answered
    assert "no answer within the time left" in proc.stderr and "failing over to dr" in proc.stderr and "stall-canary" not in proc.stderr


def test_a_secret_missing_on_the_primary_does_not_fail_over(openbao: OpenBao, secondary: OpenBao, tmp_path: Path) -> None:
    path = f"fo/{secondary.unique()}"
    write_kv2(secondary, path, {"password": "only-on-the-secondary"})
    manifest = vault_manifest(tmp_path, openbao.addr, openbao, secondary, {"DB_PASSWORD": f"prod://secret/{path}#password"})
    proc, _ = exec_timed(manifest, tmp_path)
    assert proc.returncode == 66, proc.stderr
    assert "failing over" not in proc.stderr and proc.stdout == ""
    assert secondary.reads_of(f"secret/data/{path}") == 0


def test_a_fallback_cycle_is_78(tmp_path: Path) -> None:
    (tmp_path / "launcher.yaml").write_text(
        "version: 1\nsources:\n"
        "  prod: {type: vault, address: 'http://127.0.0.1:1', fallback: dr}\n"
        "  dr: {type: vault, address: 'http://127.0.0.1:2', fallback: prod}\n"
        "env:\n  A: prod://secret/a#b\n"
    )
    proc = run_launcher(["check", "--offline", "-m", str(tmp_path / "launcher.yaml")])
    assert proc.returncode == 78
    assert "launcher.yaml:3: sources.prod.fallback: fallback cycle: prod -> dr -> prod" in proc.stderr


def vault_run(tmp: Path, manifest: Path, names: list[str]) -> Running:
    """``launcher run --watch`` of record_env.py against the two servers."""
    return Running(tmp, manifest, names, env={"HOME": str(tmp)})


WATCH = {"interval": "200ms", "debounce": "0s"}
RUN_RETRY = {"attempts": 2, "initial_delay": "100ms", "deadline": "4s"}


def test_run_watch_rides_out_a_primary_outage(openbao: OpenBao, secondary: OpenBao, tmp_path: Path) -> None:
    path = f"fo/{secondary.unique()}"
    ref = f"prod://secret/{path}"
    write_both(openbao, secondary, path, {"password": "first-canary-5b1"})
    port = int(openbao.addr.rsplit(":", 1)[1])
    with tcp_proxy("127.0.0.1", port) as proxy:
        manifest = vault_manifest(tmp_path, proxy.addr, openbao, secondary, {"DB_PASSWORD": f"{ref}#password"},
                                  retry=RUN_RETRY, watch=WATCH)
        with vault_run(tmp_path, manifest, ["DB_PASSWORD"]) as run:
            assert run.wait_events("start", 1)[0]["env"] == {"DB_PASSWORD": "first-canary-5b1"}
            proxy.down()
            run.wait_audit("failover", source="dr")
            run.wait_more_checks(ref, 5)
            assert len(run.events("start")) == 1  # the child keeps running
            write_kv2(secondary, path, {"password": "second-canary-77d"})  # a rotation on the secondary
            assert run.wait_events("start", 2)[1]["env"] == {"DB_PASSWORD": "second-canary-77d"}
            write_kv2(openbao, path, {"password": "second-canary-77d"})  # replicated while the primary was away
            proxy.back_up()
            run.wait_audit("recovery", source="prod")
            run.wait_more_checks(ref, 5)
            log = run.log()
            assert len(run.events("start")) == 2
            assert log.count("failing over to dr") == 1 and log.count("answers again") == 1
            assert "canary" not in log
            assert run.stop() == 0


def test_the_same_value_under_other_version_numbers_restarts_nothing(openbao: OpenBao, secondary: OpenBao, tmp_path: Path) -> None:
    path = f"fo/{secondary.unique()}"
    ref = f"prod://secret/{path}"
    for value in ("old-1", "old-2", "same-canary-c4e"):
        write_kv2(openbao, path, {"password": value})  # version 3 on the primary
    write_kv2(secondary, path, {"password": "same-canary-c4e"})  # version 1 on the secondary
    port = int(openbao.addr.rsplit(":", 1)[1])
    with tcp_proxy("127.0.0.1", port) as proxy:
        manifest = vault_manifest(tmp_path, proxy.addr, openbao, secondary, {"DB_PASSWORD": f"{ref}#password"},
                                  retry=RUN_RETRY, watch=WATCH)
        with vault_run(tmp_path, manifest, ["DB_PASSWORD"]) as run:
            run.wait_events("start", 1)
            proxy.down()
            run.wait_audit("failover", source="dr")
            run.wait_more_checks(ref, 10)
            assert secondary.reads_of(f"secret/data/{path}") == 1  # one re-read, compared by value; no loop
            proxy.back_up()
            run.wait_audit("recovery", source="prod")
            run.wait_more_checks(ref, 10)
            log = run.log()
            assert log.count(f"[launcher.resolve.watcher] checked {ref}: new version") == 2  # away and back: one re-read each
            assert log.count("new version, same environment: nothing to do") == 2
            assert len(run.events("start")) == 1
            assert "secrets changed" not in log and "canary" not in log
            assert run.stop() == 0


# -- two Key Vault emulators -----------------------------------------------------------


def test_azure_a_second_vault_answers_when_the_first_is_unavailable(
    keyvault: KeyVaultEmulator, keyvault_tls: Any, tmp_path: Path,
) -> None:
    second = KeyVaultEmulator(*keyvault_tls)
    second.start()
    try:
        keyvault.set_secret("api-key", "azure-canary-3f0")
        second.set_secret("api-key", "azure-canary-3f0")
        keyvault.fail_next(1000, 503)  # the first region is down
        doc = {
            "version": 1,
            "sources": {"east": {**keyvault.source(), "fallback": "west"}, "west": second.source()},
            "env": {"DB_PASSWORD": "east://api-key"},
            "retry": {"attempts": 2, "initial_delay": "100ms", "deadline": "6s"},
        }
        (tmp_path / "launcher.yaml").write_text(yaml.safe_dump(doc))
        started = time.monotonic()
        proc = run_launcher(["exec", "-m", str(tmp_path / "launcher.yaml"), "--", *PRINT],
                            env=launcher_env({**keyvault.env(), "HOME": str(tmp_path)}))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "azure-canary-3f0"
        assert time.monotonic() - started < 6.0
        assert [r.status for r in keyvault.requests if r.scope == "vault"] == [503, 503]  # its two attempts
        assert [r.status for r in second.requests if r.scope == "vault"] == [401, 200]  # the challenge, then the read
        assert "failing over to west" in proc.stderr and "azure-canary" not in proc.stderr
    finally:
        second.stop()
