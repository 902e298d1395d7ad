"""A backend written the way a new one would be: one module, one ``BACKEND``.

Secrets live in the config's ``values`` (``KEY=VALUE`` pairs); used by
tests/test_registry.py to show that the core needs nothing else to know about it.
"""

from __future__ import annotations

from launcher.errors import NotFoundError
from launcher.model.config import SourceConfig
from launcher.model.refs import Reference
from launcher.model.settings import setting
from launcher.record import record
from launcher.sources.base import Backend, Secret


@record(kw_only=True)
class MemoryConfig(SourceConfig):
    values: tuple[str, ...] = setting((), "names", help="not really names: KEY=VALUE pairs would not pass; see below")
    label: str = setting("", "text", required=True, missing="a label for messages", help="shown in messages")
    ttl: float = setting(5.0, "duration", positive=True, help="a duration, to show it is read as one")
    mode: str = setting("fast", "choice", choices=("fast", "slow"), help="a choice")
    type: str = "memory"


class MemorySource:
    def __init__(self, config: MemoryConfig) -> None:
        self.name = config.name
        self.config = config

    def fetch(self, path: str, version: str | None) -> Secret:
        if path not in self.config.values:
            raise NotFoundError(f"{self.name}://{path}: not found")
        return Secret(value=f"value-of-{path}", version="1")

    def current_version(self, path: str) -> str | None:
        return "1"

    def close(self) -> None:
        pass


def reference_problem(config: MemoryConfig, ref: Reference) -> str | None:
    return "memory paths are single words" if "/" in ref.path else None


BACKEND = Backend(type="memory", config=MemoryConfig, open=lambda config, events: MemorySource(config), reference_problem=reference_problem,
                  loggers=("memory.lib",), requires=(), extra=None)
