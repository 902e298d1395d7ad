"""The ``file`` source: bounded reads, alias bombs refused, plain-word errors with their exit codes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError
from launcher.sources.file import FileSource, FileSourceConfig
from tests.helpers import in_unprivileged_process, run_launcher

EXCEPTION_NAME_RE = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b|Traceback")
CANARY = "hunter2-canary"


def source(path: Path) -> FileSource:
    return FileSource(FileSourceConfig(name="dev", path=str(path)))


def fetch_error(path: Path, ref: str = "app/x", kind: type[LauncherError] = ManifestError) -> LauncherError:
    # How long a bomb takes to refuse is measured by benchmarks/bench_parser.py, never asserted here.
    with pytest.raises(kind) as info:
        source(path).fetch(ref, None)
    message = str(info.value)
    assert "\n" not in message and not EXCEPTION_NAME_RE.search(message) and CANARY not in message, message
    return info.value


def laughs(levels: int, width: int = 10) -> str:
    """The "billion laughs": ``width ** levels`` copies of one string, in a few lines."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\napp:\n  bomb: *l{levels - 1}\n  x: {CANARY}\n"


def test_an_alias_bomb_is_78_naming_the_file_and_path(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(laughs(9), encoding="utf-8")  # 10^9 laughs: gigabytes of JSON
    err = fetch_error(path, "app/bomb")
    assert str(err) == f"dev://app/bomb: the value in {path} would be larger than 4 MiB as text (aliases repeat too much of it)"
    assert source(path).fetch("app/x", None).value == CANARY  # the rest of the file still serves


def test_a_bomb_under_a_mapping_is_refused_for_its_fields_too(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(laughs(7), encoding="utf-8")  # 10^7: tens of megabytes
    err = fetch_error(path, "app")
    assert "dev://app: the value in" in str(err) and "larger than 4 MiB" in str(err)


def test_modest_aliases_still_expand(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(laughs(3, width=3) + "other: *l1\n", encoding="utf-8")
    assert source(path).fetch("other", None).value == '[["lol","lol","lol"],["lol","lol","lol"],["lol","lol","lol"]]'


def test_an_alias_to_an_enclosing_node_is_78(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("app:\n  loop: &a [x, *a]\n  m: &m {k: *m}\n", encoding="utf-8")
    for ref in ("app/loop", "app/m", "app"):
        assert "refers to itself through an alias" in str(fetch_error(path, ref))


def test_deep_nesting_is_78(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("app:\n  deep: " + "[" * 500 + "]" * 500 + "\n", encoding="utf-8")
    assert "is nested more than 100 levels deep" in str(fetch_error(path, "app/deep"))


def test_nesting_beyond_yaml_limits_is_78(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("app:\n  deep: " + "[" * 10_000 + "]" * 10_000 + "\n", encoding="utf-8")
    assert str(fetch_error(path, "app/deep")) == f"source 'dev': {path}:2 is not valid YAML or JSON"


def test_a_file_over_4_mib_is_78(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("app: {x: y}\n" + "#" * (4 * 1024 * 1024), encoding="utf-8")
    assert str(fetch_error(path)) == f"source 'dev': {path} is larger than 4 MiB"


def test_dev_zero_ends_quickly() -> None:
    assert "larger than 4 MiB" in str(fetch_error(Path("/dev/zero")))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param("app: {x: y}\n".encode("utf-16"), "is not UTF-8 text (it looks like UTF-16; save it as UTF-8)", id="utf-16"),
        pytest.param(b"app: {x: caf\xe9}\n", "is not UTF-8 text (invalid byte at offset 12)", id="latin-1"),
    ],
)
def test_a_file_that_is_not_utf8_is_78(tmp_path: Path, data: bytes, expected: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(data)
    assert str(fetch_error(path)) == f"source 'dev': {path} {expected}"


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"\xef\xbb\xbfapp: {x: y}\n")
    assert source(path).fetch("app/x", None).value == "y"


def test_a_control_character_is_78_with_its_line_and_not_shown(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(f"app:\n  x: '{CANARY}\x00\x1b'\n".encode())
    assert str(fetch_error(path)) == f"source 'dev': {path}:2 is not valid YAML or JSON"


def test_a_directory_is_78(tmp_path: Path) -> None:
    assert str(fetch_error(tmp_path)) == f"source 'dev': {tmp_path} is a directory, not a file of secrets"


def test_a_missing_file_is_66(tmp_path: Path) -> None:
    err = fetch_error(tmp_path / "nope.yaml", kind=NotFoundError)
    assert err.exit_code == 66 and "does not exist" in str(err)


def test_permission_denied_is_77(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("app: {x: y}\n", encoding="utf-8")
    path.chmod(0)
    tmp_path.chmod(0o755)

    def attempt() -> str:
        try:
            source(path).fetch("app/x", None)
        except AuthError as exc:
            return f"{exc.exit_code} {exc}"
        return "no error"

    assert in_unprivileged_process(attempt) == f"77 source 'dev': permission denied reading {path}"


def test_a_value_json_cannot_hold_is_78_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("app:\n  m: [{2024-01-01: x}]\n  n: [{[a]: x}]\n  t: [2024-13-45]\n", encoding="utf-8")
    for ref in ("app/m", "app/n", "app/t"):
        assert "cannot be passed as JSON" in str(fetch_error(path, ref))


def test_versions_are_stable_and_follow_the_content(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("app: {x: a}\n", encoding="utf-8")
    first = source(path).fetch("app", None).version
    assert source(path).current_version("app") == first
    path.write_text("app: {x: b}\n", encoding="utf-8")
    assert source(path).current_version("app") != first


def test_a_bomb_through_the_cli_is_78(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(laughs(9), encoding="utf-8")
    (tmp_path / "launcher.yaml").write_text(
        "version: 1\nsources:\n  dev: {type: file, path: s.yaml}\nenv:\n  BOMB: dev://app/bomb\n", encoding="utf-8"
    )
    proc = run_launcher(["exec", "--", "true"], cwd=tmp_path, timeout=30)  # a hang fails the test at 30 s
    assert proc.returncode == 78, proc.stderr
    assert "launcher.yaml:5: env.BOMB: dev://app/bomb: the value in" in proc.stderr and "s.yaml" in proc.stderr
    assert CANARY not in proc.stderr and "Traceback" not in proc.stderr
    assert os.path.exists(tmp_path / "s.yaml")


def test_a_version_counts_changes_and_is_never_a_hash_of_the_value(tmp_path: Path) -> None:
    """`check` prints versions and the audit trail keeps them: a short hash of a weak
    secret could be reversed by guessing, so a file's version is a counter."""
    path = tmp_path / "s.yaml"
    versions = []
    for value in ("hunter2", "hunter3", "hunter3", "hunter2"):
        path.write_text(f"pw: {value}\n", encoding="utf-8")
        versions.append(source(path).fetch("pw", None).version)
    assert versions == ["1", "2", "2", "3"]


def test_a_file_is_parsed_once_while_it_is_unchanged_and_again_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import launcher.sources.file as file_module

    parses: list[str] = []
    real_compose = file_module.compose_yaml

    def counting_compose(text: str) -> object:
        parses.append(text)
        return real_compose(text)

    monkeypatch.setattr(file_module, "compose_yaml", counting_compose)
    path = tmp_path / "s.yaml"
    path.write_text("".join(f"k{i}: value-{i}\n" for i in range(100)), encoding="utf-8")
    src = source(path)
    assert [src.fetch(f"k{i}", None).value for i in range(100)] == [f"value-{i}" for i in range(100)]
    assert len(parses) == 1
    # Same size, rewritten in place: the change of mtime/ctime is enough.
    path.write_text("".join(f"k{i}: VALUE-{i}\n" for i in range(100)), encoding="utf-8")
    assert src.fetch("k7", None).value == "VALUE-7"
    # Replaced by a rename, as Kubernetes and editors do: a new inode.
    (tmp_path / "next.yaml").write_text("k7: renamed\n", encoding="utf-8")
    os.replace(tmp_path / "next.yaml", path)
    assert src.fetch("k7", None).value == "renamed"
    assert len(parses) == 3


def test_a_merge_key_reads_the_same_before_and_after_a_json_value_was_built(tmp_path: Path) -> None:
    """Building JSON resolves `<<` in place; the kept document must not change under later lookups."""
    path = tmp_path / "s.yaml"
    path.write_text("base: &b {user: u}\nouter:\n  app:\n    <<: *b\n    host: h\n", encoding="utf-8")
    src = source(path)
    before = sorted(src.fetch("outer/app", None).fields or {})
    assert before == ["<<", "host"]
    assert src.fetch("outer", None).fields == {"app": '{"user":"u","host":"h"}'}  # JSON merges, as YAML loaders do
    assert sorted(src.fetch("outer/app", None).fields or {}) == before
