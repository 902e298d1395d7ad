"""launcher: put secrets into a process's environment, and supervise it.

From Python (docs/guides/python.md)::

    import launcher

    env = launcher.load("launcher.yaml")        # Secrets: read-only mapping, repr shows names only
    env = launcher.load({"version": 1, "env": {"DB": "vault://secret/app/db#password"}})   # or parsed YAML
    with launcher.Client("launcher.yaml") as client:
        password = client.get("vault://secret/app/db#password")

The names below are imported on first use (PEP 562), so ``import launcher``
itself costs next to nothing and never imports click, YAML or a backend SDK.
"""

# Not ``from typing import TYPE_CHECKING``: importing typing alone costs more than the rest of
# ``import launcher``; type checkers read the constant by its name.
TYPE_CHECKING = False

__version__ = "0.1.0"

# name -> the module that defines it
_LAZY = {
    "Client": "launcher.api",
    "Secrets": "launcher.api",
    "WatchHandle": "launcher.api",
    "load": "launcher.api",
    "get": "launcher.api",
    "aload": "launcher.api",
    "read_manifest": "launcher.api",
    "Manifest": "launcher.model.config",
    "LauncherError": "launcher.errors",
    "NotFoundError": "launcher.errors",
    "AuthError": "launcher.errors",
    "UnavailableError": "launcher.errors",
    "ManifestError": "launcher.errors",
    "CompoundError": "launcher.errors",
}

__all__ = [
    "AuthError",
    "Client",
    "CompoundError",
    "LauncherError",
    "Manifest",
    "ManifestError",
    "NotFoundError",
    "Secrets",
    "UnavailableError",
    "WatchHandle",
    "__version__",
    "aload",
    "get",
    "load",
    "read_manifest",
]

if TYPE_CHECKING:
    from launcher.api import Client, Secrets, WatchHandle, aload, get, load, read_manifest
    from launcher.errors import AuthError, CompoundError, LauncherError, ManifestError, NotFoundError, UnavailableError
    from launcher.model.config import Manifest
else:
    # Hidden from type checkers, so a misspelt ``launcher.lod`` is an error there, not ``Any``.
    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(module), name)
        globals()[name] = value  # later lookups find it without coming here
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_LAZY})
