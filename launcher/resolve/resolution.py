"""What one resolution produced, and the one verdict on it.

A ``Resolution`` is immutable: the CLI, the Python API, the watcher and the
supervisor read it, none changes it (a command that finds more at fault makes a
new one with ``with_failure``). ``failure()`` is the only answer to "did it fail,
and with what?"; ``changed_names`` the only diff of two environments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import field

from launcher.errors import CompoundError, LauncherError, ManifestError
from launcher.model.refs import FetchKey
from launcher.record import record
from launcher.resolve.bindings import BindingResult
from launcher.sources.base import Secret


@record
class Resolution:
    """Everything one resolution produced. Values are hidden from the repr."""

    results: tuple[BindingResult, ...]
    values: Mapping[str, str] = field(repr=False)
    files: frozenset[str]
    secrets: Mapping[FetchKey, Secret] = field(repr=False)
    errors: tuple[LauncherError, ...]
    sources_used: frozenset[str] = frozenset()

    def failure(self) -> LauncherError | None:
        """All or nothing: None when every binding resolved; else the failure to report.

        One failing binding is its own error (a ``NotFoundError`` stays one, for
        ``except`` clauses); several are a ``CompoundError`` listing each in manifest
        order, with the exit code of the most fundamental (78 > 77 > 69 > 66).
        """
        errors = self.errors_in_order()
        if not errors:
            return None
        return errors[0] if len(errors) == 1 else CompoundError(errors)

    def changed_names(self, other: Resolution) -> frozenset[str]:
        """The variables whose value differs between ``other`` and this resolution (added and removed included)."""
        return frozenset(n for n in self.values.keys() | other.values.keys() if self.values.get(n) != other.values.get(n))

    def with_failure(self, error: ManifestError) -> Resolution:
        """This resolution with ``error`` added; the binding it names (``env.NAME...``) becomes ``invalid``."""
        at_fault = (error.field or "").split(".")[1:2]
        results = tuple(dataclasses.replace(r, status="invalid", version=None, error=error) if [r.name] == at_fault else r
                        for r in self.results)
        return dataclasses.replace(self, results=results, errors=(*self.errors, error))

    def secret_values(self) -> dict[tuple[str, ...], str]:
        """Every text of a secret the child can see, by where it came from: what output
        masking conceals (``launcher.resolve.visible``)."""
        from launcher.resolve.visible import visible_values  # only masking pays for it

        return visible_values(self.results, self.secrets)

    def where_of(self) -> dict[str, str]:
        """Variable name -> file:line of its binding, for messages about the environment as a whole."""
        return {r.name: r.where for r in self.results}

    def errors_in_order(self) -> list[LauncherError]:
        """Every failure, in manifest order (inline references, from the environment, last)."""
        failed = [r for r in self.results if r.error is not None]
        failed.sort(key=lambda r: _position(r.where))
        shown = [r.error for r in failed if r.error is not None]
        return shown + [e for e in self.errors if not any(e is s for s in shown)]


def _position(where: str) -> tuple[int, str, int]:
    """Sort key of a ``file:line`` (``<environment>`` after every file)."""
    name, _, line = where.rpartition(":")
    if name and line.isdigit():
        return (0, name, int(line))
    return (1, where, 0)
