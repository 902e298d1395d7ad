"""The ``vault`` source's settings: what a manifest may say about a Vault / OpenBao server.

A leaf of the backend: plain dataclasses whose fields are ``setting`` declarations,
read by the manifest package (``auth`` is a variant: its allowed keys depend on its
``method``). None means "use the standard variable": VAULT_* first, then OpenBao's BAO_*.
"""

from __future__ import annotations

from typing import Literal, get_args

from launcher.model.config import SourceConfig
from launcher.model.refs import Reference
from launcher.model.settings import setting
from launcher.record import record

# How a Vault source logs in (``auth.method``).
AuthMethod = Literal["token", "approle", "kubernetes", "jwt", "cert"]
AUTH_METHODS: tuple[AuthMethod, ...] = get_args(AuthMethod)
# Each method's own settings (``method`` aside), in the order messages list them.
AUTH_KEYS: dict[AuthMethod, tuple[str, ...]] = {
    "token": ("token_file",),
    "approle": ("role_id", "secret_id", "secret_id_file", "mount"),
    "kubernetes": ("role", "jwt_file", "mount"),
    "jwt": ("role", "jwt_file", "mount"),
    "cert": ("cert_file", "key_file", "name", "mount"),
}


# The engines whose references are writes (docs/guides/issued-certificates.md), and the path below the mount
# each answers with a secret: a pki mount's issue/ROLE, a transit mount's decrypt/KEY.
WriteKind = Literal["pki", "transit"]
WRITE_VERBS: dict[WriteKind, str] = {"pki": "issue", "transit": "decrypt"}


def reference_problem(config: object, ref: Reference) -> str | None:
    """Request data on a path that cannot take it, found offline: only ``.../issue/ROLE`` and
    ``.../decrypt/KEY`` take it (whether the mount is pki or transit is known at the first request)."""
    if not ref.data:
        return None
    parts = ref.path.split("/")
    if len(parts) >= 3 and parts[-2] in WRITE_VERBS.values() and parts[-1]:
        return None
    names = ", ".join(name for name, _ in ref.data)
    return (f"unsupported query ({names}): only ?version=V is allowed, or request data for a pki mount's "
            "issue/ROLE or a transit mount's decrypt/KEY")


@record
class TlsConfig:
    """TLS settings of a source; None means "use the standard variable or system default"."""

    ca_cert: str | None = setting(None, "path", help="CA bundle (default $VAULT_CACERT, then $BAO_CACERT)")
    ca_path: str | None = setting(None, "path", help="CA directory (default $VAULT_CAPATH, then $BAO_CAPATH)")
    client_cert: str | None = setting(None, "path", help="client certificate (default $VAULT_CLIENT_CERT)")
    client_key: str | None = setting(None, "path", help="client key (default $VAULT_CLIENT_KEY)")
    skip_verify: bool | None = setting(None, "bool", help="no server verification (default $VAULT_SKIP_VERIFY)")


@record
class VaultAuth:
    """How a Vault source logs in. ``token`` reads token_file, VAULT_TOKEN, BAO_TOKEN, ~/.vault-token."""

    method: AuthMethod = setting("token", "choice", choices=AUTH_METHODS, help="the login method")
    token_file: str | None = setting(None, "path", help="a file holding the token (method token)")
    role_id: str | None = setting(None, help="the AppRole role id (method approle)")
    secret_id: str | None = setting(None, repr=False, help="the AppRole secret id; prefer secret_id_file (method approle)")
    secret_id_file: str | None = setting(None, "path", help="a file holding the AppRole secret id (method approle)")
    role: str | None = setting(None, help="the role to log in as (methods kubernetes, jwt)")
    jwt_file: str | None = setting(None, "path", help="the JWT (default for kubernetes: the service account token)")
    cert_file: str | None = setting(None, "path", help="the TLS client certificate to log in with (method cert, PEM)")
    key_file: str | None = setting(None, "path", help="its private key (method cert, PEM)")
    name: str | None = setting(None, help="the cert role to log in as (method cert; default: any role that matches)")
    mount: str | None = setting(None, help="where the auth method is mounted (default: its name)")


@record(kw_only=True)
class VaultSourceConfig(SourceConfig):
    """A HashiCorp Vault / OpenBao source; None fields fall back to the VAULT_* (then BAO_*) variables."""

    address: str | None = setting(None, help="https://vault.example.com:8200 (default $VAULT_ADDR, then $BAO_ADDR)")
    namespace: str | None = setting(None, help="Vault Enterprise / OpenBao namespace (default $VAULT_NAMESPACE)")
    auth: VaultAuth = setting(
        kind="variant", factory=VaultAuth, cls=VaultAuth, tag="method", variants=AUTH_KEYS,
        needs={
            "approle": (("role_id", "approle needs role_id and secret_id or secret_id_file"),),
            "kubernetes": (("role", "kubernetes needs a role"),),
            "jwt": (("role", "jwt needs a role"),),
            "cert": (("cert_file", "cert needs cert_file and key_file"), ("key_file", "cert needs cert_file and key_file")),
        },
        exclusive=(("secret_id", "secret_id_file"),),
        help="login method: token (default), approle, kubernetes, jwt, cert",
    )
    tls: TlsConfig = setting(kind="section", factory=TlsConfig, cls=TlsConfig, help="TLS settings")
    revoke_on_exit: bool = setting(False, "bool", help="revoke the leases of dynamic secrets and the certificates "
                                                       "issued when the launcher exits")
    type: str = "vault"
