"""The ``ssm`` source: AWS Systems Manager Parameter Store through boto3 (docs/guides/aws-ssm.md).

``ssm:///NAME[?version=N|?label=L][#KEY]``: the grammar drops NAME's leading ``/`` and each
request puts it back; ``?label=L`` is kept as ``NAME:L`` (SSM's selector), so a moved label
is a rotation. SecureString values are decrypted; ``#KEY`` is the resolver's ``select``.
A fetch of ``/P`` without a selector reads the parameter ``/P``, and when there is none
every parameter under ``/P/`` (recursive, all pages) as fields named below it; a parameter
at exactly ``/P`` wins. That is how ``env_from: {ref: "ssm:///app/"}`` loads a tree.

Batches use ``GetParameters`` (10 names a call), each answer tied to its request by the
name it carries; what is not answered is left to ``fetch``. Versions come from
``DescribeParameters`` (no value, no KMS call), else from an undecrypted read; a tree's is
a digest of its names and versions. Errors: SSM's own codes (``_client_error``), then
``aws.map_error``; region, endpoint (``AWS_ENDPOINT_URL_SSM`` first), credentials,
timeouts and botocore's retries (off) are those of ``aws``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from launcher import deadline
from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError, TransientError
from launcher.model.refs import FetchKey, Reference
from launcher.model.settings import setting
from launcher.record import record
from launcher.sources.aws import CONNECT_TIMEOUT, MAX_POOL, READ_TIMEOUT, AwsSourceConfig, map_error
from launcher.sources.base import Backend, Secret

log = logging.getLogger(__name__)

BATCH = 10  # names one GetParameters call takes
PAGE = 10  # the largest page of GetParametersByPath
DESCRIBE_PAGE = 50  # the largest page of DescribeParameters
BATCH_CALLS = 8  # GetParameters calls of one batch in flight at once
_DESCRIBE_PAGES = 5  # a Name filter that found nothing in this many pages is left to GetParameter

# https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-su-create.html
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,14}\Z")  # at most 15 levels
_MAX_NAME = 1011
_LABEL_RE = re.compile(r"(?!(?i:aws|ssm))[A-Za-z_.-][A-Za-z0-9_.-]{0,99}\Z")
_VERSION_RE = re.compile(r"[1-9][0-9]{0,17}\Z")
_PUBLIC_RE = re.compile(r"/(aws|ssm)", re.IGNORECASE)  # public parameters: DescribeParameters refuses to filter on them
_INVALID = frozenset({"ValidationException", "HierarchyLevelLimitExceededException"})

Item = tuple[str, "str | None"]  # (path, version), as the resolver asks ``read_many``


@record(kw_only=True)
class SsmSourceConfig(AwsSourceConfig):
    """An SSM Parameter Store source: the settings of ``aws`` (region, endpoint_url, profile)."""

    endpoint_url: str | None = setting(None, help="another endpoint: a VPC endpoint or an emulator "
                                       "(default $AWS_ENDPOINT_URL_SSM, then $AWS_ENDPOINT_URL)")
    type: str = "ssm"


@record
class Wanted:
    """What a reference asks SSM for: a name (with its leading ``/``) and at most one selector."""

    name: str
    label: str | None = None
    version: str | None = None

    @property
    def request(self) -> str:  # the Name to ask for: /app/db, /app/db:3 or /app/db:live
        selector = self.label or self.version
        return f"{self.name}:{selector}" if selector else self.name


def wanted(path: str, version: str | None) -> Wanted:
    """What ``path`` and ``version`` ask for; ``ValueError`` saying why they name no parameter."""
    if path.startswith("arn:"):
        raise ValueError("parameter ARNs are not supported: give the parameter's name (ssm:///app/db)")
    base, colon, label = path.strip("/").partition(":")
    if not _NAME_RE.match(base) or len(base) >= _MAX_NAME:
        raise ValueError(f"{'/' + base!r} is not a parameter name (up to 15 levels of letters, digits and _.-)")
    if colon and label.isdigit():
        raise ValueError(f"a version is written ?version={label}, not :{label}")
    if colon and not _LABEL_RE.match(label):
        raise ValueError(f"{label!r} is not a parameter label (up to 100 letters, digits and _.-, not starting with a digit, aws or ssm)")
    if colon and version is not None:
        raise ValueError("a label and a version at once: give one of them")
    if version is not None and not _VERSION_RE.match(version):
        raise ValueError(f"?version={version} is not a parameter version (a whole number from 1, as `launcher check` shows)")
    return Wanted("/" + base, label if colon else None, version)


def reference_problem(config: SsmSourceConfig, ref: Reference) -> str | None:
    """What is wrong with ``ref`` for this backend, found without any request."""
    try:
        wanted(ref.path, ref.version)
    except ValueError as exc:
        return str(exc)
    return None


def tree_version(tree: Mapping[str, Mapping[str, Any]]) -> str:
    """The version of a tree: a digest of its parameters' relative names and versions (no value)."""
    digest = hashlib.sha256()
    for name in sorted(tree):
        digest.update(f"{name}\0{tree[name].get('Version')}\n".encode())
    return digest.hexdigest()[:12]


