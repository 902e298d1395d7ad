"""Where and how to reach a Vault server: the manifest, else the VAULT_* variables, else OpenBao's BAO_*.

``connection_settings`` is read once per source, before any request, and refuses
(78) what cannot work: no address, an address without http(s)://, a CA or client
certificate file that does not exist, a bad VAULT_SKIP_VERIFY, a namespace with
control characters. The result is what the source's one connection pool is built from.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Literal

from launcher.errors import ManifestError
from launcher.record import record
from launcher.sources.transport import check_url
from launcher.sources.vault.config import VaultSourceConfig

log = logging.getLogger(__name__)
_TRUE = {"1", "t", "true"}  # what Go's strconv.ParseBool accepts, as the Vault CLI does
_FALSE = {"0", "f", "false"}


@record
class Connection:
    """Where and how to reach Vault; built once per source by ``connection_settings``."""

    address: str
    namespace: str | None
    verify: bool | str
    cert: str | tuple[str, str] | None


    @property
    def roots(self) -> str | Literal[False] | None:
        """What the server is verified with: a CA file or directory, the default roots (None), or nothing (False)."""
        if self.verify is False:
            return False
        return self.verify if isinstance(self.verify, str) else None


def connection_settings(config: VaultSourceConfig, environ: Mapping[str, str]) -> Connection:
    """The manifest's address, namespace and TLS, else the VAULT_* variables, else OpenBao's BAO_*.

    A manifest that sets ``ca_cert`` or ``ca_path`` ignores both CA variables.
    Raises ``ManifestError`` (78), before any request, for what cannot work: no
    address, an address without http(s)://, a CA or client certificate file
    that does not exist, a bad VAULT_SKIP_VERIFY, a namespace with control characters.
    """
    what = f"source {config.name!r}"
    address, origin = config.address, f"sources.{config.name}.address"
    if not address:
        origin, address = _variable(environ, "ADDR")
    if not address:
        raise ManifestError(f"{what}: no Vault address (set VAULT_ADDR (or BAO_ADDR), or sources.{config.name}.address)")
    namespace = config.namespace or _variable(environ, "NAMESPACE")[1] or None
    if namespace is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in namespace):
        raise ManifestError(f"{what}: the namespace holds a control character")
    return Connection(check_url(address, f"{what}: {origin}"), namespace, _verify(config, environ, what),
                      _client_cert(config, environ, what))


def _verify(config: VaultSourceConfig, environ: Mapping[str, str], what: str) -> bool | str:
    """False (skip_verify), a CA file or directory that exists, or True (the default roots)."""
    tls = config.tls
    skip = tls.skip_verify
    if skip is None:
        name, text = _variable(environ, "SKIP_VERIFY")
        text = text.strip().lower()
        if text and text not in _TRUE | _FALSE:
            raise ManifestError(f"{what}: {name} must be true or false")
        skip = text in _TRUE
    if skip:
        log.warning("source %s: TLS verification is off (skip_verify): anyone on the path can read the secrets", config.name)
        return False
    if tls.ca_cert or tls.ca_path:
        return _existing(tls.ca_cert or tls.ca_path or "", f"{what}: tls.{'ca_cert' if tls.ca_cert else 'ca_path'}")
    for suffix in ("CACERT", "CAPATH"):  # CACERT wins over CAPATH, as in the CLI; VAULT_* over BAO_*
        name, value = _variable(environ, suffix)
        if value:
            return _existing(value, f"{what}: {name}")
    return True


def _client_cert(config: VaultSourceConfig, environ: Mapping[str, str], what: str) -> str | tuple[str, str] | None:
    """The client certificate (and key) for mTLS, each a file that exists; None without one.

    With ``auth.method: cert`` it is the login's certificate (``auth.cert_file`` and
    ``key_file``): Vault's cert method reads the certificate the connection presents, so
    every request of the source presents it (one pool); a different ``tls.client_cert`` is 78.
    """
    tls = config.tls
    auth = config.auth
    if auth.method == "cert":
        if tls.client_cert and os.path.realpath(tls.client_cert) != os.path.realpath(auth.cert_file or ""):
            raise ManifestError(f"{what}: tls.client_cert and auth.cert_file differ; a connection presents one "
                                "certificate (with method cert, give auth.cert_file only)")
        return (_existing(auth.cert_file or "", f"{what}: auth.cert_file"), _existing(auth.key_file or "", f"{what}: auth.key_file"))
    cert_name, cert_file = ("tls.client_cert", tls.client_cert) if tls.client_cert else _variable(environ, "CLIENT_CERT")
    key_name, key_file = ("tls.client_key", tls.client_key) if tls.client_key else _variable(environ, "CLIENT_KEY")
    if cert_file:
        cert_file = _existing(cert_file, f"{what}: {cert_name}")
    if key_file:
        key_file = _existing(key_file, f"{what}: {key_name}")
    return (cert_file, key_file) if cert_file and key_file else cert_file or None


def _variable(environ: Mapping[str, str], suffix: str) -> tuple[str, str]:
    """(name, value) of VAULT_<suffix>, else OpenBao's BAO_<suffix>; ("VAULT_<suffix>", "") when neither is set."""
    for prefix in ("VAULT_", "BAO_"):
        value = environ.get(prefix + suffix, "")
        if value:
            return prefix + suffix, value
    return "VAULT_" + suffix, ""


def _existing(path: str, what: str) -> str:
    """``path`` when it names an existing file or directory; ``ManifestError`` (78) otherwise."""
    if "\0" in path:
        raise ManifestError(f"{what}: the file name holds a NUL byte")
    if not os.path.exists(path):
        raise ManifestError(f"{what}: {path} does not exist")
    return path
