"""The manifest: YAML -> a validated ``launcher.model.config.Manifest``, every problem with file:line.

``find`` locates it as the CLI and the Python API do, ``load_manifest`` reads a
file, ``parse_manifest`` reads text. See ``launcher.manifest.load``.
"""

from launcher.manifest.load import DEFAULT_MANIFEST, find, load_manifest, parse_manifest
from launcher.manifest.textfile import MAX_MANIFEST_BYTES

__all__ = ["DEFAULT_MANIFEST", "MAX_MANIFEST_BYTES", "find", "load_manifest", "parse_manifest"]