class _DeniedError(AuthError):
    """Access to an action denied (not credentials refused): exit 77 all the same."""


class SsmSource:
    """Reads SSM parameters; ``environ`` (default ``os.environ``) gives the region and endpoint
    defaults. Raises ``ManifestError`` (78) without boto3 or with an endpoint that is not http(s)."""

    def __init__(self, config: SsmSourceConfig, *, environ: Mapping[str, str] | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT) -> None:
        try:
            import boto3.session
            import botocore.config
        except ImportError:
            raise ManifestError(f"source {config.name!r}: type ssm needs the AWS extra: pip install 'secret-launcher[aws]'") from None
        env = os.environ if environ is None else environ
        self.name, self.config = config.name, config
        self.region = config.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
        self.endpoint_url = config.endpoint_url or env.get("AWS_ENDPOINT_URL_SSM") or env.get("AWS_ENDPOINT_URL") or None
        if self.endpoint_url is not None and not self.endpoint_url.startswith(("http://", "https://")):
            raise ManifestError(f"source {config.name!r}: endpoint_url {self.endpoint_url!r} must start with http:// or https://")
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._new_session = boto3.session.Session
        # botocore's retries off, as for ``aws``: the launcher's policy and deadline own every repeat.
        self._client_config = botocore.config.Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                                                     retries={"total_max_attempts": 1, "mode": "standard"},
                                                     max_pool_connections=MAX_POOL)
        self._client: Any = None
        self._lock = threading.Lock()
        self._describe = True  # False once DescribeParameters is denied: version checks read metadata instead

    def fetch(self, path: str, version: str | None) -> Secret:
        """The parameter's value and version, or a tree's values as fields (module docstring). Raises
        NotFoundError, AuthError, TransientError, UnavailableError or ManifestError (bad name; no region)."""
        return self._read(self._wanted(path, version), self._where(path, version), decrypt=True)

    def current_version(self, path: str) -> str | None:
        """The version a fetch of ``path`` would return now, read without a KMS call; raises as ``fetch``."""
        want, where = self._wanted(path, None), self._where(path, None)
        described = None
        if want.label is None and self._describe and not _PUBLIC_RE.match(want.name):
            try:
                described = self._described_version(want, where)
            except _DeniedError:
                self._describe = False  # the role reads parameters but may not list them: stop asking
                log.debug("source %s: no ssm:DescribeParameters; version checks read parameters undecrypted", self.name)
            except ManifestError:
                pass  # the filter was refused: a metadata read tells
        return described or self._read(want, where, decrypt=False).version

    def read_many(self, items: Sequence[Item], within: float) -> dict[Item, Secret]:
        """Parameters among ``items``, by ``GetParameters`` calls of 10 (``Batching``): best effort,
        what a failed call or one not answered within ``within`` seconds asked for is left to ``fetch``."""
        asked: list[tuple[Item, Wanted]] = []
        for item in items:
            try:
                asked.append((item, wanted(*item)))
            except ValueError:
                continue  # ``fetch`` reports it
        calls, until = _pack(asked), time.monotonic() + within
        pending, found, lock = iter(calls), dict[Item, Secret](), threading.Lock()

        def work() -> None:
            while time.monotonic() < until:
                with lock:
                    call = next(pending, None)
                if call is None:
                    return
                answers = self._answer(call)
                with lock:
                    found.update(answers)

        # Daemon threads, joined until ``within`` only: a stalled call is abandoned, never waited for.
        helpers = [threading.Thread(target=work, name=f"ssm-batch-{i}", daemon=True) for i in range(min(BATCH_CALLS, len(calls)))]
        for thread in helpers:
            thread.start()
        for thread in helpers:
            thread.join(max(0.0, until - time.monotonic()))
        with lock:
            return dict(found)

    def close(self) -> None:
        """Close the client's connections; the source is unusable after."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def client(self) -> Any:
        """The source's one client, created on first use (clients are thread-safe, sessions are not)."""
        with self._lock:
            if self._client is None:
                session = self._new_session(profile_name=self.config.profile, region_name=self.region)
                self._client = session.client("ssm", endpoint_url=self.endpoint_url, config=self._client_config)
            return self._client

    # -- reads -----------------------------------------------------------------------

    def _read(self, want: Wanted, where: str, *, decrypt: bool) -> Secret:
        """The parameter ``want`` names, else (without a selector) the tree under it."""
        missing = "parameter or label not found" if want.label else "parameter not found"
        try:
            answer = self._call("GetParameter", where, missing=missing, Name=want.request, WithDecryption=decrypt)
            return _secret(answer["Parameter"], where)
        except NotFoundError:
            if want.label or want.version:
                raise
        tree = self._tree(want, where, "GetParametersByPath", Path=want.name, Recursive=True, WithDecryption=decrypt, MaxResults=PAGE)
        return Secret(fields={name: _secret(p, where).value or "" for name, p in tree.items()}, version=tree_version(tree))

    def _described_version(self, want: Wanted, where: str) -> str | None:
        """The parameter's version from DescribeParameters, else its tree's; None when the filter does not tell."""
        by_name = [{"Key": "Name", "Option": "Equals", "Values": [want.name]}]
        for count, page in enumerate(self._pages("DescribeParameters", where, MaxResults=DESCRIBE_PAGE, ParameterFilters=by_name)):
            for param in page:
                if _normal(param.get("Name")) == want.name:
                    return _secret(param, where, value=False).version
            if count + 1 >= _DESCRIBE_PAGES:
                return None  # empty pages: the filter scans the account; one GetParameter is cheaper
        under = [{"Key": "Path", "Option": "Recursive", "Values": [want.name]}]
        return tree_version(self._tree(want, where, "DescribeParameters", MaxResults=DESCRIBE_PAGE, ParameterFilters=under))

    def _tree(self, want: Wanted, where: str, operation: str, **params: Any) -> dict[str, Any]:
        """Every parameter under ``want.name`` (all pages), by its name below it; ``NotFoundError`` when none."""
        tree: dict[str, Any] = {}
        for page in self._pages(operation, where, **params):
            tree.update(_below(want.name, page))
        if not tree:
            raise NotFoundError(f"{where}: parameter not found, and none under {want.name}/ {_in(self.region)}")
        return tree

    def _answer(self, call: list[tuple[Item, Wanted]]) -> dict[Item, Secret]:
        """One GetParameters call; each answer goes to the one request of its name, or nowhere."""
        asked = {want.name: (item, want) for item, want in call}
        try:
            answer = self._call("GetParameters", f"source {self.name!r}", Names=[w.request for _, w in call], WithDecryption=True)
            names = [_normal(param.get("Name")) for param in answer["Parameters"]]
            return {asked[name][0]: _secret(param, str(FetchKey(self.name, *asked[name][0])))
                    for name, param in zip(names, answer["Parameters"], strict=True)
                    # two answers to one request: neither is trusted
                    if name in asked and names.count(name) == 1 and _answers(param, asked[name][1])}
        except Exception as exc:  # best effort: ``fetch`` reads these again and reports what is wrong
            log.debug("source %s: %d parameters left to single reads (%s)", self.name, len(call), exc)
            return {}

    def _pages(self, operation: str, where: str, **params: Any) -> Iterator[list[Any]]:
        """Each page's ``Parameters``, following ``NextToken``; a token seen twice is an unreadable answer."""
        seen: set[str] = set()
        while True:
            answer = self._call(operation, where, **params)
            yield answer["Parameters"]
            token = answer.get("NextToken")
            if not token:
                return
            if token in seen:
                raise TransientError(f"{where}: {operation} pages do not advance {_in(self.region)}")
            seen.add(token)
            params["NextToken"] = token

    def _call(self, operation: str, where: str, missing: str = "parameter not found", **params: Any) -> Any:
        """One request; every failure mapped to a launcher error (see the module docstring)."""
        from botocore.exceptions import BotoCoreError, ClientError

        region = self.region
        try:
            client = self.client()
            region = client.meta.region_name
            method = getattr(client, re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower())  # GetParameter: get_parameter
            answer = deadline.within(lambda: method(**params), name="ssm-request")
        except deadline.OverdueError:
            raise TransientError(f"{where}: no answer from {self.endpoint_url or 'SSM'} {_in(region)} before the deadline") from None
        except (BotoCoreError, ClientError) as exc:
            mine = _client_error(exc, operation, where, region, missing) if isinstance(exc, ClientError) else None
            raise mine or map_error(exc, where, region, connect_timeout=self.connect_timeout, read_timeout=self.read_timeout) from exc
        if ("Parameter" if operation == "GetParameter" else "Parameters") not in answer:
            # botocore takes a 200 whose body is cut short or not JSON for an empty answer.
            raise TransientError(f"{where}: unreadable answer from {self.endpoint_url or 'SSM'} {_in(region)}")
        return answer

    def _wanted(self, path: str, version: str | None) -> Wanted:
        try:
            return wanted(path, version)
        except ValueError as exc:
            raise ManifestError(f"{self._where(path, version)}: {exc}") from None

    def _where(self, path: str, version: str | None) -> str:
        return str(FetchKey(self.name, path, version))


