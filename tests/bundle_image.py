"""The bundle under test, and a root filesystem without Python to run it in (fixtures).

``bundle`` (session): the directory ``packaging/bundle.sh`` builds, once per test run, into
the checkout's ``dist/`` (a rebuild reuses its build environment, ``dist/.build-venv``); or
the bundle named by ``LAUNCHER_BUNDLE`` (the directory holding the ``launcher`` executable),
built once beforehand, which is then used as it is.

``image`` (session): a root filesystem made of busybox-static, the C library files the
bundle needs (what ``ldd`` lists for its files, and the dynamic loader) and the bundle at
``/opt/launcher``, and /dev/null: no Python, no /etc. It stands in for a service image without
Python. Commands run in it with ``unshare --root`` (so as root); they share the host's
network namespace, so servers on 127.0.0.1 are reachable from inside.

Without root, unshare or busybox-static these tests skip, except in CI (``CI`` set), where
they fail: CI must run them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUNDLE_VARIABLE = "LAUNCHER_BUNDLE"
BUSYBOX = "/bin/busybox"  # Debian's busybox-static
INNER_BUNDLE = "/opt/launcher"
INNER_LAUNCHER = f"{INNER_BUNDLE}/launcher"


def require(condition: bool, reason: str) -> None:
    """Skip the test when ``condition`` is false; in CI, fail instead."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI runs the bundle tests: .ci/run installs what they need)")
    pytest.skip(reason)


def elf_files(directory: Path) -> list[Path]:
    """Every ELF file under ``directory`` (executables, libraries, extension modules)."""
    found = []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def glibc_needed(directory: Path) -> tuple[int, ...]:
    """The highest ``GLIBC_x.y`` symbol version any ELF file under ``directory`` needs (objdump -T)."""
    out = subprocess.run(["objdump", "-T", *map(str, elf_files(directory))], capture_output=True, text=True, check=True).stdout
    return max(version_tuple(v) for v in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", out))


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def system_libraries(bundle: Path) -> set[Path]:
    """The files outside the bundle that its ELF files load (``ldd``, with the bundle's own
    library directory searched first, as its bootloader arranges), and the dynamic loader."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LD_LIBRARY_PATH": str(bundle / "_internal")}
    needed: set[Path] = set()
    for path in elf_files(bundle):
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env, check=False).stdout
        for line in out.splitlines():
            match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if match and not Path(match.group(1)).resolve().is_relative_to(bundle.resolve()):
                needed.add(Path(match.group(1)))
    return needed


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle directory (holding ``launcher`` and ``_internal/``)."""
    given = os.environ.get(BUNDLE_VARIABLE)
    if given:
        path = Path(given).resolve()
        assert (path / "launcher").is_file(), f"{BUNDLE_VARIABLE}={given}: no launcher executable there"
        return path
    require(shutil.which("objdump") is not None, "building the bundle needs objdump (binutils)")
    out = ROOT / "dist"
    log = tmp_path_factory.mktemp("bundle-build") / "build.log"
    with open(log, "wb") as fh:
        done = subprocess.run(["bash", str(ROOT / "packaging" / "bundle.sh"), str(out)], stdout=fh, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHON": sys.executable}, timeout=1800, check=False)
    assert done.returncode == 0, f"packaging/bundle.sh failed:\n{log.read_text(errors='replace')[-4000:]}"
    return out / "launcher"


@dataclass
class Image:
    """A root filesystem holding busybox, the C library and the bundle; ``run`` runs in it."""

    root: Path

    def host_path(self, inner: str) -> Path:
        """Where the image's ``inner`` path is on the host."""
        return self.root / inner.lstrip("/")

    def workdir(self) -> str:
        """A new, empty directory inside the image (its inner path), one per test."""
        inner = f"/work/{uuid.uuid4().hex[:10]}"
        self.host_path(inner).mkdir(parents=True)
        return inner

    def write(self, inner: str, text: str, mode: int = 0o644) -> str:
        path = self.host_path(inner)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod(mode)
        return inner

    def command(self, argv: Sequence[str], cwd: str = "/", pid1: bool = False, mounts: bool = False) -> list[str]:
        """``unshare`` into the image; with ``pid1`` in a new PID namespace with its own /proc,
        where ``argv`` runs as PID 1 (and everything left is killed when it exits); with
        ``mounts`` in a mount namespace of its own (what it mounts is gone when it exits)."""
        namespaces = ["--pid", "--fork", "--mount-proc", "--kill-child"] if pid1 else ["--mount"] if mounts else []
        return ["unshare", *namespaces, f"--root={self.root}", f"--wd={cwd}", *argv]

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str = "/", pid1: bool = False,
            mounts: bool = False, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(argv, cwd, pid1, mounts), env=image_env(env), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def popen(self, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str = "/",
              pid1: bool = False) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(argv, cwd, pid1), env=image_env(env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


def image_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a command in the image: nothing from the host's but what is given."""
    return {"PATH": "/bin", "HOME": "/tmp", **(extra or {})}


def build_image(root: Path, bundle: Path) -> Image:
    """Lay out the image at ``root`` (see the module docstring)."""
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    for library in system_libraries(bundle):
        target = root / str(library).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library, target)  # the file itself, whatever links led to it
    shutil.copytree(bundle, root / INNER_BUNDLE.lstrip("/"), symlinks=True)
    for name in ("proc", "work", "dev"):
        (root / name).mkdir()
    # Every container has /dev/null (busybox sh gives it to background jobs as stdin).
    os.mknod(root / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (root / "dev" / "null").chmod(0o666)
    (root / "tmp").mkdir(mode=0o1777)
    (root / "tmp").chmod(0o1777)  # mkdir applies the umask
    return Image(root)


@pytest.fixture(scope="session")
def image(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    require(os.geteuid() == 0, "running the bundle in a root filesystem of its own needs root")
    require(shutil.which("unshare") is not None, "needs unshare (util-linux)")
    require(os.path.isfile(BUSYBOX), "needs busybox-static (Debian: apt-get install busybox-static)")
    require(shutil.which("ldd") is not None, "needs ldd")
    yield build_image(tmp_path_factory.mktemp("image"), bundle)


def bundle_info(bundle: Path) -> dict[str, str]:
    """What the build recorded in the bundle."""
    data: dict[str, str] = json.loads((bundle / "_internal" / "launcher-bundle.json").read_text(encoding="utf-8"))
    return data
