"""The backends behind the registry's names: imported on demand, asked for configs, reference rules and sources.

The registry (``launcher.sources.registry``) knows every type by name; this module
imports a backend's module when a manifest first uses its type, caps the loggers it
declares, and answers what the layers above ask of a source name: its config (declared,
or the built-in of that name), what is wrong with a reference to it, and an opened source.
"""

from __future__ import annotations

import logging
from functools import cache

from launcher.errors import ManifestError
from launcher.events import NOTHING, EventSink
from launcher.model.config import Manifest, SourceConfig
from launcher.model.refs import Reference
from launcher.sources.base import Backend, Source
from launcher.sources.registry import REGISTRY


@cache
def backend(kind: str) -> Backend:
    """The backend of ``type: kind`` (its module imported now); ``KeyError`` when unknown."""
    # __import__ (what an import statement runs) rather than importlib.import_module: the
    # same module, and `python -X importtime` shows it, which the import-cost tests read.
    declared: Backend = __import__(REGISTRY[kind].module, fromlist=["BACKEND"]).BACKEND
    for name in declared.loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    return declared


def missing_requirement(kind: str) -> str | None:
    """Why a source of ``type: kind`` cannot be opened here (its extra is not installed), or None."""
    import importlib.util

    declared = backend(kind)
    for module in declared.requires:
        if importlib.util.find_spec(module) is None:
            extra = f" (pip install 'secret-launcher[{declared.extra}]')" if declared.extra else ""
            return f"type {kind} needs {module}, which is not installed{extra}"
    return None


def source_config(manifest: Manifest, name: str) -> SourceConfig:
    """The declared source called ``name``, or the built-in of that name; ``KeyError`` otherwise."""
    if name in manifest.sources:
        return manifest.sources[name]
    if name in REGISTRY and REGISTRY[name].builtin:
        return backend(name).config(name=name)
    raise KeyError(name)


def reference_problem(manifest: Manifest, ref: Reference) -> str | None:
    """What is wrong with ``ref`` for its source's type, found without any request."""
    config = source_config(manifest, ref.source)
    declared = backend(config.type)
    if ref.data and not declared.request_data:
        return DATA_PROBLEM.format(names=", ".join(name for name, _ in ref.data))
    return declared.reference_problem(config, ref)


DATA_PROBLEM = ("unsupported query ({names}): only ?version=V is allowed (?label=L for SSM), or request data for a Vault pki mount's "
                "issue/ROLE or a transit mount's decrypt/KEY")
"""Request data where it cannot go; names only (a value may be sensitive)."""


def open_source(config: SourceConfig, events: EventSink = NOTHING) -> Source:
    """Build the backend for ``config``, importing its SDK only now; it tells ``events``
    what it does on its own (logins, lease revocations).

    Raises ``ManifestError`` (78) when the backend's extra is not installed.
    """
    problem = missing_requirement(config.type)
    if problem is not None:
        raise ManifestError(f"source {config.name!r}: {problem}")
    return backend(config.type).open(config, events)
