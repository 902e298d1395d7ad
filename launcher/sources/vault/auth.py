"""The source's token: obtained lazily, renewed, replaced.

``TokenKeeper`` owns the source's token and the hvac client used for logins,
token renewal and lease operations (created on first use: a run with a plain
token that is not due for renewal never imports hvac; the token's lookup is a
GET through ``VaultHTTP``). It obtains a token lazily (token, approle,
kubernetes, jwt, cert: the TLS client certificate the source's pool presents),
knows its TTL, renews it at 2/3 of the TTL and logs in again when it cannot be
renewed or is capped by its max TTL. Every hvac call (and the cert login, a
plain POST) is made inside ``vault_errors``, the source's one error mapping.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from launcher.clock import SYSTEM, Clock
from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError
from launcher.events import NOTHING, Event, EventSink
from launcher.sources.vault.config import VaultAuth
from launcher.sources.vault.http import VaultAnswerError, VaultHTTP, vault_errors

log = logging.getLogger(__name__)

K8S_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
DEFAULT_MOUNTS = {"approle": "approle", "kubernetes": "kubernetes", "jwt": "jwt", "cert": "cert"}


def read_credential(path: str, what: str) -> str:
    """The stripped content of a token / secret id / JWT file; ``AuthError`` when unreadable or empty."""
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as fh:
            text = fh.read(65536).strip()
    except ValueError:  # an embedded NUL byte in the path
        raise ManifestError(f"{what}: the file name {path!r} holds a NUL byte") from None
    except UnicodeDecodeError:
        raise AuthError(f"{what}: {path} is not text") from None
    except OSError as exc:
        raise AuthError(f"{what}: cannot read {path} ({(exc.strerror or 'error').lower()})") from None
    if not text:
        raise AuthError(f"{what}: {path} is empty")
    return text


def usable_token(token: str, what: str) -> str:
    """``token`` when it can be sent as a header; ``AuthError`` (77) when it holds
    white space or control characters (a pasted newline), which no Vault token does."""
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in token):
        raise AuthError(f"{what}: the token holds white space or control characters")
    return token


class TokenKeeper:
    """The source's token: obtained lazily and kept alive for long runs.

    ``ensure`` is called before every request and is cheap once a token is
    held. ``maintain`` (the watcher calls it every few seconds) renews a
    renewable token once 2/3 of its TTL has passed, and logs in again (approle,
    kubernetes, jwt, cert) when the token cannot be renewed, the renewal failed, or
    the renewal came back shorter than asked (the max TTL is near). Both raise
    ``AuthError`` (77), ``TransientError`` or ``ManifestError`` (78).

    ``http`` serves the token's lookup; ``open_client`` builds the hvac client,
    called on the first login, renewal or lease operation (``client``), not before.
    """

    def __init__(self, source: str, auth: VaultAuth, http: VaultHTTP, open_client: Callable[[], Any],
                 environ: Mapping[str, str], clock: Clock = SYSTEM, events: EventSink = NOTHING) -> None:
        self._what = f"source {source!r}: {auth.method} login"
        self._source = source
        self._events = events
        self._auth = auth
        self._http = http
        self.address = http.address
        self._open_client = open_client
        self._client: Any = None
        self.token = ""  # sent with every read; never logged
        self._environ = environ
        self._clock = clock
        self._lock = threading.RLock()
        self._ready = False
        self._known = False  # TTL facts known (from a login or one lookup-self)
        self._expires_at: float | None = None  # None: never expires, or unknown
        self._period = 0.0  # the TTL granted at login; renewals ask for it again
        self._renewable = False
        self._at_max = False  # a renewal was capped and no login can replace the token
        self.can_login = auth.method != "token"

    def ensure(self) -> None:
        """Hold a usable token: read it (method token) or log in; again when a login token expired."""
        if self._ready and not self._expired():
            return
        with self._lock:
            if not self._ready:
                self._obtain()
            elif self._expired():
                log.debug("%s: token expired, logging in again", self._what)
                self._login()

    def ttl(self) -> float | None:
        """Seconds the token has left; None when it never expires or cannot be looked up."""
        with self._lock:
            self.ensure()
            self._learn()
            return None if self._expires_at is None else max(0.0, self._expires_at - self._clock.monotonic())

    def maintain(self) -> None:
        """Renew or replace the token when due (see the class docstring); a no-op otherwise."""
        with self._lock:
            self.ensure()
            self._learn()
            if self._expires_at is None or self._period <= 0:
                return
            remaining = self._expires_at - self._clock.monotonic()
            if remaining > self._period / 3:
                return
            if self._renewable and not self._at_max:
                try:
                    granted = self._renew()
                except AuthError:
                    if not self.can_login:
                        raise
                    log.info("%s: token renewal denied, logging in again", self._what)
                    self._login()
                    return
                if granted + 1 < self._period:  # capped by the max TTL
                    if self.can_login:
                        log.info("%s: token nears its max TTL, logging in again", self._what)
                        self._login()
                    else:
                        self._at_max = True
                        log.warning("%s: token reaches its max TTL in %.0f s and cannot be renewed", self._what, granted)
                return
            if self.can_login:
                self._login()
            elif not self._at_max:
                self._at_max = True
                log.warning("%s: token is not renewable and expires in %.0f s", self._what, max(0.0, remaining))

    def client(self) -> Any:
        """The hvac client, created on first use, carrying the current token."""
        with self._lock:
            if self._client is None:
                self._client = self._open_client()
            self._client.token = self.token
            return self._client

    def close(self) -> None:
        """Nothing to close: the hvac client sends through the source's pool, which the source closes."""

    def _expired(self) -> bool:
        return self.can_login and self._expires_at is not None and self._clock.monotonic() >= self._expires_at - 1.0

    def _obtain(self) -> None:
        if self.can_login:
            self._login()
            return
        self.token = self._token_from_origins()
        self._ready = True

    def _token_from_origins(self) -> str:
        # An explicit token_file in the manifest beats the ambient VAULT_TOKEN;
        # then ~/.vault-token, as the Vault CLI's token helper does.
        if self._auth.token_file:
            return usable_token(read_credential(self._auth.token_file, self._what), f"{self._what}: {self._auth.token_file}")
        for name in ("VAULT_TOKEN", "BAO_TOKEN"):  # OpenBao's own name, after Vault's (as for every BAO_* variable)
            if self._environ.get(name, "").strip():
                return usable_token(self._environ[name].strip(), f"{self._what}: {name}")
        home = self._environ.get("HOME") or os.path.expanduser("~")
        helper = os.path.join(home, ".vault-token")
        if os.path.exists(helper):
            return usable_token(read_credential(helper, self._what), f"{self._what}: {helper}")
        raise AuthError(f"{self._what}: no token (set VAULT_TOKEN (or BAO_TOKEN), auth.token_file or ~/.vault-token)")

    def _login(self) -> None:
        try:
            self._log_in()
        except LauncherError as exc:
            self._events.emit(Event("login", source=self._source, outcome=exc.status))
            raise
        self._events.emit(Event("login", source=self._source))

    def _log_in(self) -> None:
        auth, what = self._auth, self._what
        mount = auth.mount or DEFAULT_MOUNTS[auth.method]
        with vault_errors(what, self.address, login=True):
            if auth.method == "approle":
                secret_id = auth.secret_id
                if secret_id is None and auth.secret_id_file:
                    secret_id = read_credential(auth.secret_id_file, what)
                if secret_id is None:
                    secret_id = self._environ.get("VAULT_SECRET_ID") or None  # None: a role without bind_secret_id
                if not auth.role_id:
                    raise ManifestError(f"{what}: auth.role_id is required")
                resp = self.client().auth.approle.login(role_id=auth.role_id, secret_id=secret_id, mount_point=mount)
            elif auth.method == "cert":
                # The certificate is the one every connection of the source presents (connection.py);
                # the login names the role only. A POST through the pool, as every request.
                resp = self._cert_login(mount)
            else:
                if not auth.role:
                    raise ManifestError(f"{what}: auth.role is required")
                jwt_file = auth.jwt_file or (K8S_TOKEN if auth.method == "kubernetes" else None)
                if jwt_file is None:
                    raise ManifestError(f"{what}: auth.jwt_file is required")
                jwt = read_credential(jwt_file, what)  # re-read: projected tokens rotate
                if auth.method == "kubernetes":
                    resp = self.client().auth.kubernetes.login(role=auth.role, jwt=jwt, mount_point=mount)
                else:
                    resp = self.client().auth.jwt.jwt_login(role=auth.role, jwt=jwt, path=mount)
        granted = resp["auth"]
        self.token = usable_token(str(granted.get("client_token") or ""), what)
        self._ready = True
        self._record(float(granted.get("lease_duration") or 0), bool(granted.get("renewable")), period=None)
        log.debug("%s: logged in (ttl %s s, renewable %s)", what, granted.get("lease_duration"), granted.get("renewable"))

    def _cert_login(self, mount: str) -> dict[str, Any]:
        """The cert method's login: the certificate is the one every connection of the source presents
        (``connection.py``); the request names the role only. A POST through the pool, as every request."""
        body = {"name": self._auth.name} if self._auth.name else {}
        try:
            return self._http.request("POST", f"auth/{mount}/login", "", body=body)
        except VaultAnswerError as exc:
            # OpenBao answers 500 to a certificate it cannot verify (expired, not yet valid):
            # a refusal of the credential, not a server failure to retry.
            errors = " ".join(str(e) for e in exc.json.get("errors") or [])
            if exc.status == 500 and "verify client's certificate" in errors:
                raise AuthError(f"{self._what}: the client certificate does not verify "
                                f"({'expired or not yet valid' if 'expired' in errors else 'refused'})") from exc
            raise

    def _learn(self) -> None:
        """Learn a given token's TTL once, with lookup-self; a denied lookup leaves it unknown."""
        if self._known:
            return
        try:
            data = self._http.get("auth/token/lookup-self", self.token, f"{self._what}: token lookup").get("data") or {}
        except (AuthError, NotFoundError, ManifestError) as exc:
            # A token without the default policy may not look itself up; the reads will tell.
            log.debug("%s", exc)
            self._known = True
            return
        ttl = float(data.get("ttl") or 0)
        self._record(ttl, bool(data.get("renewable")), period=float(data.get("creation_ttl") or ttl))

    def _renew(self) -> float:
        with vault_errors(f"{self._what}: token renewal", self.address):
            granted = self.client().auth.token.renew_self(increment=int(self._period))["auth"]
        duration = float(granted.get("lease_duration") or 0)
        self._expires_at = self._clock.monotonic() + duration
        self._renewable = bool(granted.get("renewable"))
        log.debug("%s: token renewed for %.0f s", self._what, duration)
        return duration

    def _record(self, ttl: float, renewable: bool, period: float | None) -> None:
        self._known = True
        self._at_max = False
        self._expires_at = self._clock.monotonic() + ttl if ttl > 0 else None  # 0: a root-like token that never expires
        self._period = period if period is not None else ttl
        self._renewable = renewable
