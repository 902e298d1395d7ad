"""``launcher copy DEST``: put the running bundle at ``DEST/launcher/``, whole or not at all.

For a Kubernetes init container that stages the launcher into a volume it shares with the
application's container (an ``emptyDir``), and for any image step that wants the launcher
somewhere else. The copy is made in a private directory beside the target, then renamed
into place: a reader of ``DEST/launcher`` sees nothing or a complete bundle, never a half
copy. Symbolic links inside the bundle stay links (PyInstaller makes some; following them
would duplicate libraries).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from pathlib import Path

from launcher.bundle import BUILD_HINT, NotABundleError, bundle_root
from launcher.errors import UsageError, WouldOverwriteError, one_line

log = logging.getLogger("launcher")

TARGET_NAME = "launcher"


def copy_bundle(dest: str | os.PathLike[str], force: bool = False, source: Path | None = None) -> Path:
    """Copy the bundle at ``source`` (default: the one running) to ``dest/launcher``; returns that path.

    ``dest`` is created when missing. With ``force`` an existing ``dest/launcher`` is
    replaced: the old one is renamed away, the new one renamed in, the old one removed.
    Raises ``NotABundleError`` (78) when not running from a bundle,
    ``WouldOverwriteError`` (73) when ``dest/launcher`` exists and ``force`` is off, and
    ``UsageError`` (2) when ``dest`` cannot be written or lies inside the bundle.
    """
    if source is None:
        source = bundle_root()
        if source is None:
            raise NotABundleError(f"only a bundle can be copied, and this launcher runs on an installed Python ({BUILD_HINT})")
    parent = Path(dest)
    target = parent / TARGET_NAME
    shown = one_line(str(target))
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {one_line(str(parent))}: {exc.strerror}") from None
    if parent.resolve().is_relative_to(source.resolve()):
        raise UsageError(f"{one_line(str(parent))} is inside the bundle being copied ({one_line(str(source))})")
    if os.path.lexists(target) and not force:
        raise WouldOverwriteError(f"{shown} already exists (use --force to replace it)")
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{TARGET_NAME}-copy-", dir=parent))
    except OSError as exc:
        raise UsageError(f"cannot write in {one_line(str(parent))}: {exc.strerror}") from None
    try:
        fresh = staging / TARGET_NAME
        try:
            shutil.copytree(source, fresh, symlinks=True)
        except (OSError, shutil.Error) as exc:
            raise UsageError(f"cannot copy the bundle to {shown}: {_reason(exc)}") from None
        _move_into_place(fresh, target, staging / "replaced", force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _warn_if_noexec(parent)
    return target


def _move_into_place(fresh: Path, target: Path, aside: Path, force: bool) -> None:
    """Rename ``fresh`` to ``target``; with ``force`` an existing ``target`` goes to ``aside``
    first (and comes back if the second rename fails)."""
    shown = one_line(str(target))
    moved_aside = False
    try:
        if force and os.path.lexists(target):
            os.rename(target, aside)
            moved_aside = True
        os.rename(fresh, target)
    except OSError as exc:
        if moved_aside:
            os.rename(aside, target)
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
            # Created by someone else since the check above.
            raise WouldOverwriteError(f"{shown} already exists (use --force to replace it)") from None
        raise UsageError(f"cannot move the copy to {shown}: {exc.strerror}") from None


def _reason(exc: OSError | shutil.Error) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return "some files could not be copied"


def _warn_if_noexec(directory: Path) -> None:
    """A copy on a ``noexec`` mount cannot be started from there: say so now, not at the
    application's first start."""
    try:
        noexec = bool(os.statvfs(directory).f_flag & os.ST_NOEXEC)
    except OSError:
        return
    if noexec:
        log.warning("%s is mounted noexec: the launcher copied there cannot be run from it", one_line(str(directory)))
