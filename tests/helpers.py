"""Shared test helpers: run the installed launcher, poll with a deadline."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# The console script installed next to the interpreter running the tests.
LAUNCHER = str(Path(sys.executable).with_name("launcher"))
HELPERS_DIR = Path(__file__).parent / "programs"


def launcher_env(extra: Mapping[str, str] | None = None, drop: Sequence[str] = ()) -> dict[str, str]:
    """A clean environment for the launcher: no LAUNCHER_* or Vault/Azure leakage from the host."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAUNCHER_", "VAULT_", "AZURE_", "BAO_"))}
    for name in drop:
        env.pop(name, None)
    env.update(extra or {})
    return env


def run_launcher(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``launcher ARGS`` to completion and capture its output."""
    return subprocess.run(
        [LAUNCHER, *args],
        env=launcher_env() if env is None else dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        check=False,
    )


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
