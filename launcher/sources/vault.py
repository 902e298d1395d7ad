"""The ``vault`` source: HashiCorp Vault and OpenBao through hvac.

Users write the logical path (``secret/app/db``) for every engine. The mount
behind a path is found once with ``sys/internal/ui/mounts/<path>`` and cached:
KV v2 reads ``<mount>/data/<rest>`` (``?version=N`` allowed), KV v1 and every
other engine are plain reads. When the policy denies that lookup, the first
path segment is taken as the mount and the KV v2 form is tried, then the plain
read. Leased reads (dynamic secrets) keep their lease on the ``Secret``.

Address, namespace and TLS come from the manifest, else from the variables
the Vault CLI uses (VAULT_ADDR, VAULT_NAMESPACE, VAULT_CACERT, VAULT_CAPATH,
VAULT_CLIENT_CERT, VAULT_CLIENT_KEY, VAULT_SKIP_VERIFY), so ``vault://``
works wherever the CLI does.

Nothing here retries: transient failures raise ``TransientError`` and the
resolver's policy decides. Reads go through ``vault_http`` (pooled urllib3);
the token, logins and hvac live in ``vault_auth``. hvac and requests are
imported only when a login, token renewal or lease operation needs them, and
urllib3 only when a source is opened: this module is what the source registry
imports to read a manifest, so it imports nothing heavy at the top.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from launcher.clock import SYSTEM, Clock
from launcher.config import SourceConfig, setting
from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError
from launcher.events import NOTHING, Event, EventSink
from launcher.refs import FetchKey
from launcher.sources import Backend, ContentVersions, Lease, Secret, to_text

if TYPE_CHECKING:
    import yaml

    from launcher.reader import Reader

log = logging.getLogger(__name__)

KV2, KV1, OTHER, UNKNOWN = "kv2", "kv1", "other", "unknown"
_KV1_VERSIONS = ContentVersions()  # KV v1 keeps no versions: count the changes this process sees
# Each login method's own settings (``method`` aside), in the order messages list them.
AUTH_KEYS = {
    "token": ("token_file",),
    "approle": ("role_id", "secret_id", "secret_id_file", "mount"),
    "kubernetes": ("role", "jwt_file", "mount"),
    "jwt": ("role", "jwt_file", "mount"),
}


@dataclass(frozen=True)
class TlsConfig:
    """TLS settings of a source; None means "use the standard variable or system default"."""

    ca_cert: str | None = setting(None, "path", help="CA bundle (default $VAULT_CACERT, then $BAO_CACERT)")
    ca_path: str | None = setting(None, "path", help="CA directory (default $VAULT_CAPATH, then $BAO_CAPATH)")
    client_cert: str | None = setting(None, "path", help="client certificate (default $VAULT_CLIENT_CERT)")
    client_key: str | None = setting(None, "path", help="client key (default $VAULT_CLIENT_KEY)")
    skip_verify: bool | None = setting(None, "bool", help="no server verification (default $VAULT_SKIP_VERIFY)")


@dataclass(frozen=True)
class VaultAuth:
    """How a Vault source logs in. ``token`` reads token_file, VAULT_TOKEN, BAO_TOKEN, ~/.vault-token."""

    method: str = "token"
    token_file: str | None = None
    role_id: str | None = None
    secret_id: str | None = field(default=None, repr=False)
    secret_id_file: str | None = None
    role: str | None = None
    jwt_file: str | None = None
    mount: str | None = None


def read_auth(reader: Reader, node: yaml.Node, field: str) -> VaultAuth:
    """``auth:``, whose allowed keys depend on its ``method`` (the manifest reader calls this)."""
    f = reader.mapping(node, field)
    method = reader.choice(f["method"][1], f"{field}.method", tuple(AUTH_KEYS)) if "method" in f else "token"
    f = reader.only(f, field, ("method", *AUTH_KEYS[method]))
    kw: dict[str, Any] = {"method": method}
    for key, (_, value) in f.items():
        if key != "method":
            with reader.unit:
                kw[key] = reader.path(value, f"{field}.{key}") if key.endswith("_file") else reader.text(value, f"{field}.{key}")
    if method == "approle" and "role_id" not in f:
        raise reader.fail(node, f"{field}.role_id", "missing (approle needs role_id and secret_id or secret_id_file)")
    if method == "approle" and "secret_id" in f and "secret_id_file" in f:
        raise reader.fail(node, f"{field}.secret_id", "give secret_id or secret_id_file, not both")
    if method in ("kubernetes", "jwt") and "role" not in f:
        raise reader.fail(node, f"{field}.role", f"missing ({method} needs a role)")
    return VaultAuth(**kw)


@dataclass(frozen=True, kw_only=True)
class VaultSourceConfig(SourceConfig):
    """A HashiCorp Vault / OpenBao source; None fields fall back to the VAULT_* (then BAO_*) variables."""

    address: str | None = setting(None, help="https://vault.example.com:8200 (default $VAULT_ADDR, then $BAO_ADDR)")
    namespace: str | None = setting(None, help="Vault Enterprise / OpenBao namespace (default $VAULT_NAMESPACE)")
    auth: VaultAuth = setting(kind="custom", factory=VaultAuth, read=read_auth,
                              help="login method: token (default), approle, kubernetes, jwt")
    tls: TlsConfig = setting(kind="section", factory=TlsConfig, cls=TlsConfig, help="TLS settings")
    revoke_on_exit: bool = setting(False, "bool", help="revoke the leases of dynamic secrets when the launcher exits")
    type: str = "vault"


class VaultSource:
    """One Vault server (address, namespace, TLS, auth); shared by the resolver's threads.

    Construction does no I/O and raises ``ManifestError`` (78) without an
    address. The first request logs in (or reads the token), under a lock.
    """

    def __init__(self, config: VaultSourceConfig, *, environ: Mapping[str, str] | None = None, clock: Clock = SYSTEM,
                 events: EventSink = NOTHING) -> None:
        from launcher.sources.vault_auth import TokenKeeper, vault_errors  # urllib3: only once a source is opened
        from launcher.sources.vault_http import VaultHTTP, connection_settings, open_client

        env = os.environ if environ is None else environ
        self.name = config.name
        self.revoke_on_exit = config.revoke_on_exit
        self.connection = connection_settings(config, env)
        self._http = VaultHTTP(self.connection)
        self._token = TokenKeeper(config.name, config.auth, self._http, lambda: open_client(self.connection), env, clock, events)
        self._events = events
        self._errors = vault_errors
        self._mounts: dict[str, str] = {}  # "secret/" -> KV2 | KV1 | OTHER | UNKNOWN
        self._mount_lock = threading.Lock()
        self._no_metadata: set[str] = set()  # KV v2 mounts whose metadata the policy denies (under _mount_lock)
        self._leases: dict[str, str] = {}  # lease id -> the reference it was read for (for events; ids are never shown)
        self._lease_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"VaultSource({self.name!r}, {self.connection.address!r})"

    def fetch(self, path: str, version: str | None) -> Secret:
        """Read ``path`` (the logical path, mount included) at ``version`` (KV v2 only).

        Raises ``NotFoundError`` (missing path, deleted or destroyed version),
        ``AuthError`` (denied, bad token), ``ManifestError`` (a version on KV v1
        or a non-KV path, a Vault 400) or ``TransientError``.
        """
        path = path.strip("/")
        ref = _ref(self.name, path, version)
        self._token.ensure()
        mount, kind = self._mount_of(path, ref)
        if kind == KV2:
            return self._read_kv2(mount, path, version, ref)
        if kind == UNKNOWN:
            return self._read_guessing(mount, path, version, ref)
        if version is not None:
            raise ManifestError(f"{ref}: ?version= needs a KV v2 mount; {mount} is {'KV v1' if kind == KV1 else 'not KV'}")
        return self._read_plain(path, ref, kind)

    def current_version(self, path: str) -> str | None:
        """The version a fetch of the latest ``path`` would return now, read as cheaply as possible.

        KV v2: the metadata's ``current_version`` (a data read when metadata is
        denied); KV v1: the content hash; other engines (leased): None. On a
        mount the policy hides from detection it is a data read (a leased answer
        marks the mount as non-KV). Raises what ``fetch`` raises, including
        ``NotFoundError`` for a deleted latest version.
        """
        path = path.strip("/")
        ref = _ref(self.name, path, None)
        self._token.ensure()
        mount, kind = self._mount_of(path, ref)
        if kind == OTHER:
            return None
        with self._mount_lock:
            metadata_allowed = mount not in self._no_metadata
        if kind == KV2 and metadata_allowed:
            try:
                data = self._get(f"{mount}metadata/{path[len(mount):]}", ref)["data"]
            except AuthError:
                with self._mount_lock:
                    self._no_metadata.add(mount)  # the policy allows data only: stop asking
                return self.fetch(path, None).version
            current = int(data.get("current_version") or 0)
            meta = (data.get("versions") or {}).get(str(current)) or {}
            if current == 0 or meta.get("destroyed") or meta.get("deletion_time"):
                raise NotFoundError(f"{ref}: the latest version{f' ({current})' if current else ''} is deleted or destroyed")
            return str(current)
        return self.fetch(path, None).version

    def renew_lease(self, lease: Lease) -> Lease | None:
        """Renew a dynamic secret's lease for its original duration.

        None when it is not renewable (any more) or has already expired;
        raises ``AuthError`` or ``TransientError``.
        """
        if not lease.renewable:
            return None
        self._token.ensure()
        try:
            with self._errors(f"source {self.name!r}: lease renewal", self.connection.address):
                resp = self._token.client().sys.renew_lease(lease_id=lease.lease_id, increment=int(lease.duration))
        except (ManifestError, NotFoundError):  # 400 "lease not found" / "not renewable"
            return None
        return Lease(resp["lease_id"], float(resp.get("lease_duration") or 0), bool(resp.get("renewable")))

    def revoke_lease(self, lease_id: str) -> None:
        """Revoke one lease; raises ``AuthError``, ``TransientError`` or ``ManifestError``."""
        self._token.ensure()
        with self._errors(f"source {self.name!r}: lease revocation", self.connection.address):
            self._token.client().sys.revoke_lease(lease_id=lease_id)
        with self._lease_lock:
            ref = self._leases.pop(lease_id, None)
        self._events.emit(Event("lease_revoke", source=self.name, ref=ref))

    def maintain_token(self) -> None:
        """Renew the token at 2/3 of its TTL, or log in again; see ``TokenKeeper.maintain``."""
        self._token.maintain()

    def token_ttl(self) -> float | None:
        """Seconds the token has left; None when it never expires or cannot be looked up."""
        return self._token.ttl()

    def close(self) -> None:
        """Revoke this source's leases when ``revoke_on_exit``; close the connection pool.

        The login token is left to expire rather than revoked: revoking it would
        revoke every lease it created, which ``exec`` children still use.
        """
        if self.revoke_on_exit:
            with self._lease_lock:
                leases = sorted(self._leases)
            for lease_id in leases:
                try:
                    self.revoke_lease(lease_id)
                except LauncherError as exc:
                    log.warning("%s", exc.message)
        self._token.close()
        self._http.close()

    # -- mounts and reads ---------------------------------------------------

    def _mount_of(self, path: str, ref: str) -> tuple[str, str]:
        """The mount path (``secret/``) holding ``path`` and its kind, asked once per mount."""
        with self._mount_lock:  # one detection per mount, even with 32 threads asking
            known = [m for m in self._mounts if (path + "/").startswith(m)]
            if known:
                mount = max(known, key=len)
                return mount, self._mounts[mount]
            try:
                data = self._get(f"sys/internal/ui/mounts/{path}", ref)["data"]
            except (AuthError, NotFoundError, ManifestError):
                # Denied (or no such mount): guess the first segment, as the CLI does.
                mount = path.split("/", 1)[0] + "/"
                self._mounts[mount] = UNKNOWN
                return mount, UNKNOWN
            mount = str(data.get("path") or path.split("/", 1)[0] + "/")
            kind = OTHER
            if data.get("type") in ("kv", "generic"):
                kind = KV2 if str((data.get("options") or {}).get("version")) == "2" else KV1
            self._mounts[mount] = kind
            log.debug("source %s: mount %s is %s", self.name, mount, kind)
            return mount, kind

    def _read_kv2(self, mount: str, path: str, version: str | None, ref: str) -> Secret:
        rest = path[len(mount):]
        if not rest:
            raise ManifestError(f"{ref}: the path names a mount, not a secret")
        if version is not None and not (version.isdigit() and int(version) > 0):
            raise ManifestError(f"{ref}: a KV v2 version is a positive whole number")
        try:
            body = self._get(f"{mount}data/{rest}", ref, {"version": version} if version else None)
        except NotFoundError as exc:
            raise _explain_missing(exc, ref) from exc.__cause__
        return _kv2_secret(body, version, ref)

    def read_many(self, items: Sequence[tuple[str, str | None]], within: float) -> dict[tuple[str, str | None], Secret]:
        """KV v2 secrets among ``items``, read in one pipelined batch (``VaultHTTP.get_many``).

        Best effort (``Batching``): anything that goes wrong here, from the token to a
        mount lookup to the batch itself, leaves its items to ``fetch``, which reports
        it. ``within`` bounds the whole batch, mount lookups included.
        """
        import contextlib

        from launcher import deadline

        found: dict[tuple[str, str | None], Secret] = {}
        plan: list[tuple[tuple[str, str | None], str, dict[str, str] | None, str]] = []
        with deadline.bound(within):
            try:
                self._token.ensure()
                for asked, version in items:
                    path = asked.strip("/")  # as ``fetch`` does; the answer is keyed by what was asked
                    ref = _ref(self.name, path, version)
                    mount, kind = self._mount_of(path, ref)
                    rest = path[len(mount):]
                    if kind == KV2 and rest and (version is None or (version.isdigit() and int(version) > 0)):
                        plan.append(((asked, version), f"{mount}data/{rest}", {"version": version} if version else None, ref))
                token = self._token.token
            except LauncherError as exc:
                log.debug("source %s: no batch read (%s)", self.name, exc)
                return found
            bodies = self._http.get_many([(target, params) for _, target, params, _ in plan], token)
        for (key, _, _, ref), body in zip(plan, bodies, strict=True):
            if body is not None:
                with contextlib.suppress(LauncherError):  # deleted or destroyed: ``fetch`` says which
                    found[key] = _kv2_secret(body, key[1], ref)
        return found

    def _read_plain(self, path: str, ref: str, kind: str) -> Secret:
        body = self._get(path, ref)
        data = body.get("data")
        if not isinstance(data, dict):
            raise NotFoundError(f"{ref}: not found")
        fields = {str(k): to_text(v) for k, v in data.items()}
        if body.get("lease_id"):
            lease = Lease(body["lease_id"], float(body.get("lease_duration") or 0), bool(body.get("renewable")))
            with self._lease_lock:
                self._leases[lease.lease_id] = ref
            return Secret(fields=fields, lease=lease)
        if kind == OTHER:
            return Secret(fields=fields)
        where = (self.connection.address, self.connection.namespace or "", path)
        return Secret(fields=fields, version=_KV1_VERSIONS.version(where, json.dumps(data, sort_keys=True, default=str)))

    def _read_guessing(self, mount: str, path: str, version: str | None, ref: str) -> Secret:
        """The mount's kind is unknown: try KV v2, then the plain read; remember what worked."""
        errors: list[LauncherError] = []
        for kind in (KV2, UNKNOWN) if version is None else (KV2,):
            try:
                secret = self._read_kv2(mount, path, version, ref) if kind == KV2 else self._read_plain(path, ref, KV1)
            except (AuthError, NotFoundError) as exc:
                errors.append(exc)
                continue
            with self._mount_lock:
                self._mounts[mount] = KV2 if kind == KV2 else (OTHER if secret.lease else KV1)
            return secret
        # Denied one way and missing the other: report the denial (77 beats 66).
        raise next((e for e in errors if isinstance(e, AuthError)), errors[-1])

    def _get(self, path: str, ref: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return self._http.get(path, self._token.token, ref, params)


def _kv2_secret(body: dict[str, Any], version: str | None, ref: str) -> Secret:
    """The secret in a KV v2 data read's answer; ``NotFoundError`` when that version has no data."""
    data = body.get("data") or {}
    fields, meta = data.get("data"), data.get("metadata") or {}
    if not isinstance(fields, dict):
        raise NotFoundError(f"{ref}: not found (deleted or destroyed)")
    number = meta.get("version")
    return Secret(fields={str(k): to_text(v) for k, v in fields.items()}, version=str(number) if number else version)


def _ref(source: str, path: str, version: str | None) -> str:
    return str(FetchKey(source, path, version))


def _explain_missing(exc: NotFoundError, ref: str) -> NotFoundError:
    """Say whether a KV v2 version was deleted or destroyed (Vault's 404 carries the metadata)."""
    body = getattr(exc.__cause__, "json", None)
    meta = ((body or {}).get("data") or {}).get("metadata") or {}
    if meta.get("destroyed"):
        return NotFoundError(f"{ref}: version {meta.get('version')} was destroyed")
    if meta.get("deletion_time"):
        return NotFoundError(f"{ref}: version {meta.get('version')} was deleted")
    return NotFoundError(f"{ref}: not found")


BACKEND = Backend(
    type="vault",
    config=VaultSourceConfig,
    open=lambda config, events: VaultSource(config, events=events),
    loggers=("hvac", "urllib3", "requests"),
)
