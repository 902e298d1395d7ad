"""The launcher as a bundle: a directory that runs where no Python is installed (docs/guides/images-without-python.md).

``packaging/bundle.sh`` freezes the launcher with PyInstaller (``--onedir``): the
``launcher`` executable beside ``_internal/``, which holds the interpreter, the libraries
and ``launcher-bundle.json``, what the build recorded (the version, the oldest C library the
bundle runs on). This module tells whether the running launcher is such a bundle (by
PyInstaller's documented ``sys.frozen`` and ``sys._MEIPASS``), reads what the build
recorded for ``launcher --version``, and gives the child back the environment the user
gave the launcher. ``launcher.bundle.copy`` is ``launcher copy``.
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from pathlib import Path

from launcher.errors import LauncherError

INFO_FILE = "launcher-bundle.json"  # in the contents directory (sys._MEIPASS), written by packaging/bundle.sh
BUILD_HINT = "build one from a checkout with packaging/bundle.sh"


class NotABundleError(LauncherError):
    """Something only a bundle can do was asked of a launcher installed with pip (78)."""

    exit_code = 78


def bundle_root() -> Path | None:
    """The bundle directory (the one holding the ``launcher`` executable), or None when the
    launcher runs on an installed Python."""
    if not getattr(sys, "frozen", False) or not hasattr(sys, "_MEIPASS"):
        return None
    return Path(sys.executable).resolve().parent


def contents_dir() -> Path:
    """The bundle's contents directory (``_internal``; PyInstaller's ``sys._MEIPASS``)."""
    return Path(getattr(sys, "_MEIPASS", ""))


def build_info(contents: Path | None = None) -> dict[str, str]:
    """What the build recorded (``version``, ``glibc``, ``python``...); {} when the file is
    missing or unreadable (a bundle built by hand), or when not running from a bundle."""
    if contents is None:
        if bundle_root() is None:
            return {}
        contents = contents_dir()
    import json  # here: the CLI asks at every start, and only a bundle reads the record

    try:
        data = json.loads((contents / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def version_suffix(info: dict[str, str] | None = None) -> str:
    """`` (bundle, glibc >= 2.35)`` from a bundle (`` (bundle)`` when its build recorded no
    floor), "" from a pip install. ``info`` stands in for the running bundle's record in tests."""
    if info is None:
        if bundle_root() is None:
            return ""
        info = build_info()
    glibc = info.get("glibc")
    return f" (bundle, glibc >= {glibc})" if glibc else " (bundle)"


def version_text() -> str:
    """What ``launcher --version`` prints: ``launcher, version 0.1.0`` plus ``version_suffix``."""
    from launcher import __version__

    return f"launcher, version {__version__}{version_suffix()}"


# What PyInstaller's bootloader adds to the environment before it restarts itself: its own
# library directory in front of LD_LIBRARY_PATH (the caller's value kept in *_ORIG) and
# markers for a restarted bootloader. A child that inherited them would load our OpenSSL
# or zlib instead of its own, and a frozen child would take itself for our restart.
_LIBRARY_PATH = "LD_LIBRARY_PATH"
_SAVED_LIBRARY_PATH = "LD_LIBRARY_PATH_ORIG"
_BOOTLOADER_PREFIX = "_PYI_"


def restore_environment(environ: MutableMapping[str, str], contents: str) -> None:
    """Put ``environ`` back as the launcher's caller gave it: LD_LIBRARY_PATH as it was
    (or unset) and no bootloader markers; ``contents`` is the bundle's library directory.

    Called once at start in a bundle, before anything reads the environment (the running
    process keeps the library path it started with). A library path the bootloader did not
    put there is left alone.
    """
    saved = environ.pop(_SAVED_LIBRARY_PATH, None)
    current = environ.get(_LIBRARY_PATH)
    if saved is not None:
        environ[_LIBRARY_PATH] = saved
    elif current is not None and current.split(":")[0] == contents:
        rest = current.split(":", 1)[1:]
        if rest:
            environ[_LIBRARY_PATH] = rest[0]
        else:
            del environ[_LIBRARY_PATH]
    for name in [n for n in environ if n.startswith(_BOOTLOADER_PREFIX)]:
        del environ[name]
