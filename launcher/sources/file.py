"""The ``file`` source: a local YAML or JSON file, re-read on every fetch.

``PATH`` walks nested mappings (``app/db`` -> ``data["app"]["db"]``). A
mapping found there becomes the secret's fields; a scalar is the value itself.
The version is a hash of what was found, so rotation shows as a new version.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from launcher.config import FileSourceConfig
from launcher.errors import AuthError, ManifestError, NotFoundError
from launcher.sources import Secret, to_text


class FileSource:
    """Reads ``config.path`` on each fetch; cheap, so no caching of its own."""

    def __init__(self, config: FileSourceConfig) -> None:
        self.name = config.name
        self.path = config.path

    def fetch(self, path: str, version: str | None) -> Secret:
        if version is not None:
            raise ManifestError(f"{self.name}://{path}: ?version= is not supported by a file source")
        node: Any = self._load()
        walked: list[str] = []
        for segment in path.split("/"):
            walked.append(segment)
            if not isinstance(node, dict) or segment not in node:
                raise NotFoundError(f"{self.name}://{path}: {'/'.join(walked)!r} not found in {self.path}")
            node = node[segment]
        digest = hashlib.sha256(json.dumps(node, sort_keys=True, default=str).encode()).hexdigest()[:12]
        if isinstance(node, dict):
            return Secret(fields={str(k): to_text(v) for k, v in node.items()}, version=digest)
        if node is None:
            raise NotFoundError(f"{self.name}://{path}: empty value in {self.path}")
        return Secret(value=to_text(node), version=digest)

    def current_version(self, path: str) -> str | None:
        """The hash a fetch would report now (the file is small: re-reading is the check)."""
        return self.fetch(path, None).version

    def _load(self) -> Any:
        try:
            with open(self.path, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            raise NotFoundError(f"source {self.name!r}: file {self.path} does not exist") from None
        except PermissionError:
            raise AuthError(f"source {self.name!r}: permission denied reading {self.path}") from None
        except OSError as exc:
            raise NotFoundError(f"source {self.name!r}: cannot read {self.path} ({exc.strerror})") from None
        try:
            # A JSON file is also YAML; BaseLoader keeps every scalar as its source text.
            data = yaml.load(text, Loader=yaml.BaseLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            raise ManifestError(f"source {self.name!r}: {self.path}{line} is not valid YAML or JSON") from None
        return data if data is not None else {}

    def close(self) -> None:
        return None
