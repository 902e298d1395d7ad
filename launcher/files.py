"""Secret files on tmpfs: a private 0700 directory, 0600 files, atomic writes.

A ``file: true`` binding's value is written to ``<dir>/<VAR>`` with the exact
bytes (no added newline) and the variable holds the path. Writes go to a
temporary name and are renamed into place, so a child re-reading on SIGHUP
never sees a half-written key.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping

log = logging.getLogger(__name__)


def private_base_dir(environ: Mapping[str, str]) -> tuple[str, bool]:
    """Where secret files go: /dev/shm, else $XDG_RUNTIME_DIR, else the temp dir.

    Returns (directory, on_tmpfs); the caller warns when not on tmpfs.
    """
    for candidate in ("/dev/shm", environ.get("XDG_RUNTIME_DIR", "")):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return candidate, True
    return tempfile.gettempdir(), False


class SecretFiles:
    """The secret files of one launcher process; ``remove`` deletes them all."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self.directory: str | None = None
        self._contents: dict[str, bytes] = {}

    def _ensure_dir(self) -> str:
        if self.directory is None:
            base, on_tmpfs = private_base_dir(self._environ)
            if not on_tmpfs:
                log.warning("no tmpfs found (/dev/shm, $XDG_RUNTIME_DIR): secret files go to %s, which may be on disk", base)
            self.directory = tempfile.mkdtemp(prefix="launcher-", dir=base)  # mode 0700
        return self.directory

    def path_of(self, name: str) -> str:
        return os.path.join(self._ensure_dir(), name)

    def write(self, name: str, content: str) -> bool:
        """Write ``content`` for variable ``name`` atomically; True when it changed."""
        data = content.encode("utf-8", "surrogateescape")
        if self._contents.get(name) == data and os.path.exists(self.path_of(name)):
            return False
        directory = self._ensure_dir()
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, os.path.join(directory, name))
        except BaseException:
            _unlink(tmp)
            raise
        self._contents[name] = data
        return True

    def write_all(self, values: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
        """Write every file binding; return (name -> path, names whose content changed)."""
        changed = [name for name, content in values.items() if self.write(name, content)]
        for stale in set(self._contents) - set(values):
            _unlink(self.path_of(stale))
            del self._contents[stale]
        return {name: self.path_of(name) for name in values}, changed

    def remove(self) -> None:
        """Delete the directory and everything in it; safe to call twice."""
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
            self._contents.clear()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
