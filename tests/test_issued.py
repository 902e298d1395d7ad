"""Issued secrets as logic, with fakes: the watcher's schedule for a certificate, the cache, one write per
reference-without-key, the metrics and ``/healthz``, ``check``'s EXPIRES column, binary plaintext.

(Against a real OpenBao: test_vault_pki.py and test_vault_pki_watch.py.)
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping

import pytest

from launcher.clock import Clock
from launcher.errors import ManifestError, TransientError
from launcher.events import Event
from launcher.model.config import Binding, Manifest, RetryConfig, WatchConfig
from launcher.model.refs import FetchKey, Reference, parse_reference
from launcher.observe.metrics import Metrics
from launcher.output import check_json, check_table
from launcher.resolve.bindings import BindingResult, evaluate
from launcher.resolve.cache import TTLCache
from launcher.resolve.resolver import Resolver
from launcher.resolve.schedule import next_check
from launcher.resolve.watcher import Outage, Rotation, Watcher
from launcher.sources.base import Secret, Writing
from launcher.sources.catalog import reference_problem
from launcher.sources.file import FileSourceConfig
from tests.fakes import ManualClock, ScriptedSource
from tests.helpers import raise_failure, wait_for

DATA = (("common_name", "app.internal"), ("ttl", "90s"))
KEY = FetchKey("fake", "pki/issue/web", None, DATA)


class IssuingSource(ScriptedSource):
    """A scripted source that issues: each write is a new certificate living ``lifetime`` seconds (fake time)."""

    def __init__(self, clock: ManualClock, lifetime: float = 90.0) -> None:
        super().__init__("fake")
        self.clock, self.lifetime = clock, lifetime
        self.writes: list[tuple[str, dict[str, str]]] = []
        self.failing = False

    def write(self, path: str, data: Mapping[str, str]) -> Secret:
        with self.lock:
            self.writes.append((path, dict(data)))
            serial = f"serial-{len(self.writes)}"
        if self.failing:
            raise TransientError(f"fake://{path}: connection refused")
        if "/decrypt/" in path:
            return Secret(fields={"plaintext": f"plain-{len(self.writes)}"})
        return Secret(fields={"certificate": f"cert-{serial}", "private_key": f"key-{serial}", "serial_number": serial},
                      version=serial, expires_at=self.clock.now + self.lifetime)


def manifest(**watch: object) -> Manifest:
    ref = lambda key: (Reference("fake", "pki/issue/web", key, None, DATA),)  # noqa: E731
    return Manifest(sources={"fake": FileSourceConfig(name="fake", path="/dev/null")},
                    env=(Binding("CERT", ref("certificate"), file=True), Binding("KEY", ref("private_key"), file=True),
                         Binding("SERIAL", ref("serial_number"))),
                    watch=WatchConfig(enabled=True, **watch),  # type: ignore[arg-type]
                    retry=RetryConfig(attempts=1))  # one attempt per round: the watcher's own schedule is under test


def make(clock: ManualClock, source: IssuingSource, **watch: object) -> tuple[Resolver, Watcher, list[object]]:
    m = manifest(**watch)
    # One time for all: the fake clock is both monotonic and wall-clock time here.
    seam = Clock(monotonic=clock.monotonic, random=lambda: 0.5, sleep=clock.sleep, wall=clock.monotonic)
    resolver = Resolver(m, source_factory=lambda cfg: source, max_workers=1, clock=seam)
    posted: list[object] = []
    watcher = Watcher(m, resolver, {}, posted.append, clock=seam)
    resolution = resolver.resolve({})
    raise_failure(resolution)
    watcher.track(resolution)
    return resolver, watcher, posted


def test_one_write_for_every_binding_of_a_reference() -> None:
    clock = ManualClock()
    source = IssuingSource(clock)
    resolver, _, _ = make(clock, source)
    assert source.writes == [("pki/issue/web", {"common_name": "app.internal", "ttl": "90s"})]
    assert source.fetches == [] and source.checks == []
    resolution = resolver.resolve({})  # from the cache: far from 2/3 of the lifetime
    assert len(source.writes) == 1 and resolution.values["SERIAL"] == "serial-1"


def test_the_certificate_is_issued_again_at_two_thirds_of_its_life_and_posted_at_once() -> None:
    clock = ManualClock()
    source = IssuingSource(clock, lifetime=90.0)
    _, watcher, posted = make(clock, source, interval=10.0)
    start = clock.now
    assert watcher.poll() == pytest.approx(start + 1.0)  # only the token tick before the renewal is due
    tracked = watcher.tracked[KEY]
    assert watcher.due(tracked) == pytest.approx(start + 60.0)
    clock.now = start + 59.0
    watcher.poll()
    assert len(source.writes) == 1 and source.checks == []  # never a version check, never a re-read at cache.ttl
    clock.now = start + 60.0
    watcher.poll()
    assert len(source.writes) == 2
    (event,) = posted
    assert isinstance(event, Rotation) and event.urgent and event.keys == (KEY,)
    assert event.resolution.values["SERIAL"] == "serial-2"
    assert watcher.due(watcher.tracked[KEY]) == pytest.approx(clock.now + 60.0)


def test_a_failed_issue_is_retried_until_it_works_and_warned_about_each_time(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    source = IssuingSource(clock, lifetime=90.0)
    resolver, watcher, posted = make(clock, source, interval=10.0)
    start = clock.now
    source.failing = True
    clock.now = start + 60.0
    with caplog.at_level(logging.WARNING):
        watcher.poll()  # 30 s left: next attempt in min(interval, 30/3) = 10 s
        t = watcher.tracked[KEY]
        assert t.renew_at == pytest.approx(clock.now + 10.0)
        assert isinstance(posted[-1], Outage)
        clock.now = start + 85.0
        watcher.poll()  # 5 s left: a third of it, but at least 1 s apart
        assert t.renew_at == pytest.approx(clock.now + 1.67, abs=0.01)
        clock.now = start + 95.0
        watcher.poll()  # expired: every interval from now on
        assert t.renew_at == pytest.approx(clock.now + 10.0)
    warnings = [r.getMessage() for r in caplog.records if "could not issue a new certificate" in r.getMessage()]
    assert len(warnings) == 3
    assert "which expires in 30s" in warnings[0] and "expired 5s ago" in warnings[2]
    attempts = len(source.writes)
    source.failing = False
    clock.now = start + 105.0
    watcher.poll()
    assert len(source.writes) == attempts + 1
    assert isinstance(posted[-1], Rotation) and posted[-1].resolution.values["SERIAL"] == f"serial-{attempts + 1}"
    assert "fake" not in watcher._down  # recovered: the source is no longer failing
    assert resolver.cache.get(KEY) is not None


def test_the_cache_keeps_an_issued_secret_until_its_renewal_whatever_the_ttl() -> None:
    clock = ManualClock()
    cache: TTLCache[str, str] = TTLCache(ttl=100.0, max_entries=10, clock=clock.clock())
    cache.put("cert", "a", lifetime=300.0)
    cache.put("plain", "b")
    clock.now += 150
    assert cache.get("cert") == "a" and cache.get("plain") is None
    clock.now += 150
    assert cache.get("cert") is None
    off: TTLCache[str, str] = TTLCache(ttl=0, max_entries=10, clock=clock.clock())
    off.put("cert", "a", lifetime=300.0)  # a cache turned off stores nothing, issued or not
    assert off.get("cert") is None


def test_concurrent_gets_of_one_reference_share_one_write() -> None:
    clock = ManualClock()
    source = IssuingSource(clock)
    gate = threading.Event()
    original = source.write

    def slow(path: str, data: Mapping[str, str]) -> Secret:
        gate.wait(5)
        return original(path, data)

    source.write = slow  # type: ignore[method-assign]
    resolver = Resolver(manifest(), source_factory=lambda cfg: source, max_workers=4)
    refs = [parse_reference(f"fake://pki/issue/web?ttl=90s&common_name=app.internal#{k}", {"fake"})
            for k in ("certificate", "private_key", "serial_number")]
    results: list[str] = []
    threads = [threading.Thread(target=lambda r=r: results.append(resolver.fetch(r.fetch_key).version or "")) for r in refs]
    for thread in threads:
        thread.start()
    # All three in flight before the write answers: a late one would be a cache hit, not a shared write.
    wait_for(lambda: resolver.cache.stats.misses == 3, what="three gets to miss the cache")
    gate.set()
    for thread in threads:
        thread.join(5)
    assert len(source.writes) == 1 and results == ["serial-1"] * 3


def test_a_source_that_cannot_write_refuses_request_data() -> None:
    m = Manifest(sources={"dev": FileSourceConfig(name="dev", path="/dev/null")})
    problem = reference_problem(m, parse_reference("dev://x?common_name=a", {"dev"}))
    assert problem is not None and "only ?version=V is allowed" in problem and "common_name" in problem
    assert reference_problem(m, parse_reference("dev://x?version=2", {"dev"})) != problem
    assert not isinstance(ScriptedSource(), Writing)


def test_next_check_for_certificates_and_decryptions() -> None:
    wall = 2_000_000_000.0
    cert = Secret(fields={}, version="s", expires_at=wall + 90)
    watch = WatchConfig(enabled=True, interval=60.0)
    assert next_check((KEY,), {KEY: cert}, watch, wall=wall) == "renew~60s"
    decrypt = FetchKey("fake", "transit/decrypt/k", None, (("ciphertext", "vault:v1:x"),))
    assert next_check((decrypt,), {decrypt: Secret(fields={"plaintext": "p"})}, watch, wall=wall) == "-"


# -- what users see -------------------------------------------------------------------------------


def test_check_shows_expires_only_where_a_certificate_is_used() -> None:
    plain = BindingResult("A", "vault://secret/x#y", "ok", "3")
    cert = BindingResult("TLS_CERT", "vault://pki/issue/web?common_name=a.internal#certificate", "ok", "1d:78", expires_at=0.0)
    assert "EXPIRES" not in check_table([plain])
    header, first, second = check_table([plain, cert]).splitlines()
    assert header.split() == ["NAME", "REF", "VERSION", "STATUS", "EXPIRES"]
    assert first.split()[-1] == "-" and second.split()[-1] == "1970-01-01T00:00:00Z"
    import json

    bindings = json.loads(check_json([plain, cert], manifest=None, exit_code=0))["bindings"]
    assert "expires" not in bindings[0] and bindings[1]["expires"] == "1970-01-01T00:00:00Z"


def test_metrics_count_issues_and_renewals_and_healthz_goes_stale_at_expiry() -> None:
    now = [1000.0]
    metrics = Metrics(wall=lambda: now[0])
    metrics.emit(Event("child_started", child_pid=42))
    assert "expired_certificates" not in metrics.health()[1]  # no certificate in use: the body is as before
    ref = str(KEY)
    metrics.emit(Event("cert_issue", source="fake", ref=ref, version="s1", expires_at=1090.0))
    assert metrics.health() == (200, {**metrics.health()[1], "status": "ok", "expired_certificates": []})
    now[0] = 1090.0
    status, body = metrics.health()
    assert status == 200 and body["status"] == "stale" and body["expired_certificates"] == [ref]
    metrics.emit(Event("cert_renew", source="fake", ref=ref, version="s2", expires_at=1180.0))
    assert metrics.health()[1]["status"] == "ok"
    samples = {(f.name, tuple(s.labels.items())): s.value for f in metrics.collect() for s in f.samples}
    assert samples[("launcher_certificate_issues", (("source", "fake"),))] == 1
    assert samples[("launcher_certificate_renewals", (("source", "fake"),))] == 1
    assert samples[("launcher_certificate_expiry_timestamp_seconds", (("ref", ref),))] == 1180.0
    assert samples[("launcher_certificate_next_expiry_timestamp_seconds", ())] == 1180.0


def test_bytes_that_are_not_utf8_need_a_file() -> None:
    ref = Reference("fake", "transit/decrypt/k", "plaintext", None, (("ciphertext", "vault:v1:x"),))
    raw = b"\xff\xfe binary".decode("utf-8", "surrogateescape")
    outcomes: dict[FetchKey, Secret | ManifestError] = {ref.fetch_key: Secret(fields={"plaintext": raw})}
    as_variable = evaluate(Binding("BLOB", (ref,), where="m.yaml:3"), outcomes)  # type: ignore[arg-type]
    assert as_variable.status == "invalid" and as_variable.error is not None
    assert str(as_variable.error) == ("m.yaml:3: env.BLOB: the value is not UTF-8 text, which an environment variable cannot hold; "
                                      "use `file: true` (the file holds the exact bytes)")
    as_file = evaluate(Binding("BLOB", (ref,), file=True, where="m.yaml:3"), outcomes)  # type: ignore[arg-type]
    assert as_file.status == "ok" and as_file.value == raw


def test_a_write_fails_over_like_a_read() -> None:
    from launcher.resolve.failover import FailoverSource

    clock = ManualClock()
    primary, fallback = IssuingSource(clock), IssuingSource(clock)
    primary.failing = True
    source = FailoverSource(primary, fallback, hold=30.0, retry=RetryConfig(attempts=1, deadline=10.0), clock=clock.clock())
    secret = source.write("pki/issue/web", dict(DATA))
    assert secret.version == "serial-1" and len(primary.writes) == 1 and len(fallback.writes) == 1
    assert fallback.writes == [("pki/issue/web", dict(DATA))]


def test_the_python_api_never_version_checks_a_write() -> None:
    import launcher

    clock = ManualClock()
    source = IssuingSource(clock)
    from launcher.sources.vault import VaultSourceConfig

    # A vault-typed source (whose references may carry request data), answered by the fake.
    vault_typed = dataclasses.replace(manifest(), sources={"fake": VaultSourceConfig(name="fake", address="http://127.0.0.1:1")})
    with launcher.Client(vault_typed, environ={}, source_factory=lambda cfg: source) as client:
        ref = "fake://pki/issue/web?common_name=app.internal&ttl=90s#certificate"
        assert client.get(ref) == "cert-serial-1"
        assert client.has_rotated(ref) is False
    assert len(source.writes) == 1 and source.checks == []


def test_a_decryption_is_never_checked_and_done_again_only_after_the_cache_ttl() -> None:
    clock = ManualClock()
    source = IssuingSource(clock)
    ref = Reference("fake", "transit/decrypt/app", "plaintext", None, (("ciphertext", "vault:v1:x"),))
    m = Manifest(sources={"fake": FileSourceConfig(name="fake", path="/dev/null")}, env=(Binding("PLAIN", (ref,)),),
                 watch=WatchConfig(enabled=True, interval=10.0), retry=RetryConfig(attempts=1))
    m = dataclasses.replace(m, cache=dataclasses.replace(m.cache, ttl=100.0))
    seam = Clock(monotonic=clock.monotonic, random=lambda: 0.5, sleep=clock.sleep, wall=clock.monotonic)
    resolver = Resolver(m, source_factory=lambda cfg: source, max_workers=1, clock=seam)
    events: list[Event] = []
    watcher = Watcher(m, resolver, {}, lambda e: None, clock=seam, events=type("Sink", (), {"emit": lambda _, e: events.append(e)})())
    resolution = resolver.resolve({})
    raise_failure(resolution)
    watcher.track(resolution)
    for _ in range(9):
        clock.now += 10.0
        watcher.poll()
    assert len(source.writes) == 1 and source.checks == [] and not [e for e in events if e.kind == "check"]
    clock.now += 10.0
    watcher.poll()  # 100 s: cache.ttl
    assert len(source.writes) == 2
