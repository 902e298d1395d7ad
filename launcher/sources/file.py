"""The ``file`` source: a local YAML or JSON file, checked on every fetch.

``PATH`` walks nested mappings (``app/db`` -> ``data["app"]["db"]``). A
mapping found there becomes the secret's fields; a scalar is the value itself,
exactly as written. Nested mappings and lists become compact JSON.
The version counts the changes of what was found (``ContentVersions``), so
rotation shows as a new version. Each fetch opens the file; it is parsed again
only when it changed (device, inode, size, mtime or ctime), so 100 bindings
into one file parse it once.

Errors: a missing file is 66 (``NotFoundError``), an unreadable one 77
(``AuthError``). A file that can never serve (a directory, larger than
``MAX_FILE_BYTES``, not UTF-8, not YAML) and a value that can never be passed
(one whose aliases would expand it past ``MAX_VALUE_CHARS`` of text, that
refers to itself, or nests deeper than ``MAX_DEPTH``) are 78
(``ManifestError``): retrying cannot help, the file has to change. Messages
name the source, the file and the path, never anything the file holds.
"""

from __future__ import annotations

import os
import stat

import yaml

from launcher.errors import AuthError, ManifestError, NotFoundError
from launcher.model.config import SourceConfig
from launcher.model.refs import FetchKey, Reference
from launcher.model.settings import setting
from launcher.model.yamltext import InvalidYamlError, compose_yaml, decode_text, is_null
from launcher.record import record
from launcher.sources.base import Backend, ContentVersions, Secret

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_VALUE_CHARS = 4 * 1024 * 1024
MAX_DEPTH = 100


@record(kw_only=True)
class FileSourceConfig(SourceConfig):
    """A local YAML or JSON file of secrets: the offline source for demos and tests."""

    path: str = setting("", "path", required=True, missing="the YAML or JSON file of secrets",
                        help="the file, relative to the manifest")
    type: str = "file"


def reference_problem(config: FileSourceConfig, ref: Reference) -> str | None:
    if ref.version is not None:
        return f"{ref.source}:// is a file source, which has no versions: drop ?version="
    return None


