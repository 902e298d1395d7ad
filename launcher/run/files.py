"""Secret files on tmpfs: a private 0700 directory, 0600 files, atomic writes.

A ``file: true`` binding's value is written to ``<dir>/<VAR>`` with the exact
bytes (no added newline) and the variable holds the path. Writes go to a
temporary name and are renamed into place, so a child re-reading on SIGHUP
never sees a half-written key.

Where the private directory goes (docs/guides/files-and-templates.md): ``process.files_dir`` when set,
else ``$XDG_RUNTIME_DIR`` (per user, tmpfs, cleaned at logout), else
``/dev/shm``, else the temp directory with a warning (it may be on disk).
``run`` makes a new directory and removes it on exit. ``launcher env`` and
``launcher exec`` cannot remove what they hand over, so they reuse one stable
directory per user and manifest (``stable_env_dir``) instead of leaving a new
one behind on every call: a repeated call replaces its files.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Mapping

from launcher.errors import ManifestError

log = logging.getLogger(__name__)


def private_base_dir(environ: Mapping[str, str], files_dir: str | None = None) -> tuple[str, bool]:
    """Where private directories go; returns (directory, private_or_tmpfs).

    The caller warns when the second item is False (the temp directory, maybe on disk).
    Raises ``ManifestError`` (78) when ``files_dir`` is set but cannot be used.
    """
    if files_dir:
        if not os.path.isdir(files_dir) or not os.access(files_dir, os.W_OK | os.X_OK):
            raise ManifestError(f"process.files_dir {files_dir}: not a writable directory")
        return files_dir, True
    for candidate in (environ.get("XDG_RUNTIME_DIR", ""), "/dev/shm"):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return candidate, True
    import tempfile

    return tempfile.gettempdir(), False


def stable_env_dir(environ: Mapping[str, str], files_dir: str | None, manifest_path: str | None) -> str:
    """The one directory ``launcher env`` and ``launcher exec`` write file bindings to, for this user and manifest.

    ``<base>/launcher-env-<uid>/<12 hex of the manifest's absolute path>``, both
    0700 and checked to be ours (the base may be world-writable /dev/shm, where
    anyone could have made that name first). Files in it are overwritten on
    each call; nothing else accumulates.
    """
    base, private = private_base_dir(environ, files_dir)
    if not private:
        log.warning("no tmpfs found (/dev/shm, $XDG_RUNTIME_DIR): secret files go to %s, which may be on disk", base)
    top, leaf = _stable_names(base, manifest_path)
    _own_directory(top)
    return _own_directory(leaf)


def stable_env_path(environ: Mapping[str, str], files_dir: str | None, manifest_path: str | None) -> str:
    """Where ``stable_env_dir`` is, without making it (``check`` measures the paths ``exec`` would pass)."""
    base, _ = private_base_dir(environ, files_dir)
    return _stable_names(base, manifest_path)[1]


def stable_files(environ: Mapping[str, str], files_dir: str | None, manifest_path: str | None) -> SecretFiles:
    """The secret files of ``launcher exec``: nothing is left to remove them after execve, so
    they go to the stable directory of this user and manifest (made on first write), and each
    exec replaces the files of the last instead of adding a directory."""
    return SecretFiles(environ, files_dir, stable=lambda: stable_env_dir(environ, files_dir, manifest_path))


def _stable_names(base: str, manifest_path: str | None) -> tuple[str, str]:
    import hashlib

    top = os.path.join(base, f"launcher-env-{os.getuid()}")
    key = os.path.abspath(manifest_path) if manifest_path else "<no manifest>"
    return top, os.path.join(top, hashlib.sha256(key.encode()).hexdigest()[:12])


def _own_directory(path: str) -> str:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ManifestError(f"cannot create {path} ({(exc.strerror or 'error').lower()})") from None
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ManifestError(f"{path} exists and is not a private directory of this user: remove it or set process.files_dir")
    return path


_Staged = tuple[str, str, bytes, tuple[int, int]]
"""A file written beside its target, not yet renamed: (that file, the target, its bytes, its device and inode)."""


class SecretFiles:
    """The secret files of one launcher process; ``remove`` deletes them all.

    A file goes to ``<private dir>/<VAR>`` (0600), or to the exact ``path`` a
    binding names (``path:``, with its ``mode``). ``directory``: an existing
    private directory to write into (``launcher env``); ``stable``: a function
    that makes (or finds) the directory on first write (``launcher exec``:
    ``stable_env_dir``); by default a new one is made on first write, under
    ``private_base_dir``, and removed by ``remove``.

    A fixed path is only ever replaced or removed while it is still the file
    written there (same device and inode): a file someone put in its place is
    left alone, and the next write refuses it (``fixed_paths.existing_problem``).
    """

    def __init__(self, environ: Mapping[str, str] | None = None, files_dir: str | None = None,
                 directory: str | None = None, stable: Callable[[], str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._files_dir = files_dir
        self.directory: str | None = directory
        self._stable = stable
        self._owned = directory is None and stable is None  # only a directory we made is ours to remove
        self._contents: dict[str, bytes] = {}  # path written -> its content
        self._inodes: dict[str, tuple[int, int]] = {}  # path written -> (device, inode) of what we wrote

    def _ensure_dir(self) -> str:
        if self.directory is None and self._stable is not None:
            self.directory = self._stable()
        if self.directory is None:
            base, private = private_base_dir(self._environ, self._files_dir)
            if not private:
                log.warning("no tmpfs found (/dev/shm, $XDG_RUNTIME_DIR): secret files go to %s, which may be on disk", base)
            import tempfile  # only a run with secret files pays for it

            self.directory = tempfile.mkdtemp(prefix="launcher-", dir=base)  # mode 0700
        return self.directory

    def path_of(self, name: str) -> str:
        return os.path.join(self._ensure_dir(), name)

    def write_all(self, values: Mapping[str, str], paths: Mapping[str, tuple[str, int]] | None = None) -> tuple[dict[str, str], list[str]]:
        """Write every file binding (``paths``: name -> (fixed path, mode) for ``path:`` bindings);
        return (name -> path, names whose content changed). Files no binding holds any more go.

        Every changed file is written out (and synced) first, then they are renamed into
        place one right after the other: files that belong together (a certificate and its
        key, issued at once) change within microseconds of each other, never a sync apart.
        A reader never sees half a file, and a symlink at a target is replaced, never followed.
        """
        paths = paths or {}
        written: dict[str, str] = {}
        staged: list[tuple[str, _Staged]] = []
        try:
            for name, content in values.items():
                path, mode = paths.get(name, (None, 0o600))
                if (ready := self._stage(name, content, path, mode)) is not None:
                    staged.append((name, ready))
                written[name] = path or self.path_of(name)
        except BaseException:
            for _, ready in staged:
                _unlink(ready[0])
            raise
        for done, (_, ready) in enumerate(staged):
            try:
                self._commit(ready)
            except BaseException:
                for _, later in staged[done + 1:]:
                    _unlink(later[0])
                raise
        for stale in set(self._contents) - set(written.values()):
            self._forget(stale)
        return written, [name for name, _ in staged]

    def _stage(self, name: str, content: str, path: str | None, mode: int) -> _Staged | None:
        """The content written and synced to a new file beside its target: (that file, the target, the bytes,
        its device and inode); None when the target still holds it. ``ManifestError`` for a fixed path
        that holds what ``path:`` may not replace."""
        data = content.encode("utf-8", "surrogateescape")
        target = path or self.path_of(name)
        if self._contents.get(target) == data and self._still_ours(target):
            return None
        if path is not None and not self._still_ours(target):
            from launcher.manifest.fixed_paths import existing_problem

            problem = existing_problem(target)
            if problem is not None:
                raise ManifestError(f"{target} {problem}")
        directory = os.path.dirname(target)
        try:
            import tempfile

            fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", dir=directory)  # mode 0600
        except OSError as exc:
            raise ManifestError(f"cannot write {target} ({(exc.strerror or 'error').lower()})") from None
        try:
            with os.fdopen(fd, "wb") as fh:
                if mode != 0o600:
                    os.fchmod(fh.fileno(), mode)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
                info = os.fstat(fh.fileno())
        except BaseException:
            _unlink(tmp)
            raise
        return tmp, target, data, (info.st_dev, info.st_ino)

    def _commit(self, staged: _Staged) -> None:
        """Rename a staged file over its target."""
        tmp, target, data, inode = staged
        try:
            os.replace(tmp, target)
        except BaseException:
            _unlink(tmp)
            raise
        self._contents[target] = data
        self._inodes[target] = inode

    def _still_ours(self, path: str) -> bool:
        """True while ``path`` is the very file we wrote there (not replaced, not removed)."""
        written = self._inodes.get(path)
        if written is None:
            return False
        try:
            info = os.lstat(path)
        except OSError:
            return False
        return stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) == written

    def remove(self) -> None:
        """Delete every file written that is still ours (a fixed path too) and the directory we made; safe to call twice."""
        for path in list(self._contents):
            self._forget(path)
        if self.directory is not None and self._owned:
            import shutil  # with its archive modules: only a run that wrote files pays for it

            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def _forget(self, path: str) -> None:
        """Remove ``path`` if it is still the file we wrote, and stop tracking it."""
        if self._still_ours(path):
            _unlink(path)
        self._contents.pop(path, None)
        self._inodes.pop(path, None)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
