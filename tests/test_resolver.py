"""The resolver with a scripted fake source: dedupe, concurrency, precedence, errors, cache."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from launcher.clock import Clock
from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError, TransientError, UnavailableError
from launcher.manifest import parse_manifest
from launcher.model.config import Manifest, ProcessConfig, SourceConfig
from launcher.model.refs import FetchKey, Reference
from launcher.resolve.cache import TTLCache
from launcher.resolve.resolver import Resolver, env_from_name, inline_bindings, select
from launcher.run.environment import child_environment
from launcher.sources.base import Secret
from launcher.sources.file import FileSource, FileSourceConfig
from tests.fakes import ScriptedSource
from tests.helpers import raise_failure

CANARY = "canary-5f1d9e-do-not-log"


def manifest(body: str, sources: tuple[str, ...] = ("src",)) -> Manifest:
    decl = "".join(f"  {name}: {{type: vault}}\n" for name in sources)
    return parse_manifest(f"version: 1\nsources:\n{decl}{body}", "/nonexistent/launcher.yaml", {})


def resolver_for(m: Manifest, *fakes: ScriptedSource, **kw: object) -> Resolver:
    by_name = {f.name: f for f in fakes}

    def factory(config: SourceConfig) -> ScriptedSource:
        return by_name[config.name]

    no_sleep = Clock(sleep=lambda s: None, random=lambda: 0.0)
    return Resolver(m, source_factory=factory, clock=no_sleep, **kw)  # type: ignore[arg-type]


def fields(**kv: str) -> Secret:
    return Secret(fields=kv, version="7")


def test_dedupe_50_bindings_over_5_paths() -> None:
    body = "env:\n" + "".join(f"  V{i}: src://p{i % 5}#k{i // 5}\n" for i in range(50))
    fake = ScriptedSource("src", {f"p{p}": fields(**{f"k{k}": f"{p}-{k}" for k in range(10)}) for p in range(5)})
    res = resolver_for(manifest(body), fake).resolve({})
    assert res.errors == ()
    assert sorted(fake.fetches) == [(f"p{p}", None) for p in range(5)]
    assert res.values == {f"V{i}": f"{i % 5}-{i // 5}" for i in range(50)}


def test_versions_are_distinct_fetches() -> None:
    body = "env:\n  A: src://p#a\n  B: src://p?version=1#a\n  C: src://p#a?version=1\n  D: '{{ src://p#a }}-{{ src://p#b }}'\n"
    fake = ScriptedSource("src", {"p": fields(a="1", b="2")})
    res = resolver_for(manifest(body), fake).resolve({})
    assert sorted(fake.fetches, key=str) == [("p", "1"), ("p", None)]
    assert res.values == {"A": "1", "B": "1", "C": "1", "D": "1-2"}


def test_fetches_run_concurrently() -> None:
    barrier = threading.Barrier(5)
    body = "env:\n" + "".join(f"  V{i}: src://p{i}\n" for i in range(5))
    fake = ScriptedSource("src", {f"p{i}": Secret(value=str(i)) for i in range(5)}, barrier=barrier)
    res = resolver_for(manifest(body), fake).resolve({})
    assert res.errors == ()
    assert not barrier.broken
    assert res.values == {f"V{i}": str(i) for i in range(5)}


def test_all_or_nothing() -> None:
    body = "env:\n  A: src://a\n  B: src://b\n  C: src://missing\n"
    fake = ScriptedSource("src", {"a": Secret(value="1"), "b": Secret(value="2")})
    res = resolver_for(manifest(body), fake).resolve({})
    with pytest.raises(NotFoundError) as info:
        raise_failure(res)
    assert info.value.exit_code == 66
    assert "launcher.yaml:" in str(info.value) and "env.C" in str(info.value)
    assert [r.status for r in res.results] == ["ok", "ok", "missing"]


def test_default_and_optional() -> None:
    body = (
        "env:\n"
        "  A: {ref: 'src://p#nokey', default: fallback}\n"
        "  B: {ref: src://missing, default: ''}\n"
        "  C: {ref: src://missing, optional: true}\n"
        "  D: {ref: 'src://p#k'}\n"
        "  E: {ref: src://down, default: x}\n"
    )
    fake = ScriptedSource("src", {"p": fields(k="v"), "down": UnavailableError("src://down: unreachable")})
    res = resolver_for(manifest(body), fake).resolve({})
    status = {r.name: r.status for r in res.results}
    assert status == {"A": "default", "B": "default", "C": "optional", "D": "ok", "E": "unavailable"}
    assert res.values == {"A": "fallback", "B": "", "D": "v"}
    assert [e.exit_code for e in res.errors] == [69]  # a default covers "missing", not "down"


@pytest.mark.parametrize(
    ("prefix", "key", "name"),
    [
        ("APP_", "db.host", "APP_DB_HOST"),
        ("APP_", "user-name", "APP_USER_NAME"),
        ("APP_", "9lives", "APP_9LIVES"),
        ("", "9lives", "_9LIVES"),
        ("", "mixedCase", "MIXEDCASE"),
        ("", "a b/c", "A_B_C"),
        ("X", "é", "X_"),
    ],
)
def test_env_from_name(prefix: str, key: str, name: str) -> None:
    assert env_from_name(prefix, key) == name


def test_env_from_with_prefix() -> None:
    body = "env_from:\n  - {ref: src://cfg, prefix: APP_}\n  - {ref: src://raw}\n"
    cfg = fields(**{"db.host": "h", "user-name": "u", "9lives": "n"})
    fake = ScriptedSource("src", {"cfg": cfg, "raw": fields(**{"1x": "y", "k": "z"})})
    res = resolver_for(manifest(body), fake).resolve({})
    assert res.values == {"APP_DB_HOST": "h", "APP_USER_NAME": "u", "APP_9LIVES": "n", "_1X": "y", "K": "z"}
    assert [(r.name, r.status) for r in res.results] == [("APP_*", "ok"), ("*", "ok")]


def test_env_from_on_a_single_value_is_invalid() -> None:
    fake = ScriptedSource("src", {"raw": Secret(value="plain")})
    res = resolver_for(manifest("env_from:\n  - ref: src://raw\n"), fake).resolve({})
    assert [e.exit_code for e in res.errors] == [78]


def test_precedence_env_over_inline_over_env_from() -> None:
    body = "env:\n  X: src://manifest\nenv_from:\n  - ref: src://bulk\n"
    fake = ScriptedSource(
        "src",
        {"manifest": Secret(value="from-env"), "inline": Secret(value="from-inline"), "bulk": fields(X="bulk-x", Y="bulk-y", Z="bulk-z")},
    )
    environ = {"X": "src://inline", "Y": "src://inline", "W": "foo://left-alone"}
    res = resolver_for(manifest(body), fake).resolve(environ)
    assert res.values == {"X": "from-env", "Y": "from-inline", "Z": "bulk-z"}
    res = resolver_for(manifest(body), fake).resolve(environ, inline=False)
    assert res.values == {"X": "from-env", "Y": "bulk-y", "Z": "bulk-z"}


def test_inline_bindings_only_for_known_sources() -> None:
    m = manifest("env:\n  TAKEN: literal\n")
    environ = {
        "A": "src://a#k",
        "B": "vault://secret/b#k",
        "C": "foo://undeclared",
        "D": "https://example.com",
        "TAKEN": "src://x",
        "E": "plain",
        "BAD-NAME": "src://a",
    }
    found = {b.name: b.refs for b in inline_bindings(environ, m)}
    assert found == {"A": [Reference("src", "a", "k")], "B": [Reference("vault", "secret/b", "k")]}


@pytest.mark.parametrize(
    ("failures", "code"),
    [
        ({"a": NotFoundError("x"), "b": UnavailableError("x"), "c": AuthError("x"), "d": ManifestError("x")}, 78),
        ({"a": NotFoundError("x"), "b": UnavailableError("x"), "c": AuthError("x")}, 77),
        ({"a": NotFoundError("x"), "b": UnavailableError("x")}, 69),
        ({"b": TransientError("x"), "a": NotFoundError("x")}, 69),
        ({"a": NotFoundError("x")}, 66),
    ],
)
def test_most_fundamental_error_wins(failures: dict[str, LauncherError], code: int) -> None:
    body = "env:\n  A: src://a\n  B: src://b\n  C: src://c\n  D: src://d\n  OK: src://ok\n"
    fake = ScriptedSource("src", {"a": Secret(value="1"), "b": Secret(value="1"), "c": Secret(value="1"),
                                  "d": Secret(value="1"), "ok": Secret(value="1"), **failures})
    res = resolver_for(manifest(body), fake).resolve({})
    with pytest.raises(LauncherError) as info:
        raise_failure(res)
    assert info.value.exit_code == code


def test_transient_errors_are_retried() -> None:
    class Flaky(ScriptedSource):
        def fetch(self, path: str, version: str | None) -> Secret:
            if len(self.fetches) < 2:
                self.fetches.append((path, version))
                raise TransientError("503", retry_after=0.0)
            return super().fetch(path, version)

    fake = Flaky("src", {"p": Secret(value="v")})
    res = resolver_for(manifest("env:\n  A: src://p\n"), fake).resolve({})
    assert res.values == {"A": "v"}
    assert len(fake.fetches) == 3


def test_cache_reuse_across_resolutions() -> None:
    now = [0.0]
    m = manifest("env:\n  A: src://p#a\n  B: src://q\n")
    fake = ScriptedSource("src", {"p": fields(a="1"), "q": Secret(value="2")})
    cache: TTLCache[FetchKey, Secret] = TTLCache(ttl=60.0, max_entries=10, clock=Clock(monotonic=lambda: now[0]))
    resolver = resolver_for(m, fake, cache=cache)
    first = resolver.resolve({})
    second = resolver.resolve({})
    assert first.values == second.values == {"A": "1", "B": "2"}
    assert len(fake.fetches) == 2
    assert cache.stats.hits == 2
    resolver.resolve({}, use_cache=False)
    assert len(fake.fetches) == 4
    now[0] += 61.0
    resolver.resolve({})
    assert len(fake.fetches) == 6


def test_sources_are_opened_once_and_closed() -> None:
    opened: list[str] = []
    fake = ScriptedSource("src", {"p": Secret(value="v")})

    def factory(config: SourceConfig) -> ScriptedSource:
        opened.append(config.name)
        return fake

    resolver = Resolver(manifest("env:\n  A: src://p\n"), source_factory=factory)  # type: ignore[arg-type]
    resolver.resolve({})
    resolver.resolve({}, use_cache=False)
    resolver.close()
    assert opened == ["src"]
    assert fake.closed


def test_a_source_that_cannot_open_fails_each_of_its_keys_only() -> None:
    fake = ScriptedSource("src", {"p": Secret(value="v")})
    attempts: list[str] = []

    def factory(config: SourceConfig) -> ScriptedSource:
        attempts.append(config.name)
        if config.name == "bad":
            raise AuthError("source 'bad': no token")
        return fake

    m = manifest("env:\n  A: src://p\n  B: bad://x\n  C: bad://y\n", sources=("src", "bad"))
    res = Resolver(m, source_factory=factory).resolve({})  # type: ignore[arg-type]
    assert res.values == {"A": "v"}
    assert [type(e) for e in res.errors] == [AuthError, AuthError]
    assert attempts.count("src") == 1


def test_cached_keys_do_not_open_their_source_or_count_twice() -> None:
    m = manifest("env:\n  A: src://p\n")
    fake = ScriptedSource("src", {"p": Secret(value="v")})
    opened: list[str] = []
    cache: TTLCache[FetchKey, Secret] = TTLCache(ttl=60.0, max_entries=10)
    cache.put(FetchKey("src", "p", None), Secret(value="cached"))

    def factory(config: SourceConfig) -> ScriptedSource:
        opened.append(config.name)
        return fake

    res = Resolver(m, source_factory=factory, cache=cache).resolve({})  # type: ignore[arg-type]
    assert res.values == {"A": "cached"} and opened == [] and fake.fetches == []
    assert (cache.stats.hits, cache.stats.misses) == (1, 0)


def test_multi_field_secret_without_key_is_78_naming_fields() -> None:
    fake = ScriptedSource("src", {"p": fields(user="u", password=CANARY)})
    res = resolver_for(manifest("env:\n  A: src://p\n"), fake).resolve({})
    assert [e.exit_code for e in res.errors] == [78]
    message = str(res.errors[0])
    assert "password, user" in message and "launcher.yaml:" in message and CANARY not in message


@pytest.mark.parametrize(
    ("secret", "ref", "expected"),
    [
        (Secret(value="plain"), Reference("s", "p"), "plain"),
        (Secret(fields={"only": "one"}), Reference("s", "p"), "one"),
        (Secret(fields={"a": "1", "b": "2"}), Reference("s", "p", "b"), "2"),
        (Secret(value='{"user": "u", "n": 5}'), Reference("s", "p", "user"), "u"),
        (Secret(value='{"user": "u", "n": 5}'), Reference("s", "p", "n"), "5"),
    ],
)
def test_select(secret: Secret, ref: Reference, expected: str) -> None:
    assert select(secret, ref) == expected


@pytest.mark.parametrize(
    ("secret", "ref", "code"),
    [
        (Secret(value="not json"), Reference("s", "p", "k"), 66),
        (Secret(value="[1, 2]"), Reference("s", "p", "k"), 66),
        (Secret(fields={"a": "1"}), Reference("s", "p", "zz"), 66),
        (Secret(fields={}), Reference("s", "p"), 66),
        (Secret(fields={"a": "1", "b": "2"}), Reference("s", "p"), 78),
    ],
)
def test_select_errors(secret: Secret, ref: Reference, code: int) -> None:
    with pytest.raises(LauncherError) as info:
        select(secret, ref)
    assert info.value.exit_code == code


def test_values_are_hidden_from_reprs_and_messages() -> None:
    body = "env:\n  A: src://p#password\n  B: {ref: 'src://p#nope', default: " + CANARY + "}\n  C: src://p#missing\n"
    fake = ScriptedSource("src", {"p": fields(password=CANARY)})
    res = resolver_for(manifest(body), fake).resolve({})
    assert res.values["A"] == CANARY
    assert CANARY not in repr(res)
    assert CANARY not in repr(res.results)
    assert CANARY not in repr(res.secrets)
    assert CANARY not in repr(manifest(body))
    assert all(CANARY not in str(e) and CANARY not in repr(e) for e in res.errors)


INHERITED = {"PATH": "/bin", "HOME": "/root", "VAULT_TOKEN": "t", "AZURE_CLIENT_SECRET": "s", "VAULT_SECRET_ID": "i", "OTHER": "o"}
INHERITED["MINE"] = "m"


@pytest.mark.parametrize(
    ("process", "bindings", "expected"),
    [
        (ProcessConfig(), {}, {"PATH": "/bin", "HOME": "/root", "OTHER": "o", "MINE": "m"}),
        (ProcessConfig(passthrough=("VAULT_TOKEN",)), {}, {"PATH": "/bin", "HOME": "/root", "OTHER": "o", "MINE": "m", "VAULT_TOKEN": "t"}),
        (ProcessConfig(scrub=(*ProcessConfig().scrub, "MINE")), {}, {"PATH": "/bin", "HOME": "/root", "OTHER": "o"}),
        (ProcessConfig(pristine=True), {"B": "b"}, {"PATH": "/bin", "HOME": "/root", "B": "b"}),
        (ProcessConfig(pristine=True, inherit=("OTHER", "VAULT_TOKEN")), {}, {"OTHER": "o"}),
        (ProcessConfig(pristine=True, inherit=("VAULT_TOKEN",), passthrough=("VAULT_TOKEN",)), {}, {"VAULT_TOKEN": "t"}),
        # Bindings always win: over inherited values and over scrub.
        (ProcessConfig(), {"OTHER": "new", "VAULT_TOKEN": "bound"},
         {"PATH": "/bin", "HOME": "/root", "OTHER": "new", "MINE": "m", "VAULT_TOKEN": "bound"}),
        (ProcessConfig(pristine=True, inherit=()), {"X": "1"}, {"X": "1"}),
    ],
)
def test_child_environment(process: ProcessConfig, bindings: dict[str, str], expected: dict[str, str]) -> None:
    assert child_environment(INHERITED, bindings, process) == expected


def test_file_source_keeps_scalars_as_written_and_types_inside_json(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text('app:\n  lst: [1, true, null, "s"]\n  cfg: {a: 1, b: [true, null, 2.5]}\n'
                                     '  mode: 0755\n  n: ~\n  empty:\n')
    src = FileSource(FileSourceConfig(name="dev", path=str(tmp_path / "s.yaml")))
    assert src.fetch("app/lst", None).value == '[1,true,null,"s"]'
    assert src.fetch("app/cfg", None).fields == {"a": "1", "b": "[true,null,2.5]"}
    assert src.fetch("app/mode", None).value == "0755"
    fields = src.fetch("app", None).fields
    assert fields is not None and fields["n"] == "" and fields["empty"] == ""
    with pytest.raises(NotFoundError):
        src.fetch("app/n", None)  # a null value at PATH is missing: `default:` applies


def test_a_local_source_is_read_on_the_calling_thread_and_a_remote_one_on_helpers() -> None:
    body = "env:\n" + "".join(f"  L{i}: near://p{i}#k\n  R{i}: far://p{i}#k\n" for i in range(8))
    script = {f"p{i}": fields(k=str(i)) for i in range(8)}
    near = ScriptedSource("near", script, local=True)
    far = ScriptedSource("far", script, local=False)
    res = resolver_for(manifest(body, ("near", "far")), near, far).resolve({})
    assert res.errors == () and res.values["L7"] == "7" and res.values["R0"] == "0"
    assert near.threads == {threading.current_thread().name}
    assert any(name.startswith("fetch-") for name in far.threads)
