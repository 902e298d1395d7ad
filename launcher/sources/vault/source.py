"""The Vault / OpenBao source: reads, versions, leases, and the writes that are reads (issued secrets).

Users write the logical path (``secret/app/db``) for every engine. The mount
behind a path is found once with ``sys/internal/ui/mounts/<path>`` and cached:
KV v2 reads ``<mount>/data/<rest>`` (``?version=N`` allowed), KV v1 and every
other engine are plain reads. When the policy denies that lookup, the first
path segment is taken as the mount and the KV v2 form is tried, then the plain
read. Leased reads (dynamic secrets) keep their lease on the ``Secret``. A pki mount's
``issue/ROLE`` and a transit mount's ``decrypt/KEY`` are writes of the reference's
request data (``write``; what the answers mean is ``issued``'s).

Nothing here retries: transient failures raise ``TransientError`` and the
resolver's policy decides. Every request goes through the source's ``VaultHTTP``
(one pool); the token, logins and hvac live in ``auth`` and ``adapter``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from launcher import deadline
from launcher.clock import SYSTEM, Clock
from launcher.errors import AuthError, LauncherError, ManifestError, NotFoundError
from launcher.events import NOTHING, Event, EventSink
from launcher.model.refs import FetchKey
from launcher.sources.base import ContentVersions, Lease, Secret, to_text
from launcher.sources.vault import issued
from launcher.sources.vault.auth import TokenKeeper
from launcher.sources.vault.config import VaultSourceConfig, WriteKind
from launcher.sources.vault.connection import connection_settings
from launcher.sources.vault.http import VaultAnswerError, VaultHTTP, vault_errors

log = logging.getLogger(__name__)

# What a mount is, as far as reading goes (found once per mount): KV v2, KV v1, pki and
# transit (whose issue/ROLE and decrypt/KEY are writes: ``issued``), another engine (plain
# reads, maybe leased), or not known (detection denied: guessed at the first read).
MountKind = Literal["kv2", "kv1", "pki", "transit", "other", "unknown"]
KV2: MountKind = "kv2"
KV1: MountKind = "kv1"
OTHER: MountKind = "other"
UNKNOWN: MountKind = "unknown"
_ENGINES: dict[str, MountKind] = {"pki": "pki", "transit": "transit"}  # engines known by their type alone
_KV1_VERSIONS = ContentVersions()  # KV v1 keeps no versions: count the changes this process sees


class VaultSource:
    """One Vault server (address, namespace, TLS, auth); shared by the resolver's threads.

    Construction does no I/O and raises ``ManifestError`` (78) without an
    address. The first request logs in (or reads the token), under a lock.
    """

    def __init__(self, config: VaultSourceConfig, *, environ: Mapping[str, str] | None = None, clock: Clock = SYSTEM,
                 events: EventSink = NOTHING) -> None:
        env = os.environ if environ is None else environ
        self.name = config.name
        self.revoke_on_exit = config.revoke_on_exit
        self.connection = connection_settings(config, env)
        self._http = VaultHTTP(self.connection)
        self._token = TokenKeeper(config.name, config.auth, self._http, self._hvac_client, env, clock, events)
        self._events = events
        self._mounts: dict[str, MountKind] = {}  # "secret/" -> KV2 | KV1 | OTHER | UNKNOWN
        self._mount_lock = threading.Lock()
        self._no_metadata: set[str] = set()  # KV v2 mounts whose metadata the policy denies (under _mount_lock)
        self._leases: dict[str, str] = {}  # lease id -> the reference it was read for (for events; ids are never shown)
        self._lease_lock = threading.Lock()
        self._issued = issued.Issuances(config.name, events)  # certificates issued, for events and revoke_on_exit

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
        engine = issued.target(kind, path[len(mount):])
        if engine is not None:  # issue/ROLE, decrypt/KEY: a write, even without request data
            if version is not None:
                raise ManifestError(f"{ref}: ?version= does not apply to {mount}{path[len(mount):].split('/')[0]}/")
            return self._write(mount, engine, path, {}, ref)
        if kind == KV2:
            return self._read_kv2(mount, path, version, ref)
        if kind == UNKNOWN:
            return self._read_guessing(mount, path, version, ref)
        if version is not None:
            raise ManifestError(f"{ref}: ?version= needs a KV v2 mount; {mount} is {'KV v1' if kind == KV1 else 'not KV'}")
        return self._read_plain(path, ref, kind)

    def write(self, path: str, data: Mapping[str, str]) -> Secret:
        """Write ``data`` to a pki mount's ``issue/ROLE`` or a transit mount's ``decrypt/KEY``
        (``Writing``); the secret is the answer (see ``issued``).

        Raises ``ManifestError`` for request data anywhere else (or a Vault 400: a
        field the role refuses, a malformed ciphertext), ``NotFoundError`` for a role
        or key that does not exist or a mount whose type cannot be found out (nothing
        is written there), and what ``fetch`` raises.
        """
        path = path.strip("/")
        ref = str(FetchKey(self.name, path, None, tuple(sorted(data.items()))))
        self._token.ensure()
        mount, kind = self._mount_of(path, ref)
        if kind == UNKNOWN:
            raise NotFoundError(f"{ref}: no pki or transit mount at {mount} that this token can see (request data "
                                "is only sent to one)")
        engine = issued.target(kind, path[len(mount):])
        if engine is None:
            raise ManifestError(f"{ref}: request data only goes to a pki mount's issue/ROLE or a transit mount's "
                                f"decrypt/KEY; {mount} is a {kind} mount")
        return self._write(mount, engine, path, data, ref)

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
        if kind not in (KV2, KV1, UNKNOWN):  # leased, issued or decrypted: no version to compare
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
            with vault_errors(f"source {self.name!r}: lease renewal", self.connection.address):
                resp = self._token.client().sys.renew_lease(lease_id=lease.lease_id, increment=int(lease.duration))
        except (ManifestError, NotFoundError):  # 400 "lease not found" / "not renewable"
            return None
        return Lease(resp["lease_id"], float(resp.get("lease_duration") or 0), bool(resp.get("renewable")))

    def revoke_lease(self, lease_id: str) -> None:
        """Revoke one lease; raises ``AuthError``, ``TransientError`` or ``ManifestError``."""
        self._token.ensure()
        with vault_errors(f"source {self.name!r}: lease revocation", self.connection.address):
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
            self._issued.revoke_all(self._revoke_certificate, time.time())
        self._token.close()
        self._http.close()

    # -- mounts and reads ---------------------------------------------------

    def _mount_of(self, path: str, ref: str) -> tuple[str, MountKind]:
        """The mount path (``secret/``) holding ``path`` and its kind, asked once per mount."""
        with self._mount_lock:  # one detection per mount, even with 32 threads asking
            known = [m for m in self._mounts if (path + "/").startswith(m)]
            if known:
                mount = max(known, key=len)
                return mount, self._mounts[mount]
            try:
                data = self._get(f"sys/internal/ui/mounts/{path}", ref).get("data")
            except (AuthError, NotFoundError, ManifestError):
                data = None  # denied, or no such mount
            if not isinstance(data, dict):
                # Denied, no such mount, or an answer without the mount (a proxy's, an old server's):
                # guess the first segment, as the CLI does, and let the reads tell.
                mount = path.split("/", 1)[0] + "/"
                self._mounts[mount] = UNKNOWN
                return mount, UNKNOWN
            mount = str(data.get("path") or path.split("/", 1)[0] + "/")
            kind = _ENGINES.get(str(data.get("type")), OTHER)
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
        """KV v2 secrets among ``items``, read at once, one connection each (``batch.get_many``).

        Best effort (``Batching``): anything that goes wrong here, from the token to a
        mount lookup to the batch itself, leaves its items to ``fetch``, which reports
        it. ``within`` bounds the whole batch, mount lookups included.
        """
        from launcher.sources.vault.batch import get_many  # selectors and friends: only a batch pays for them

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
            bodies = get_many(self.connection, [(target, params) for _, target, params, _ in plan], token)
        for (key, _, _, ref), body in zip(plan, bodies, strict=True):
            if body is not None:
                with contextlib.suppress(LauncherError):  # deleted or destroyed: ``fetch`` says which
                    found[key] = _kv2_secret(body, key[1], ref)
        return found

    def _read_plain(self, path: str, ref: str, kind: MountKind) -> Secret:
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
        if kind != KV1:
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

    def _write(self, mount: str, engine: WriteKind, path: str, data: Mapping[str, str], ref: str) -> Secret:
        """POST ``data`` to ``path``: one certificate issued, or one ciphertext decrypted."""
        with vault_errors(ref, self.connection.address):
            try:
                body = self._http.request("POST", path, self._token.token, body=dict(data))
            except VaultAnswerError as exc:
                issued.raise_if_missing(exc, ref)
                raise
        if engine == "transit":
            return issued.plaintext(body, ref)
        secret = issued.certificate(body, ref)
        self._issued.record(ref, mount, secret)
        return secret

    def _revoke_certificate(self, mount: str, serial: str) -> None:
        with vault_errors(f"source {self.name!r}: revoking certificate {serial}", self.connection.address):
            self._http.request("POST", f"{mount}revoke", self._token.token, body={"serial_number": serial})

    def _hvac_client(self) -> Any:
        from launcher.sources.vault.adapter import open_client  # hvac: only once a login or lease needs it

        return open_client(self._http)

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
