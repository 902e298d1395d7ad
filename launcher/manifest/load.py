"""Manifest loading: YAML -> validated ``config.Manifest``, errors with file:line.

The YAML is composed into nodes (not constructed into Python objects) so that
every value keeps its line and its source text: ``0755`` stays ``0755``, and a
boolean or null where a string belongs is refused with a hint to quote it.
Unknown keys anywhere are errors, so a typo never passes silently.

Sections and sources are read from their dataclasses (``config.setting``
metadata; a source's dataclass is its backend's, found through the source
registry), so an allowed key cannot drift from its field. Independent problems
are all collected, in file order (``reader.Reader``); problems that make
further reading meaningless (unreadable file, invalid YAML, a top level that is
not a mapping, a missing or unsupported ``version``) stop at once.

Bounds, so that no input can hang or crash the reader: the file is at most
``MAX_MANIFEST_BYTES``; ``${...}`` nesting is capped in ``interpolate``; YAML
nesting is capped by libyaml (1000 levels); aliases may repeat at most
``reader.MAX_ALIAS_EXPANSION`` units of the manifest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from launcher.errors import ManifestError
from launcher.manifest.document import ManifestReader
from launcher.manifest.mapping import parse_mapping
from launcher.manifest.textfile import MAX_MANIFEST_BYTES, read_capped
from launcher.model.config import Manifest
from launcher.model.yamltext import InvalidYamlError, compose_yaml, decode_text, line_of

DEFAULT_MANIFEST = "launcher.yaml"


def find(path: str | os.PathLike[str] | Mapping[str, Any] | None, environ: Mapping[str, str] | None = None) -> Manifest:
    """The manifest at ``path`` (78 when missing), else ``./launcher.yaml`` when it exists, else
    none (the built-in sources only). The CLI and the Python API find it the same way. A
    mapping (parsed YAML, for the Python API) is read as the file holding it would be
    (``launcher.manifest.mapping``)."""
    if isinstance(path, Mapping):
        return parse_mapping(path, os.environ if environ is None else environ)
    if path is not None:
        return load_manifest(path, environ)
    if os.path.exists(DEFAULT_MANIFEST):
        return load_manifest(DEFAULT_MANIFEST, environ)
    return Manifest()


def load_manifest(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Manifest:
    """Read and validate a manifest file; ``ManifestError`` (78) on any problem.

    A file that cannot be read as a manifest (missing, a directory, not
    permitted, larger than 4 MiB, not UTF-8) names the file alone as ``where``.
    """
    name = os.fspath(path)
    try:
        data = read_capped(name, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise ManifestError("manifest not found", where=name) from None
    except IsADirectoryError:
        raise ManifestError("is a directory, not a manifest file", where=name) from None
    except PermissionError:
        raise ManifestError("permission denied (cannot read the manifest)", where=name) from None
    except OSError as exc:
        raise ManifestError(f"cannot read manifest ({(exc.strerror or 'read error').lower()})", where=name) from None
    except ValueError:
        raise ManifestError("the manifest path holds a NUL byte", where=name) from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError("larger than 4 MiB; a manifest is a small text file", where=name)
    try:
        text = decode_text(data)
    except ValueError as exc:
        raise ManifestError(str(exc), where=name) from None
    return parse_manifest(text, name, os.environ if environ is None else environ)


def parse_manifest(text: str, filename: str, environ: Mapping[str, str]) -> Manifest:
    """Validate manifest ``text``; relative paths are taken from ``filename``'s directory."""
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError("larger than 4 MiB; a manifest is a small text file", where=filename)
    nul = text.find("\x00")
    if nul >= 0:
        raise ManifestError("holds a NUL byte; a manifest must be text (save it as UTF-8)", where=f"{filename}:{line_of(text, nul)}")
    try:
        root = compose_yaml(text)
    except InvalidYamlError as exc:
        raise ManifestError(f"invalid YAML: {exc}", where=f"{filename}:{exc.line or 1}") from None
    if root is None:
        raise ManifestError("empty manifest (at least `version: 1` is required)", where=f"{filename}:1")
    return ManifestReader(filename, environ).manifest(root)
