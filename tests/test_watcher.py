"""The watcher's schedule, with fakes and a fake clock (the choice of action: test_policy.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from launcher.clock import Clock
from launcher.model.config import Binding, Manifest, WatchConfig
from launcher.model.refs import Reference
from launcher.resolve.resolver import Resolver
from launcher.resolve.watcher import Outage, Rotation, Watcher
from launcher.sources.base import Lease, Secret
from launcher.sources.file import FileSourceConfig
from tests.fakes import ManualClock, ScriptedSource
from tests.helpers import raise_failure


@dataclass
class Backend:
    """What the scripted backend holds: a version per path (``creds`` is leased), and what a renewal grants."""

    versions: dict[str, int] = field(default_factory=lambda: {"a": 1, "b": 1, "creds": 1})
    renew_to: float | None = 30.0

    def answer(self, path: str) -> Secret:
        v = self.versions[path]
        if path == "creds":
            return Secret(fields={"user": f"u{v}", "password": f"p{v}"}, lease=Lease(f"lease-{v}", 30.0, True))
        return Secret(value=f"{path}{v}", version=str(v))

    def source(self) -> ScriptedSource:
        return ScriptedSource("fake", self.answer, versions=lambda path: None if path == "creds" else str(self.versions[path]),
                              renew=lambda lease: None if self.renew_to is None else Lease(lease.lease_id, self.renew_to, True))


def fetched(source: ScriptedSource) -> list[str]:
    return [path for path, _ in source.fetches]


def make(source: ScriptedSource, clock: ManualClock, **watch: object) -> tuple[Watcher, list[object]]:
    ref = lambda path, key=None: (Reference("fake", path, key),)  # noqa: E731
    manifest = Manifest(
        sources={"fake": FileSourceConfig(name="fake", path="/dev/null")},
        env=(Binding("A", ref("a")), Binding("A2", ref("a")), Binding("B", ref("b")),
             Binding("USER", ref("creds", "user")), Binding("PASS", ref("creds", "password"))),
        watch=WatchConfig(enabled=True, **watch),  # type: ignore[arg-type]
    )
    resolver = Resolver(manifest, source_factory=lambda cfg: source, max_workers=1)
    posted: list[object] = []
    watcher = Watcher(manifest, resolver, {}, posted.append, clock=Clock(clock.monotonic, lambda: 0.5))
    resolution = resolver.resolve({})
    raise_failure(resolution)
    watcher.track(resolution)
    return watcher, posted


def test_one_check_per_distinct_path_per_interval() -> None:
    backend, clock = Backend(), ManualClock()
    source = backend.source()
    watcher, posted = make(source, clock, interval=10.0)
    assert watcher.poll() == pytest.approx(clock.now + 1.0)  # token maintenance tick
    clock.now += 10.0
    watcher.poll()
    assert sorted(source.checks) == ["a", "b"]  # A and A2 share one check; creds is leased
    assert posted == []


def test_a_new_version_re_reads_only_that_path_and_posts_a_rotation() -> None:
    backend, clock = Backend(), ManualClock()
    source = backend.source()
    watcher, posted = make(source, clock, interval=10.0)
    source.fetches.clear()
    backend.versions["a"] = 2
    clock.now += 10.0
    watcher.poll()
    assert fetched(source) == ["a"]
    (event,) = posted
    assert isinstance(event, Rotation)
    assert event.resolution.values["A"] == "a2" and event.resolution.values["A2"] == "a2"


def test_lease_is_renewed_at_two_thirds_then_re_read_when_capped() -> None:
    backend, clock = Backend(), ManualClock()
    source = backend.source()
    watcher, posted = make(source, clock, interval=1000.0)
    clock.now += 19.0
    watcher.poll()
    assert len(source.renewals) == 0
    clock.now += 1.0  # 20 s = 2/3 of 30 s
    watcher.poll()
    assert len(source.renewals) == 1 and posted == []
    backend.renew_to = 12.0  # the max TTL caps the next renewal
    clock.now += 20.0
    watcher.poll()
    assert len(source.renewals) == 2 and posted == []
    # The lease now ends for good at +52 s; 90 % of its life is +46.8 s.
    clock.now += 6.0
    watcher.poll()
    assert posted == []
    clock.now += 1.0
    watcher.poll()
    (event,) = posted
    assert isinstance(event, Rotation) and event.urgent
    assert event.resolution.values["USER"] == "u1"  # the fake hands out the same version; a new lease was read
    assert fetched(source).count("creds") == 2


def due_of(watcher: Watcher, path: str) -> float:
    return next(watcher.due(t) for t in watcher.tracked.values() if t.key.path == path)


def test_checks_stay_on_their_schedule_when_a_poll_is_late_or_a_secret_rotates() -> None:
    backend, clock = Backend(), ManualClock()
    source = backend.source()
    watcher, posted = make(source, clock, interval=10.0)  # random() = 0.5: phase 1005
    assert due_of(watcher, "a") == 1005.0
    clock.now = 1005.7  # a late wake-up
    watcher.poll()
    assert sorted(source.checks) == ["a", "b"]
    assert due_of(watcher, "a") == 1015.0  # not 1015.7: lateness does not accumulate
    backend.versions["a"] = 2
    clock.now = 1016.2
    watcher.poll()
    assert len(posted) == 1 and isinstance(posted[0], Rotation)
    assert due_of(watcher, "a") == 1025.0  # the re-read secret keeps its phase


def test_a_failing_source_is_probed_once_per_interval_and_checked_whole_when_it_answers() -> None:
    """During an outage a source is probed at most every interval (one of its
    secrets); on its first answer every secret of that source is checked at once, so what
    rotated during the outage is re-read together: one rotation, one action."""
    backend, clock = Backend(), ManualClock()
    source = backend.source()
    watcher, posted = make(source, clock, interval=10.0)  # phase 1005
    source.down = True
    clock.now = 1005.0
    watcher.poll()  # a and b are due: the first check fails, the source is failing
    assert len(source.checks) == 1 and isinstance(posted[-1], Outage)
    assert due_of(watcher, "a") == due_of(watcher, "b") == 1015.0  # the probe, one interval later
    for probe_at in (1015.0, 1025.0, 1035.0):
        checks = len(source.checks)
        clock.now = probe_at
        watcher.poll()
        assert len(source.checks) == checks + 1, "one probe per interval, whatever the number of secrets"
        assert due_of(watcher, "a") == probe_at + 10.0
    backend.versions["a"] = backend.versions["b"] = 2  # both rotated during the outage
    source.down = False
    posted.clear()
    clock.now = 1045.0
    watcher.poll()
    rotations = [e for e in posted if isinstance(e, Rotation)]
    assert len(rotations) == 1 and sorted(k.path for k in rotations[0].keys) == ["a", "b"]  # together: one action
    assert due_of(watcher, "a") == due_of(watcher, "b") == 1055.0  # every interval again, same phase


def test_a_leased_secret_is_not_polled_between_lease_events() -> None:
    backend, clock = Backend(), ManualClock()
    source = backend.source()
    watcher, _ = make(source, clock, interval=1.0)
    clock.now += 5.0
    wake = watcher.poll()
    creds = next(t for t in watcher.tracked.values() if t.key.path == "creds")
    assert watcher.due(creds) == pytest.approx(1000.0 + 20.0)
    assert wake > clock.now  # nothing overdue: no busy loop
