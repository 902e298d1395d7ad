"""The Secret Manager client of the ``gcp`` source: credentials, transports, the SDK import.

Kept apart from ``gcp`` (references, reads, errors) because it is all about the SDK's
construction, which has no argument for some of what the launcher needs:

- Token requests and the metadata server's detection go through google-auth's urllib3
  transport on one of the launcher's bounded pools (``transport.http_pool``): every socket
  is shut down when the attempt's bound passes, and nothing retries (google-auth's own
  requests session retries three times; on a machine with no metadata server its probe
  alone may take 3 x 3 s).
- REST calls go through google-auth's ``AuthorizedSession`` (the generated transport
  speaks the requests API; the launcher never imports requests itself): its sockets are
  not the launcher's, so each call is given up on at the bound instead
  (``deadline.within``, in ``source``). Anonymous credentials cannot be refreshed, so a
  401 is final; real ones may refresh once.
- gRPC: plaintext for ``credentials: none`` (emulators), TLS with the credentials otherwise.
- The SDK is imported with its debug logging and gRPC's C-core logging kept quiet.
"""

from __future__ import annotations

import logging
import os
from typing import Any

DEFAULT_HOST = "secretmanager.googleapis.com"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
TOKEN_URL = "https://oauth2.googleapis.com/token"  # where token requests go (its proxy rule is the pool's)


def open_client(endpoint: str, *, grpc: bool, anonymous: bool, pool: int) -> tuple[Any, str | None]:
    """A ``SecretManagerServiceClient`` for ``endpoint`` and the credentials' project (None if unknown).

    Raises google-auth's ``DefaultCredentialsError`` when Application Default Credentials
    find nothing, and its ``TransportError`` when the metadata server cannot be reached.
    """
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.auth.transport.urllib3 import Request

    from launcher.sources.transport import http_pool

    client_class = _import_sdk()
    project = None
    auth_request = Request(http_pool(TOKEN_URL, maxsize=pool))
    if anonymous:
        credentials: Any = AnonymousCredentials()
    else:
        credentials, project = google.auth.default(default_scopes=SCOPES, request=auth_request)
    if grpc:
        transport = _grpc_transport(endpoint, credentials, anonymous)
    else:
        transport = _rest_transport(endpoint, credentials, anonymous, auth_request, pool)
    return client_class(transport=transport), project


def _rest_transport(endpoint: str, credentials: Any, anonymous: bool, auth_request: Any, pool: int) -> Any:
    from google.auth.transport.requests import AuthorizedSession
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import rest

    api = AuthorizedSession(credentials, auth_request=auth_request, default_host=DEFAULT_HOST,
                            refresh_status_codes=() if anonymous else (401,), max_refresh_attempts=0 if anonymous else 1)
    transport = rest.SecretManagerServiceRestTransport(host=endpoint, credentials=credentials)
    # The generated transport makes a session of its own and takes none as an argument:
    # put ours in, and wrap its methods again, since they are keyed by the session.
    transport._session = api
    transport._prep_wrapped_messages(rest.DEFAULT_CLIENT_INFO)
    return transport


def _grpc_transport(endpoint: str, credentials: Any, anonymous: bool) -> Any:
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports.grpc import SecretManagerServiceGrpcTransport

    if anonymous:
        import grpc

        return SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel(endpoint))
    return SecretManagerServiceGrpcTransport(host=endpoint, credentials=credentials)


def _import_sdk() -> Any:
    """The client class, imported with the SDK's and gRPC's own logging kept quiet.

    google-api-core gives the logger named in GOOGLE_SDK_PYTHON_LOGGING_SCOPE a DEBUG
    handler of its own, which prints whole answers, payloads included, unless that logger
    has a level already: give it one first. gRPC's C core (imported by every transport)
    prints INFO lines to stderr, such as a server's GOAWAY, unless GRPC_VERBOSITY said
    otherwise when it was loaded: say ERROR for that moment, unless the user chose.
    """
    scope = os.environ.get("GOOGLE_SDK_PYTHON_LOGGING_SCOPE", "").strip()
    for name in ("google", scope):
        if name:
            logging.getLogger(name).setLevel(logging.WARNING)
    # google-auth warns about each place ADC looked in vain (the metadata server's probe once per
    # attempt, a missing project): the launcher's own one-line error says what matters.
    logging.getLogger("google.auth").setLevel(logging.ERROR)
    chosen = "GRPC_VERBOSITY" in os.environ
    if not chosen:
        os.environ["GRPC_VERBOSITY"] = "ERROR"
    try:
        from google.cloud.secretmanager_v1.services.secret_manager_service import SecretManagerServiceClient
    finally:
        if not chosen:
            os.environ.pop("GRPC_VERBOSITY", None)  # the child's environment is not ours to change
    return SecretManagerServiceClient
