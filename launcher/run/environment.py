"""What the child sees: its environment, built in one place for ``run``, ``exec``, ``env`` and ``check``.

The inherited environment (or, with ``pristine``, only the names in
``inherit``), minus ``scrub`` unless in ``passthrough``, plus the bindings,
which always win. A ``file: true`` binding reaches the child as the path of a
private file holding its value (``files.SecretFiles``). See
docs/architecture.md, "What the child sees".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from launcher.errors import ManifestError
from launcher.manifest.fixed_paths import problems as path_problems
from launcher.manifest.regular_files import MAX_REGULAR_BYTES
from launcher.model.config import Manifest, ProcessConfig
from launcher.resolve.resolution import Resolution
from launcher.run.files import SecretFiles, stable_env_dir, stable_env_path

log = logging.getLogger(__name__)


def child_environment(inherited: Mapping[str, str], bindings: Mapping[str, str], process: ProcessConfig) -> dict[str, str]:
    """The child's environment: inherited (or only ``inherit`` when pristine), minus
    ``scrub`` unless in ``passthrough``, plus the bindings, which always win."""
    if process.pristine:
        base = {k: inherited[k] for k in process.inherit if k in inherited}
    else:
        base = dict(inherited)
    for name in process.scrub:
        if name not in process.passthrough:
            base.pop(name, None)
    base.update(bindings)
    return base


class ChildEnvironment:
    """Builds the child's environment from a resolution, writing its secret files.

    ``files`` is where ``file: true`` values go (None: a private directory made
    on first use, under ``process.files_dir`` / ``$XDG_RUNTIME_DIR`` / ``/dev/shm``).
    """

    def __init__(self, manifest: Manifest, inherited: Mapping[str, str], files: SecretFiles | None = None) -> None:
        self.process = manifest.process
        self.manifest = manifest
        self.inherited = dict(inherited)
        self.files = files if files is not None else SecretFiles(self.inherited, self.process.files_dir)

    def preview(self) -> dict[str, str]:
        """The environment before any secret is fetched (literal bindings only): where to find the command."""
        literals = {b.name: "".join(p for p in b.parts if isinstance(p, str)) for b in self.manifest.bindings if b.is_literal}
        return child_environment(self.inherited, literals, self.process)

    def bindings(self, resolution: Resolution) -> dict[str, str]:
        """The bindings as the child gets them: ``file: true`` values written (atomically,
        only when changed) and replaced by their paths. ``ManifestError`` (78, naming the
        binding) for a file that may not be written (``check_files``)."""
        values = dict(resolution.values)
        file_values = {k: v for k, v in values.items() if k in resolution.files}
        if file_values:
            self.check_files(resolution)
            written, _ = self.files.write_all(file_values, self.fixed_paths)
            values.update(written)
        return values

    def check_files(self, resolution: Resolution) -> None:
        """What writing the secret files would refuse, before anything is written (``check`` asks too):
        ``check_paths``, and a file over 4 MiB (larger is 78, never cut)."""
        self.check_paths()
        where = resolution.where_of()
        for name in sorted(resolution.files):
            size = len(resolution.values.get(name, "").encode("utf-8", "surrogateescape"))
            if size > MAX_REGULAR_BYTES:
                raise binding_error(f"{name} would write a file of {size} bytes, over the 4 MiB a secret file may hold",
                                    name, where)

    def check_paths(self) -> None:
        """``ManifestError`` (78, naming the binding) when a ``path:`` is in a directory that does
        not exist or may not own its file (``fixed_paths``: asked again before each write, since
        the file system may have changed after the manifest was read)."""
        for binding in self.manifest.env:
            if binding.path is not None and not os.path.isdir(os.path.dirname(binding.path)):
                raise ManifestError(f"{os.path.dirname(binding.path)} does not exist: create the directory first",
                                    where=binding.where, field=f"env.{binding.name}.path")
        for binding, problem in path_problems(self.manifest):
            raise ManifestError(problem, where=binding.where, field=f"env.{binding.name}.path")

    @property
    def fixed_paths(self) -> dict[str, tuple[str, int]]:
        """name -> (path, mode) of the bindings written at a path of their own (``path:``)."""
        return {b.name: (b.path, b.mode) for b in self.manifest.env if b.path is not None}

    def build(self, resolution: Resolution) -> dict[str, str]:
        """The whole environment for a child started with ``resolution``."""
        return child_environment(self.inherited, self.bindings(resolution), self.process)

    def stand_in(self, resolution: Resolution) -> dict[str, str]:
        """The whole environment as ``exec`` would pass it, with a stand-in path for each
        secret file and nothing written (``check`` measures it against execve's limits)."""
        directory = stable_env_path(self.inherited, self.process.files_dir, self.manifest.path)
        fixed = self.fixed_paths
        values = {k: (fixed[k][0] if k in fixed else os.path.join(directory, k)) if k in resolution.files else v
                  for k, v in resolution.values.items()}
        return child_environment(self.inherited, values, self.process)


def env_values(manifest: Manifest, resolution: Resolution, inherited: Mapping[str, str]) -> dict[str, str]:
    """What ``launcher env`` prints: the bindings, each ``file: true`` one as the path of its file,
    written to one stable directory per user and manifest, overwritten on each call (the printed
    paths must outlive this process, and a new directory per call would pile up)."""
    if not resolution.files:
        return dict(resolution.values)
    directory = stable_env_dir(inherited, manifest.process.files_dir, manifest.path)
    log.debug("secret files written to %s (reused by every `launcher env` of this manifest)", directory)
    return ChildEnvironment(manifest, inherited, SecretFiles(directory=directory)).bindings(resolution)


def binding_error(message: str, name: str, where_of: Mapping[str, str]) -> ManifestError:
    """``ManifestError`` about variable ``name``, naming its binding's file:line and ``env.NAME`` when it has one."""
    return ManifestError(message, where=where_of.get(name), field=f"env.{name}" if name in where_of else None)