def _pack(asked: list[tuple[Item, Wanted]]) -> list[list[tuple[Item, Wanted]]]:
    """Calls of at most BATCH requests, none asking for one parameter twice (an answer carries only the name)."""
    calls: list[list[tuple[Item, Wanted]]] = []
    for entry in asked:
        call = next((c for c in calls if len(c) < BATCH and all(w.name != entry[1].name for _, w in c)), None)
        if call is None:
            calls.append(call := [])
        call.append(entry)
    return calls


def _answers(param: Mapping[str, Any], want: Wanted) -> bool:
    """Whether ``param`` is what ``want`` asked for (SSM names the selector of a selected answer)."""
    selector = param.get("Selector")
    if want.version is not None:
        return str(param.get("Version")) == want.version and selector in (None, f":{want.version}")
    if want.label is not None:
        return selector in (None, f":{want.label}")
    return not selector


def _normal(name: Any) -> str:
    """A name as requested: with its leading ``/`` (a root name stored without one is answered so)."""
    return "/" + str(name or "").lstrip("/")


def _below(root: str, params: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """``params`` under ``root``, by their names below it (``/app/api/key`` under ``/app``: ``api/key``)."""
    prefix = root + "/"
    return {name[len(prefix):]: p for p in params if (name := _normal(p.get("Name"))).startswith(prefix) and name != prefix}


def _secret(param: Mapping[str, Any], where: str, value: bool = True) -> Secret:
    """A parameter as a secret (``value=False``: metadata, the version alone)."""
    text, version = param.get("Value"), param.get("Version")
    if (value and not isinstance(text, str)) or not isinstance(version, int):
        raise TransientError(f"{where}: unreadable answer (a parameter without a {'value' if value else 'version'})")
    return Secret(value=text if value else None, version=str(version))


def _in(region: str | None) -> str:
    return f"in {region}" if region else "(no region)"  # as aws.map_error says it


def _client_error(exc: Any, operation: str, where: str, region: str | None, missing: str) -> LauncherError | None:
    """SSM's own error codes; None for those every AWS service shares (``aws.map_error``)."""
    error = exc.response.get("Error") or {}
    code = str(error.get("Code") or "")
    message = " ".join(str(error.get("Message") or "").split())  # principals, actions and names, never a value
    says = f"; AWS says: {message[:300]}" if message else ""
    if code == "ParameterNotFound":
        return NotFoundError(f"{where}: {missing} {_in(region)}")
    if code == "ParameterVersionNotFound":
        return NotFoundError(f"{where}: version not found {_in(region)}")
    if code in ("AccessDeniedException", "AccessDenied"):
        needs = "kms:Decrypt on the parameter's KMS key" if "kms" in message.lower() else f"ssm:{operation}"
        return _DeniedError(f"{where}: access denied {_in(region)} (needs {needs}){says}")
    if code == "InvalidKeyId":
        return AuthError(f"{where}: the parameter's KMS key cannot be used {_in(region)} (needs kms:Decrypt on an enabled key){says}")
    if code in _INVALID or code.startswith("InvalidFilter"):
        return ManifestError(f"{where}: rejected as invalid {_in(region)}{says}")
    return None


# botocore logs response bodies, values included, at DEBUG: its loggers are capped.
BACKEND = Backend(type="ssm", config=SsmSourceConfig, open=lambda config, events: SsmSource(config),
                  reference_problem=reference_problem, loggers=("boto3", "botocore", "s3transfer"), requires=("boto3",), extra="aws",
                  starter="region: eu-west-1   # default $AWS_REGION; references: my-ssm:///app/db/password\n")
