"""What a ``path:`` binding may own: it destroys nothing (docs/guides/files-and-templates.md).

A binding with ``path:`` owns that file: the launcher replaces it on every
write and removes it when ``run`` ends. So the path must never be a file the
launcher reads or writes for another reason (the manifest, a template, an env
file, a file any setting names: a ``file`` source's file, a CA bundle, the audit trail),
nor another binding's ``path:``; and what is there already must be a regular
file of the launcher's own user (a restarted container finds the file its
previous run left): never a directory, a FIFO, a device or a symbolic link,
never another user's file.

Files are compared by identity, not by spelling: the real path (symbolic
links and ``..`` resolved) and, where both exist, device and inode (a hard
link is the same file).

``problems`` is pure inspection (``lstat``, ``stat``, ``realpath``): the
manifest reader calls it so that ``check --offline`` refuses what ``run``
would, and the writer calls it again before each write (the file system may
have changed since). Nothing here writes.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterator
from typing import Any

from launcher.manifest.regular_files import kind_of
from launcher.model.config import Binding, Manifest
from launcher.record import record


@record
class Identity:
    """Which file a path names: its real path, and (device, inode) when it exists."""

    real: str
    inode: tuple[int, int] | None

    def same(self, other: Identity) -> bool:
        return self.real == other.real or (self.inode is not None and self.inode == other.inode)


def identity(path: str) -> Identity:
    real = os.path.realpath(path)
    try:
        info = os.stat(real)
    except (OSError, ValueError):
        return Identity(real, None)
    return Identity(real, (info.st_dev, info.st_ino))


def existing_problem(path: str) -> str | None:
    """Why ``path:`` may not replace what is at ``path`` now; None when nothing is there
    or it is a regular file of this user (the one thing ``path:`` replaces)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return "a component of the path is not a directory"
    except OSError as exc:
        return f"cannot be inspected ({(exc.strerror or 'error').lower()})"
    if stat.S_ISLNK(info.st_mode):
        return ("is a symbolic link: `path:` owns its file and never writes through a link "
                "(name the file itself, or remove the link)")
    if not stat.S_ISREG(info.st_mode):
        return f"is {kind_of(info.st_mode)}: `path:` owns a regular file it may replace and remove"
    if info.st_uid != os.geteuid():
        return (f"is a file of another user ({_owner(info.st_uid)}): `path:` would replace it and remove it on exit; "
                "remove it, or write elsewhere")
    return None


def problems(manifest: Manifest) -> Iterator[tuple[Binding, str]]:
    """Each ``path:`` binding that may not own its path, with why (in manifest order)."""
    if all(binding.path is None for binding in manifest.env):
        return  # nothing to stat (a manifest of thousands of plain bindings pays nothing)
    protected = [(identity(path), what) for path, what in _read_files(manifest)]
    owned: list[tuple[Identity, Binding]] = []
    for binding in manifest.env:
        if binding.path is None:
            continue
        mine = identity(binding.path)
        clash = next((what for other, what in protected if mine.same(other)), None)
        earlier = next((b for other, b in owned if mine.same(other)), None)
        if clash is not None:
            yield binding, f"{binding.path} is {clash}: `path:` would replace it and remove it on exit"
        elif earlier is not None:
            yield binding, (f"{binding.path} is also the path of {earlier.name} ({earlier.where}): "
                            "two bindings cannot own one file")
        else:
            problem = existing_problem(binding.path)
            if problem is not None:
                yield binding, f"{binding.path} {problem}"
        owned.append((mine, binding))


def _read_files(manifest: Manifest) -> Iterator[tuple[str, str]]:
    """(path, what it is) of every file the manifest is read from or names in a setting."""
    if manifest.path:
        yield manifest.path, "the manifest"
    for binding in manifest.env:
        if binding.template is not None:
            yield binding.template, f"the template of {binding.name}"
    for env_file in manifest.env_files:
        yield env_file.path, f"the env file {env_file.path}"
    for name, source in manifest.sources.items():
        for field, path in _path_settings(source):
            yield path, f"the {field} of source {name!r}" if field != "path" else f"the file of source {name!r}"
    for section in ("audit", "process"):
        for field, path in _path_settings(getattr(manifest, section)):
            yield path, f"{section}.{field}" if (section, field) != ("audit", "path") else "the audit trail"


def _path_settings(config: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(field, path) of every setting of kind ``path`` in a settings dataclass, nested sections included."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.metadata.get("kind") == "path" and isinstance(value, str) and value:
            yield prefix + field.name, value
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from _path_settings(value, f"{prefix}{field.name}.")


def _owner(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"
