"""The Azure SDK's requests, through the launcher's bounded urllib3 pools (no requests session).

``transport_options`` are the pipeline settings shared by a source's credential and
every ``SecretClient`` it makes: the SDK's own retries off (the resolver's policy and
deadline govern; the SDK would otherwise retry up to 10 times, honour any Retry-After
without a cap, and wait up to 300 s for a socket) and ``PoolTransport``, an azure-core
transport whose requests go through ``launcher.sources.transport.http_pool``: the same
bounded connections (a stalled or dripping endpoint cannot outlive ``retry.deadline``),
TLS trust (an extra CA, ``tls.ca_cert``, added to the system's roots, held in memory:
no bundle file is written, so nothing is left behind by ``exec``) and proxy rules as
every other backend. One pool per host: the vault, Entra ID and the managed-identity
endpoint may each have their own proxy rule (NO_PROXY).

Imported only when an Azure source is opened, with the Azure SDK.
"""

from __future__ import annotations

import ssl
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

import urllib3
from azure.core.exceptions import (
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest as RestHttpRequest

# azure-core's response over an http.client-like answer: private by its module name, but the
# one every azure-core transport built on http.client uses (there is no public equivalent).
from azure.core.rest._http_response_impl import RestHttpClientTransportResponse

from launcher import deadline
from launcher.errors import ManifestError
from launcher.sources.azure.config import AzureSourceConfig
from launcher.sources.transport import http_pool

# One attempt is bounded by these; the retry policy decides whether there is another.
CONNECTION_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
# Never retried or redirected here: the resolver's policy owns every repeat, and azure-core's
# own redirect policy decides about redirects.
_NO_RETRIES = urllib3.Retry(total=0, redirect=0, raise_on_redirect=False, raise_on_status=False)


class _Answer:
    """What azure-core's http.client-based responses read: ``status``, ``reason``, ``getheaders``, ``read``."""

    def __init__(self, resp: Any) -> None:
        self.status = resp.status
        self.reason = resp.reason or ""
        self._headers = list(resp.headers.items())
        self._data = resp.data

    def getheaders(self) -> list[tuple[str, str]]:
        return self._headers

    def read(self, *_: Any) -> bytes:
        return bytes(self._data)

    def close(self) -> None:
        """The body was read whole; the connection is back in its pool."""


class PoolTransport(HttpTransport[Any, Any]):
    """An azure-core ``HttpTransport`` over the launcher's pools; thread-safe."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, connection_timeout: float = CONNECTION_TIMEOUT,
                 read_timeout: float = READ_TIMEOUT) -> None:
        self.ssl_context = ssl_context  # None: the system's roots; else those plus the source's extra CA
        self._connection_timeout, self._read_timeout = connection_timeout, read_timeout
        self._pools: dict[tuple[str, str], urllib3.PoolManager] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> PoolTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        """Kept open: the source owns the transport and closes it (``close``)."""

    def open(self) -> None:
        """Nothing to open: pools are made on a host's first request."""

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.clear()

    def send(self, request: Any, **kwargs: Any) -> Any:
        """Send ``request`` (an ``azure.core.rest`` request, as every client of the Azure SDK
        this launcher uses makes) and read the whole answer.

        Transport failures are azure-core's own errors (``ServiceRequestError``: never
        sent; ``ServiceResponseError``: no complete answer), as its transports raise them.
        """
        read = deadline.cut(float(kwargs.get("read_timeout") or self._read_timeout))
        connect = deadline.cut(float(kwargs.get("connection_timeout") or self._connection_timeout))
        body, headers = _body(request)
        try:
            resp = self._pool(request.url).request(
                request.method, request.url, body=body, headers=headers, retries=_NO_RETRIES,
                timeout=urllib3.Timeout(connect=connect, read=read), preload_content=True,
            )
        except urllib3.exceptions.ConnectTimeoutError as exc:
            raise ServiceRequestTimeoutError(exc, error=exc) from exc
        except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.SSLError, urllib3.exceptions.ProxyError,
                urllib3.exceptions.LocationValueError) as exc:
            raise ServiceRequestError(exc, error=exc) from exc
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise ServiceResponseTimeoutError(exc, error=exc) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise ServiceResponseError(exc, error=exc) from exc
        response = RestHttpClientTransportResponse(request=request, internal_response=_Answer(resp))  # type: ignore[no-untyped-call]
        response.read()  # type: ignore[no-untyped-call]
        return response

    def _pool(self, url: str) -> urllib3.PoolManager:
        parts = urllib.parse.urlsplit(url)
        key = (parts.scheme, parts.netloc)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = http_pool(url, ssl_context=self.ssl_context)
            return pool


def _body(request: Any) -> tuple[bytes | None, dict[str, str]]:
    """The request's body as bytes, and its headers (a form gets its content type back)."""
    headers = dict(request.headers)
    if not isinstance(request, RestHttpRequest):
        raise TypeError("PoolTransport sends azure.core.rest requests only")  # a bug, not an input
    data = request.content
    if data is None or data == b"" or data == "":
        return None, headers
    if isinstance(data, Mapping):
        # A form (a token request): azure-core leaves encoding it to the transport.
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return urllib.parse.urlencode(dict(data), doseq=True).encode(), headers
    if isinstance(data, str):
        return data.encode(), headers
    if isinstance(data, (bytes, bytearray)):
        return bytes(data), headers
    return bytes(data.read()), headers  # a stream: Key Vault's requests are small, read it whole


def transport_options(config: AzureSourceConfig, connection_timeout: float = CONNECTION_TIMEOUT,
                      read_timeout: float = READ_TIMEOUT) -> dict[str, Any]:
    """Pipeline keyword arguments for SecretClient and credentials alike (see the module docstring)."""
    context = trust_context(config.tls.ca_cert) if config.tls.ca_cert else None
    return {
        "retry_total": 0,
        "connection_timeout": connection_timeout,
        "read_timeout": read_timeout,
        "transport": PoolTransport(context, connection_timeout, read_timeout),
    }


def trust_context(ca_cert: str) -> ssl.SSLContext:
    """A TLS context trusting certifi's roots and ``ca_cert``: the extra CA is added, not swapped in.

    Raises ``ManifestError`` (78) when ``ca_cert`` cannot be read or holds no certificate.
    """
    import certifi

    context = ssl.create_default_context(cafile=certifi.where())
    try:
        context.load_verify_locations(cafile=ca_cert)
    except FileNotFoundError:
        raise ManifestError(f"tls.ca_cert {ca_cert}: does not exist") from None
    except (OSError, ValueError, ssl.SSLError):
        raise ManifestError(f"tls.ca_cert {ca_cert}: cannot be read as PEM certificates") from None
    return context
