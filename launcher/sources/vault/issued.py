"""Issued secrets: a pki mount's ``issue/ROLE`` and a transit mount's ``decrypt/KEY`` (docs/guides/issued-certificates.md).

A reference into one of those paths is a write whose request data is the reference's
query (``vault://pki/issue/web?common_name=app.internal&ttl=24h#certificate``). This
module knows the two shapes and their answers; ``source.VaultSource`` sends the write
(through the source's one ``VaultHTTP``, as every request) and asks here what it means:

- a certificate: ``certificate``, ``private_key``, ``issuing_ca``, ``ca_chain`` (the
  chain joined with newlines), ``serial_number``, ... of **one** answer; the serial is
  the version, ``expiration`` the expiry (``Secret.expires_at``), so the watcher issues
  a new one at 2/3 of the lifetime;
- a decryption: ``plaintext`` base64-decoded to text (bytes that are not UTF-8 are kept
  with ``surrogateescape``: a ``file: true`` binding writes them exactly, an environment
  variable cannot hold them and the binding is 78).

``Issuances`` remembers the certificates a source issued: it tells the audit trail and
the metrics (``cert_issue``, ``cert_renew``, ``cert_revoke``: serial and not_after, never
a key) and revokes them at exit when ``revoke_on_exit`` says so.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from launcher.errors import LauncherError, NotFoundError, UnavailableError
from launcher.events import Event, EventSink
from launcher.record import record
from launcher.sources.base import Secret, to_text
from launcher.sources.vault.config import WRITE_VERBS, WriteKind
from launcher.sources.vault.http import VaultAnswerError

log = logging.getLogger(__name__)

# What a 400 says when the role or the key is not there: the reference names something missing (66).
_MISSING = ("unknown role", "key not found", "no existing key")


def target(kind: str, rest: str) -> WriteKind | None:
    """Which write ``rest`` (the path below its mount) is on a mount of ``kind``, or None for a plain read.

    Only a mount whose type was found (``sys/internal/ui/mounts``) takes a write: on a mount
    of unknown type a POST could write a KV secret called ``issue/x``.
    """
    parts = rest.split("/")
    for engine, verb in WRITE_VERBS.items():
        if kind == engine and len(parts) == 2 and parts[0] == verb and parts[1]:
            return engine
    return None


def raise_if_missing(exc: VaultAnswerError, ref: str) -> None:
    """``NotFoundError`` (66) for a 400 that says the role or key does not exist; otherwise nothing."""
    errors = " ".join(str(e) for e in exc.json.get("errors") or []).lower()
    if exc.status == 400 and any(words in errors for words in _MISSING):
        raise NotFoundError(f"{ref}: {errors[:120]}") from exc


def certificate(body: dict[str, Any], ref: str) -> Secret:
    """The secret of one ``issue/ROLE`` answer: every field as text, ``ca_chain`` joined with newlines."""
    data = _data(body, ref)
    serial, expiration = data.get("serial_number"), data.get("expiration")
    if not isinstance(serial, str) or not isinstance(expiration, (int, float)) or not data.get("certificate"):
        raise UnavailableError(f"{ref}: the answer holds no certificate, serial number and expiration")
    fields = {str(k): "\n".join(map(str, v)) if isinstance(v, list) else to_text(v) for k, v in data.items()}
    return Secret(fields=fields, version=serial, expires_at=float(expiration))


def plaintext(body: dict[str, Any], ref: str) -> Secret:
    """The secret of one ``decrypt/KEY`` answer: ``plaintext`` decoded from base64."""
    data = _data(body, ref)
    fields = {str(k): to_text(v) for k, v in data.items()}
    try:
        raw = base64.b64decode(str(data.get("plaintext", "")), validate=True)
    except (binascii.Error, ValueError):
        raise UnavailableError(f"{ref}: the plaintext in the answer is not base64") from None
    fields["plaintext"] = raw.decode("utf-8", "surrogateescape")
    return Secret(fields=fields)


def _data(body: dict[str, Any], ref: str) -> dict[str, Any]:
    data = body.get("data")
    if not isinstance(data, dict):
        raise UnavailableError(f"{ref}: the answer holds no data")
    return data


@record
class Issued:
    """One certificate this process was issued (no key: the serial, where, until when)."""

    serial: str
    mount: str
    ref: str
    not_after: float


class Issuances:
    """The certificates one source issued; tells ``events`` of each issue, renewal and revocation."""

    def __init__(self, source: str, events: EventSink) -> None:
        self._source = source
        self._events = events
        self._issued: list[Issued] = []
        self._refs: set[str] = set()
        self._lock = threading.Lock()

    def record(self, ref: str, mount: str, secret: Secret) -> None:
        """A certificate was issued for ``ref``: the first for it is an issue, later ones renewals."""
        assert secret.version is not None and secret.expires_at is not None
        with self._lock:
            renewal = ref in self._refs
            self._refs.add(ref)
            self._issued.append(Issued(secret.version, mount, ref, secret.expires_at))
        kind = "cert_renew" if renewal else "cert_issue"
        self._events.emit(Event(kind, source=self._source, ref=ref, version=secret.version, expires_at=secret.expires_at))
        log.debug("source %s: %s: certificate %s issued, valid until %s", self._source, ref, secret.version,
                  time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(secret.expires_at)))

    def revoke_all(self, revoke: Callable[[str, str], None], now: float) -> None:
        """Revoke every certificate issued that has not expired yet (``revoke(mount, serial)``); a failure is a warning."""
        with self._lock:
            issued, self._issued = self._issued, []
        for cert in issued:
            if cert.not_after <= now:
                continue  # expired: nothing left to revoke
            outcome = "ok"
            try:
                revoke(cert.mount, cert.serial)
            except LauncherError as exc:
                log.warning("%s", exc.message)
                outcome = exc.status
            self._events.emit(Event("cert_revoke", source=self._source, ref=cert.ref, version=cert.serial,
                                    expires_at=cert.not_after, outcome=outcome))
