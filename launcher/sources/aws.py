"""The ``aws`` source: AWS Secrets Manager through boto3.

``aws://NAME[?version=VERSION_ID][#KEY]``: ``NAME`` is a secret name (``prod/app/db``)
or a full ARN; ``?version=`` pins a version id; ``#KEY`` into a JSON ``SecretString``
is the resolver's job (``select``). A ``SecretBinary`` is passed as its bytes decoded
as UTF-8. The built-in ``aws`` source is configured from the environment, as ``vault``
is. boto3 is imported only when a source is opened, never by parsing a manifest.

One boto3 session per source and one client per region (an ARN is read in its own
region), created on first use under a lock and then shared by the resolver's fetch
threads: clients are thread-safe, sessions are not.

Errors are mapped once, here (``map_error``)::

    ResourceNotFoundException, a secret scheduled for deletion  -> NotFoundError (66)
    AccessDenied(Exception), UnrecognizedClient, InvalidSignature,
      ExpiredToken, DecryptionFailure, no or partial credentials -> AuthError (77)
    Throttling, InternalServiceError, 429, 5xx, connection
      refused, timeouts, a closed connection, an unreadable answer -> TransientError (retried; 69 when spent)
    InvalidParameter, InvalidRequest, Validation, no region,
      an unknown profile                                         -> ManifestError (78)

botocore's own retries are off (``total_max_attempts=1``): left on, the standard mode
makes 3 attempts with its own backoff inside every one of ours, so the manifest's
``retry`` policy and its ``deadline`` would no longer bound a resolution. Each HTTP
attempt is bounded by a 5 s connect and 10 s read timeout.

No value is put in a message or a repr; botocore logs response bodies at DEBUG, which
is why its loggers are capped at WARNING (``LOGGERS``).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from typing import Any

from launcher import deadline
from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError, TransientError, UnavailableError
from launcher.model.config import SourceConfig
from launcher.model.refs import FetchKey, Reference
from launcher.model.settings import setting
from launcher.record import record
from launcher.sources.base import Backend, Secret

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
MAX_POOL = 32  # the resolver's fetch threads; a smaller pool would drop connections and warn

# https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CreateSecret.html#SecretsManager-CreateSecret-request-Name
NAME_RE = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}\Z")
ARN_RE = re.compile(r"arn:aws[a-z-]*:secretsmanager:(?P<region>[a-z0-9-]+):\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}\Z")
# VersionId is a UUID that Secrets Manager makes, or the caller's ClientRequestToken (32-64 characters).
VERSION_RE = re.compile(r"[A-Za-z0-9-]{32,64}\Z")
_LABEL_RE = re.compile(r"[A-Z][A-Z0-9_]*\Z")  # AWSCURRENT, AWSPREVIOUS, AWSPENDING, custom labels

_AUTH = {  # code -> (plain words, what to check)
    "AccessDeniedException": ("access denied", ""),
    "AccessDenied": ("access denied", ""),
    "UnrecognizedClientException": ("the AWS access key is not recognised", ""),
    "InvalidClientTokenId": ("the AWS access key is not recognised", ""),
    "InvalidSignatureException": ("the request signature is wrong", "check the secret access key and the clock"),
    "SignatureDoesNotMatch": ("the request signature is wrong", "check the secret access key and the clock"),
    "ExpiredTokenException": ("the AWS credentials have expired", ""),
    "ExpiredToken": ("the AWS credentials have expired", ""),
    "InvalidIdentityToken": ("the web identity token was refused", ""),
    "DecryptionFailure": ("the secret cannot be decrypted with its KMS key", "needs kms:Decrypt on the key"),
}
_ACTIONS = {"GetSecretValue": "secretsmanager:GetSecretValue", "DescribeSecret": "secretsmanager:DescribeSecret"}
_THROTTLED = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"})
_SERVER = frozenset({"InternalServiceError", "InternalFailure", "ServiceUnavailable", "RequestTimeout", "RequestTimeoutException"})
_INVALID = frozenset({"InvalidParameterException", "InvalidRequestException", "ValidationException"})
_DELETED = re.compile(r"marked (for )?delet", re.IGNORECASE)
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_MAX_DETAIL = 300


@record(kw_only=True)
class AwsSourceConfig(SourceConfig):
    """An AWS Secrets Manager source; None fields fall back to the AWS variables.

    Credentials come from boto3's chain: environment, profile, web identity (IRSA),
    container (ECS, EKS Pod Identity) and instance metadata.
    """

    region: str | None = setting(None, help="the secrets' region (default $AWS_REGION, then $AWS_DEFAULT_REGION, "
                                 "then the profile's region)")
    endpoint_url: str | None = setting(None, help="another endpoint: a VPC endpoint or an emulator "
                                       "(default $AWS_ENDPOINT_URL_SECRETSMANAGER, then $AWS_ENDPOINT_URL)")
    profile: str | None = setting(None, help="a profile of ~/.aws/config (default boto3's: $AWS_PROFILE)")
    type: str = "aws"


def secret_id_problem(path: str, version: str | None) -> str | None:
    """Why ``path`` (and ``version``) cannot name a Secrets Manager secret; None when they can."""
    if path.startswith("arn:"):
        if not ARN_RE.match(path):
            return f"{path!r} is not a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)"
    elif not NAME_RE.match(path):
        return f"{path!r} is not a Secrets Manager secret name (1-512 letters, digits and /_+=.@-) or ARN"
    if version is not None and not VERSION_RE.match(version):
        # Only ids: a staging label (AWSCURRENT, AWSPREVIOUS) moves, so it would pin nothing.
        what = "a staging label, which is not supported" if _LABEL_RE.match(version) else "not a version id"
        return f"?version={version} is {what}: give a version id (32-64 letters, digits and -, as `launcher check` shows)"
    return None


def reference_problem(config: AwsSourceConfig, ref: Reference) -> str | None:
    """What is wrong with ``ref`` for this backend, found without any request."""
    return secret_id_problem(ref.path, ref.version)


class AwsSource:
    """Reads secrets from AWS Secrets Manager.

    ``environ`` (default ``os.environ``) supplies the region and endpoint defaults;
    credentials are boto3's own chain. The timeouts bound one HTTP attempt.
    Raises ``ManifestError`` (78) when boto3 is not installed or the endpoint is not
    an http(s) URL.
    """

    def __init__(
        self,
        config: AwsSourceConfig,
        *,
        environ: Mapping[str, str] | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        try:
            import boto3.session
            import botocore.config
        except ImportError:
            raise ManifestError(f"source {config.name!r}: type aws needs the AWS extra: pip install 'secret-launcher[aws]'") from None
        env = os.environ if environ is None else environ
        self.name = config.name
        self.config = config
        self.region = config.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
        self.endpoint_url = config.endpoint_url or env.get("AWS_ENDPOINT_URL_SECRETSMANAGER") or env.get("AWS_ENDPOINT_URL") or None
        if self.endpoint_url is not None and not self.endpoint_url.startswith(("http://", "https://")):
            raise ManifestError(f"source {config.name!r}: endpoint_url {self.endpoint_url!r} must start with http:// or https://")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._boto3_session = boto3.session.Session
        self._client_config = botocore.config.Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=MAX_POOL,
        )
        self._session: Any = None
        self._clients: dict[str | None, Any] = {}
        self._lock = threading.Lock()

    def fetch(self, path: str, version: str | None) -> Secret:
        """The secret's value and version id (AWSCURRENT, or ``version``).

        Raises ``NotFoundError``, ``AuthError``, ``TransientError`` (retryable),
        ``UnavailableError`` or ``ManifestError`` (bad name or version, no region,
        a binary value that is not UTF-8).
        """
        params = {"SecretId": path} | ({"VersionId": version} if version is not None else {})
        response = self._call("get_secret_value", path, version, params)
        secret_version = response.get("VersionId")
        if response.get("SecretString") is not None:
            return Secret(value=response["SecretString"], version=secret_version)
        binary = response.get("SecretBinary")
        if binary is None:
            raise NotFoundError(f"{self._where(path, version)}: the secret has no value")
        try:
            value = bytes(binary).decode("utf-8")
        except UnicodeDecodeError:
            # ``from None``: the decode error holds the bytes themselves.
            raise ManifestError(
                f"{self._where(path, version)}: the secret is binary and not UTF-8 text, which an environment variable "
                "cannot hold; store it base64-encoded (with `file: true` if it is large) and decode it in the application"
            ) from None
        return Secret(value=value, version=secret_version)

    def current_version(self, path: str) -> str | None:
        """The AWSCURRENT version id, from ``DescribeSecret`` (no value is read).

        Raises as ``fetch``; a secret scheduled for deletion, or one without a
        current version, is ``NotFoundError``.
        """
        response = self._call("describe_secret", path, None, {"SecretId": path})
        where = self._where(path, None)
        if response.get("DeletedDate") is not None:
            raise NotFoundError(f"{where}: the secret is scheduled for deletion")
        for version_id, stages in (response.get("VersionIdsToStages") or {}).items():
            if "AWSCURRENT" in stages:
                return str(version_id)
        raise NotFoundError(f"{where}: the secret has no current version")

    def close(self) -> None:
        """Close every client's connections; the source is unusable after."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def client(self, region: str | None) -> Any:
        """The one client for ``region`` (None: the source's region), created on first use."""
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                if self._session is None:
                    self._session = self._boto3_session(profile_name=self.config.profile, region_name=self.region)
                client = self._session.client(
                    "secretsmanager", region_name=region, endpoint_url=self.endpoint_url, config=self._client_config
                )
                self._clients[region] = client
            return client

    def _where(self, path: str, version: str | None) -> str:
        return str(FetchKey(self.name, path, version))

    def _call(self, operation: str, path: str, version: str | None, params: dict[str, str]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        where = self._where(path, version)
        problem = secret_id_problem(path, version)
        if problem is not None:
            raise ManifestError(f"{where}: {problem}")
        arn = ARN_RE.match(path)
        region = arn.group("region") if arn and arn.group("region") != self.region else None  # None: the source's own
        shown = region or self.region
        try:
            client = self.client(region)
            shown = client.meta.region_name
            response = deadline.within(lambda: getattr(client, operation)(**params), name="aws-request")
        except deadline.OverdueError:
            raise _transient(where, f"no answer from {self.endpoint_url or 'Secrets Manager'} in {shown}",
                             "no answer within the time left (retry.deadline)", shown) from None
        except (BotoCoreError, ClientError) as exc:
            raise map_error(exc, where, shown, connect_timeout=self.connect_timeout, read_timeout=self.read_timeout) from exc
        if "ARN" not in response:
            # botocore takes a 200 whose body is cut short or not JSON for an empty answer;
            # every real GetSecretValue / DescribeSecret answer names the secret's ARN.
            raise TransientError(f"{where}: unreadable answer from {self.endpoint_url or 'Secrets Manager'} in {shown}")
        return response


def map_error(
    exc: Exception, where: str, region: str | None, *, connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT
) -> LauncherError:
    """The launcher error for one botocore exception (see the module docstring)."""
    from botocore import exceptions as bx

    in_region = f"in {region}" if region else "(no region)"
    if isinstance(exc, bx.ClientError):
        return _map_client_error(exc, where, in_region)
    endpoint = getattr(exc, "kwargs", {}).get("endpoint_url") or "the Secrets Manager endpoint"
    if isinstance(exc, bx.NoRegionError):
        return ManifestError(f"{where}: no AWS region is set: set `region:` on the source, or AWS_REGION")
    if isinstance(exc, bx.ProfileNotFound):
        return ManifestError(f"{where}: AWS profile {exc.kwargs.get('profile')!r} not found in the AWS config files")
    if isinstance(exc, (bx.InvalidRegionError, bx.ParamValidationError)):
        return ManifestError(f"{where}: {_detail(exc)}")
    if isinstance(exc, bx.NoCredentialsError):
        return AuthError(f"{where}: no AWS credentials found (environment, profile, web identity, container or instance metadata)")
    if isinstance(exc, (bx.PartialCredentialsError, bx.TokenRetrievalError, bx.SSOError)):
        return AuthError(f"{where}: {_detail(exc)}")
    if isinstance(exc, bx.CredentialRetrievalError):  # a container or instance metadata endpoint that did not answer
        provider = exc.kwargs.get("provider", "the provider")
        return TransientError(f"{where}: cannot get AWS credentials from {provider}", cause=f"no credentials from {provider}",
                              where=region)
    if isinstance(exc, bx.ConnectTimeoutError):
        return _transient(where, f"cannot reach {endpoint} {in_region}", f"connect timed out after {connect_timeout:g}s", region)
    if isinstance(exc, bx.ReadTimeoutError):
        return _transient(where, f"no answer from {endpoint} {in_region}", f"timed out after {read_timeout:g}s", region)
    if isinstance(exc, bx.SSLError):
        return _tls_error(exc, where, f"cannot reach {endpoint} {in_region}", region)
    if isinstance(exc, bx.ConnectionClosedError):
        return TransientError(f"{where}: {endpoint} {in_region} closed the connection before answering",
                              cause="the connection closed before an answer", where=region)
    if isinstance(exc, (bx.ConnectionError, bx.HTTPClientError)):
        errno = _ERRNO.search(str(getattr(exc, "kwargs", {}).get("error", "")))
        reason = errno.group(1).strip().lower() if errno else "connection failed"
        return _transient(where, f"cannot reach {endpoint} {in_region}", reason, region)
    return UnavailableError(f"{where}: AWS SDK error {in_region}: {_detail(exc)}")


def _transient(where: str, what: str, cause: str, region: str | None) -> TransientError:
    return TransientError(f"{where}: {what} ({cause})", cause=cause, where=region)


def _tls_error(exc: Exception, where: str, what: str, region: str | None) -> LauncherError:
    """A failed TLS handshake: transient, but at once 69 when no retry can heal it (a plain-HTTP
    server behind https://, a certificate that does not verify)."""
    from launcher.sources.transport import NOT_TLS_HINT, lasting_tls_failure  # urllib3: only on this path

    lasting = lasting_tls_failure(exc)
    if lasting == "not-tls":
        return UnavailableError(f"{where}: {what} (TLS handshake failed: {NOT_TLS_HINT})")
    if lasting == "untrusted":
        return UnavailableError(f"{where}: {what} (the server's TLS certificate is not trusted: check AWS_CA_BUNDLE)")
    return _transient(where, what, "TLS handshake failed", region)


def _map_client_error(exc: Any, where: str, in_region: str) -> LauncherError:
    error = exc.response.get("Error") or {}
    meta = exc.response.get("ResponseMetadata") or {}
    code, status = str(error.get("Code") or ""), int(meta.get("HTTPStatusCode") or 0)
    message = _detail(exc, str(error.get("Message") or ""))
    says = f"; AWS says: {message}" if message else ""
    missing = _missing(code, status, message, where, in_region)
    if missing is not None:
        return missing
    if code in _AUTH or status in (401, 403):
        return _denied(exc.operation_name, code, status, where, in_region, says)
    if code in _THROTTLED or status == 429:
        return TransientError(f"{where}: throttled {in_region}", retry_after=_retry_after(meta), cause="throttled")
    if code in _SERVER or status >= 500:
        return TransientError(f"{where}: HTTP {status} {in_region}", retry_after=_retry_after(meta), cause=f"HTTP {status}")
    if code in _INVALID:
        return ManifestError(f"{where}: rejected as invalid {in_region}{says}")
    return UnavailableError(f"{where}: unexpected answer HTTP {status} {in_region}" + (f" ({code})" if code else ""))


def _missing(code: str, status: int, message: str, where: str, in_region: str) -> NotFoundError | None:
    """Not found, or scheduled for deletion (which Secrets Manager calls an invalid request)."""
    if code == "ResourceNotFoundException" or status == 404:
        what = "version not found" if "?version=" in where else "secret not found"
        return NotFoundError(f"{where}: {what} {in_region}")
    if code == "InvalidRequestException" and _DELETED.search(message):
        return NotFoundError(f"{where}: the secret is scheduled for deletion {in_region}")
    return None


def _denied(operation: str, code: str, status: int, where: str, in_region: str, says: str) -> AuthError:
    """Access denied (with the action the role needs) or credentials refused, in plain words."""
    words, hint = _AUTH.get(code, (f"permission denied (HTTP {status})", ""))
    if words == "access denied" and operation in _ACTIONS:
        hint = f"needs {_ACTIONS[operation]}"
    return AuthError(f"{where}: {words} {in_region}" + (f" ({hint})" if hint else "") + says)


def _retry_after(meta: Mapping[str, Any]) -> float | None:
    """Retry-After in seconds when the answer carried one (Secrets Manager's rarely do)."""
    raw = (meta.get("HTTPHeaders") or {}).get("retry-after")
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None  # an HTTP-date: our own backoff paces it


def _detail(exc: Exception, text: str | None = None) -> str:
    """AWS's or botocore's message, one line, shortened: it names principals and actions, never a value."""
    line = " ".join((text if text is not None else str(exc)).split())
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 3] + "..."


BACKEND = Backend(
    type="aws",
    config=AwsSourceConfig,
    open=lambda config, events: AwsSource(config),
    reference_problem=reference_problem,
    loggers=("boto3", "botocore", "s3transfer"),  # botocore logs response bodies, values included, at DEBUG
    requires=("boto3",),
    extra="aws",
    starter="region: eu-west-1   # default $AWS_REGION, then $AWS_DEFAULT_REGION\n",
)