Signature = tuple[int, int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns
_VERSIONS = ContentVersions()  # a file has no versions: count the changes this process sees


class FileSource:
    """Reads ``config.path`` on each fetch; cheap, so no caching of its own."""

    local = True  # no network: the resolver reads it on the calling thread

    def __init__(self, config: FileSourceConfig) -> None:
        self.name = config.name
        self.path = config.path
        self._parsed: tuple[Signature, yaml.Node] | None = None  # the last regular file parsed

    def fetch(self, path: str, version: str | None) -> Secret:
        if version is not None:
            raise ManifestError(f"{FetchKey(self.name, path, version)}: ?version= is not supported by a file source")
        node = self._load()
        walked: list[str] = []
        for segment in path.split("/"):
            walked.append(segment)
            child = _lookup(node, segment)
            if child is None:
                raise NotFoundError(f"{self.name}://{path}: {'/'.join(walked)!r} not found in {self.path}")
            node = child
        problem = _unpassable(node)
        if problem is not None:
            raise ManifestError(f"{self.name}://{path}: the value in {self.path} {problem}")
        version_id = _VERSIONS.version((self.path, path), yaml.serialize(node))
        if isinstance(node, yaml.MappingNode):
            return Secret(fields={key: self._text(value, path) for key, value in _items(node)}, version=version_id)
        if is_null(node):
            raise NotFoundError(f"{self.name}://{path}: empty value in {self.path}")
        return Secret(value=self._text(node, path), version=version_id)

    def current_version(self, path: str) -> str | None:
        """The version a fetch would report now (the file is small: re-reading is the check)."""
        return self.fetch(path, None).version

    def _load(self) -> yaml.Node:
        where = f"source {self.name!r}: {self.path}"
        try:
            signature, data, unchanged = self._read_if_changed()
        except FileNotFoundError:
            raise NotFoundError(f"source {self.name!r}: file {self.path} does not exist") from None
        except PermissionError:
            raise AuthError(f"source {self.name!r}: permission denied reading {self.path}") from None
        except IsADirectoryError:
            raise ManifestError(f"{where} is a directory, not a file of secrets") from None
        except OSError as exc:
            raise NotFoundError(f"source {self.name!r}: cannot read {self.path} ({exc.strerror})") from None
        except ValueError:
            raise ManifestError(f"source {self.name!r}: the file's path holds a NUL byte") from None
        if unchanged is not None:
            return unchanged
        node = self._parse(data, where)
        if signature is not None:
            self._parsed = (signature, node)
        return node

    def _read_if_changed(self) -> tuple[Signature | None, bytes, yaml.Node | None]:
        """The file's signature (None unless a regular file) and at most ``MAX_FILE_BYTES + 1``
        bytes, or the document parsed last time when the file has not changed since.

        The signature is taken from the open file, so it describes the bytes read.
        """
        with open(self.path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):  # a pipe or a device has no trustworthy size or times
                return None, fh.read(MAX_FILE_BYTES + 1), None
            signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            last = self._parsed
            if last is not None and last[0] == signature:
                return signature, b"", last[1]
            return signature, fh.read(MAX_FILE_BYTES + 1), None

    def _parse(self, data: bytes, where: str) -> yaml.Node:
        if len(data) > MAX_FILE_BYTES:
            raise ManifestError(f"{where} is larger than 4 MiB")
        try:
            text = decode_text(data)
        except ValueError as exc:
            raise ManifestError(f"{where} is {exc}") from None
        try:
            # A JSON file is also YAML. Composed nodes keep each scalar's source text.
            node = compose_yaml(text)
        except InvalidYamlError as exc:
            # The problem's words are not shown: they may quote the file, which holds secrets.
            line = f":{exc.line}" if exc.line else ""
            raise ManifestError(f"source {self.name!r}: {self.path}{line} is not valid YAML or JSON") from None
        return node if node is not None else yaml.MappingNode("tag:yaml.org,2002:map", [])

    def _text(self, node: yaml.Node, path: str) -> str:
        """A scalar as written (``0755`` stays ``0755``; null is empty); a mapping or
        list as compact JSON with its types (numbers, booleans, null) kept."""
        if isinstance(node, yaml.ScalarNode):
            return "" if is_null(node) else str(node.value)
        try:
            import copy  # only a mapping or list value pays for these
            import json

            # A copy: constructing resolves `<<` merges in place, and the parsed file is kept.
            data = yaml.SafeLoader("").construct_document(copy.deepcopy(node))
            return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):
            raise ManifestError(
                f"{self.name}://{path}: a value in {self.path} cannot be passed as JSON "
                "(a tag, key, date or number that JSON cannot hold)"
            ) from None

    def close(self) -> None:
        return None


def _items(node: yaml.MappingNode) -> list[tuple[str, yaml.Node]]:
    return [(str(k.value), v) for k, v in node.value if isinstance(k, yaml.ScalarNode)]


def _lookup(node: yaml.Node, segment: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((value for key, value in _items(node) if key == segment), None)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _unpassable(root: yaml.Node) -> str | None:
    """Why ``root`` cannot be passed as text (None when it can), judged without expanding it.

    Composed nodes share what aliases point to, so a few lines of anchors can
    stand for gigabytes ("billion laughs"). Each distinct node is measured once
    (iteratively, in post-order): its text size with everything it refers to
    expanded, and its depth. An alias to an enclosing node is a cycle.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()  # the path from root to the node being expanded
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        kids = _children(node)
        if finished:
            open_nodes.discard(key)
            own = len(node.value) + 2 if isinstance(node, yaml.ScalarNode) else 2 + len(kids)
            size[key] = own + sum(size[id(kid)] for kid in kids)
            depth[key] = 1 + max((depth[id(kid)] for kid in kids), default=0)
            if size[key] > MAX_VALUE_CHARS:
                return "would be larger than 4 MiB as text (aliases repeat too much of it)"
            if depth[key] > MAX_DEPTH:
                return f"is nested more than {MAX_DEPTH} levels deep"
            continue
        if key in size:
            continue
        if key in open_nodes:  # everything above its own marker on the stack descends from it
            return "refers to itself through an alias"
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in kids if id(kid) not in size)
    return None


BACKEND = Backend(type="file", config=FileSourceConfig, open=lambda config, events: FileSource(config),
                  reference_problem=reference_problem)
