"""``launcher copy`` and the bundle's small pieces, without a built bundle.

``copy_bundle`` is given a stand-in bundle directory (its ``source`` argument); the CLI is
the pip-installed one, which must refuse to copy. The real bundle is tested in
tests/test_bundle.py.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from launcher.bundle import NotABundleError, build_info, restore_environment, version_suffix, version_text
from launcher.bundle.copy import copy_bundle
from launcher.errors import UsageError, WouldOverwriteError
from tests.helpers import run_launcher


@pytest.fixture
def fake_bundle(tmp_path: Path) -> Path:
    """A directory shaped like a bundle: an executable, a contents directory, a symlink."""
    root = tmp_path / "src" / "launcher"
    (root / "_internal" / "lib").mkdir(parents=True)
    (root / "launcher").write_bytes(b"\x7fELF stand-in")
    (root / "launcher").chmod(0o755)
    (root / "_internal" / "lib" / "libfoo.so.1").write_bytes(b"library")
    (root / "_internal" / "libfoo.so.1").symlink_to("lib/libfoo.so.1")
    (root / "_internal" / "launcher-bundle.json").write_text('{"glibc": "2.35"}')
    return root


def test_copy_makes_an_identical_tree_and_keeps_links(fake_bundle: Path, tmp_path: Path) -> None:
    target = copy_bundle(tmp_path / "shared" / "deep", source=fake_bundle)  # DEST is created
    assert target == tmp_path / "shared" / "deep" / "launcher"
    assert (target / "_internal" / "libfoo.so.1").is_symlink()
    assert os.readlink(target / "_internal" / "libfoo.so.1") == "lib/libfoo.so.1"
    assert stat.S_IMODE((target / "launcher").stat().st_mode) == 0o755
    assert (target / "_internal" / "lib" / "libfoo.so.1").read_bytes() == b"library"
    assert sorted(p.name for p in target.parent.iterdir()) == ["launcher"]  # no staging left


def test_an_existing_target_is_73_naming_it_and_untouched(fake_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "launcher").mkdir()
    (tmp_path / "launcher" / "mine").write_text("keep")
    with pytest.raises(WouldOverwriteError) as info:
        copy_bundle(tmp_path, source=fake_bundle)
    assert info.value.exit_code == 73
    assert str(info.value) == f"{tmp_path}/launcher already exists (use --force to replace it)"
    assert (tmp_path / "launcher" / "mine").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["launcher", "src"]


@pytest.mark.parametrize("existing", ["directory", "file", "symlink"])
def test_force_replaces_whatever_is_there(fake_bundle: Path, tmp_path: Path, existing: str) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    old = dest / "launcher"
    if existing == "directory":
        old.mkdir()
        (old / "stale").write_text("old")
    elif existing == "file":
        old.write_text("old")
    else:
        old.symlink_to(tmp_path / "src")
    target = copy_bundle(dest, force=True, source=fake_bundle)
    assert not target.is_symlink() and (target / "launcher").is_file() and not (target / "stale").exists()
    assert sorted(p.name for p in dest.iterdir()) == ["launcher"]
    assert (tmp_path / "src" / "launcher").is_dir(), "a symlink is replaced, never followed"


def test_a_destination_inside_the_bundle_is_refused(fake_bundle: Path) -> None:
    with pytest.raises(UsageError, match="is inside the bundle being copied"):
        copy_bundle(fake_bundle / "_internal", source=fake_bundle)


def test_an_unwritable_destination_is_a_one_line_error(fake_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(UsageError, match=r"^cannot create .*a-file/sub: Not a directory$"):
        copy_bundle(tmp_path / "a-file" / "sub", source=fake_bundle)


def test_from_an_installed_python_copy_is_78_and_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(NotABundleError):
        copy_bundle(tmp_path)
    done = run_launcher(["copy", str(tmp_path / "dest")])
    assert done.returncode == 78
    assert done.stderr.count("\n") == 1
    assert "only a bundle can be copied" in done.stderr and "packaging/bundle.sh" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "dest").exists()


def test_version_from_an_installed_python_does_not_claim_a_bundle() -> None:
    done = run_launcher(["--version"])
    assert done.returncode == 0
    assert done.stdout.startswith("launcher, version ") and "bundle" not in done.stdout
    assert version_text() == done.stdout.rstrip("\n")


@pytest.mark.parametrize(("info", "suffix"), [
    ({"glibc": "2.35"}, " (bundle, glibc >= 2.35)"),
    ({}, " (bundle)"),  # built by hand, nothing recorded
])
def test_version_suffix(info: dict[str, str], suffix: str) -> None:
    assert version_suffix(info) == suffix


def test_build_info_reads_the_record_and_tolerates_none(fake_bundle: Path, tmp_path: Path) -> None:
    assert build_info(fake_bundle / "_internal") == {"glibc": "2.35"}
    assert build_info(tmp_path) == {}
    (tmp_path / "launcher-bundle.json").write_text("not json")
    assert build_info(tmp_path) == {}


CONTENTS = "/opt/launcher/_internal"


@pytest.mark.parametrize(("given", "expected"), [
    # What the bootloader leaves -> what the caller had given.
    ({"LD_LIBRARY_PATH": CONTENTS}, {}),
    ({"LD_LIBRARY_PATH": f"{CONTENTS}:/usr/local/lib", "LD_LIBRARY_PATH_ORIG": "/usr/local/lib"},
     {"LD_LIBRARY_PATH": "/usr/local/lib"}),
    ({"LD_LIBRARY_PATH": f"{CONTENTS}:", "LD_LIBRARY_PATH_ORIG": ""}, {"LD_LIBRARY_PATH": ""}),
    ({"LD_LIBRARY_PATH": f"{CONTENTS}:/x"}, {"LD_LIBRARY_PATH": "/x"}),  # no *_ORIG: only our entry goes
    ({"LD_LIBRARY_PATH": "/theirs"}, {"LD_LIBRARY_PATH": "/theirs"}),  # not the bootloader's: left alone
    ({"_PYI_ARCHIVE_FILE": "/opt/launcher/launcher", "_PYI_PARENT_PROCESS_LEVEL": "1", "PYI_OTHER": "kept"},
     {"PYI_OTHER": "kept"}),
])
def test_restore_environment(given: dict[str, str], expected: dict[str, str]) -> None:
    environ = {"PATH": "/bin", **given}
    restore_environment(environ, CONTENTS)
    assert environ == {"PATH": "/bin", **expected}
