"""The ``gcp`` source's settings and reference rules: what a manifest may say about Google Secret Manager.

A leaf of the backend: the config dataclass (``setting`` declarations the manifest
package reads) and the rules a reference must obey, checked before any request.
``gcp://projects/P/secrets/S[/versions/V][#KEY]`` or ``gcp://S[/versions/V][#KEY]`` in the
source's project; the version is named in the path only (``?version=`` is refused, so one
version has one spelling, one read and one cache entry).
"""

from __future__ import annotations

import re
from typing import Literal, get_args

from launcher.model.config import SourceConfig
from launcher.model.refs import Reference
from launcher.model.settings import setting
from launcher.record import record

# How a source obtains its credentials (``credentials``).
Credentials = Literal["default", "none"]
CREDENTIALS: tuple[Credentials, ...] = get_args(Credentials)
# https://cloud.google.com/resource-manager/docs/creating-managing-projects: ids, numbers, and
# domain-scoped ids (example.com:app); lenient, Google enforces its own rules.
_PROJECT_RE = re.compile(r"[a-z0-9][a-z0-9.:-]{0,99}\Z")
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,255}\Z")
_VERSION_RE = re.compile(r"(?:[1-9][0-9]{0,18}|[A-Za-z][A-Za-z0-9_-]{0,62})\Z")  # a number, latest, an alias


@record(kw_only=True)
class GcpSourceConfig(SourceConfig):
    """A Google Secret Manager source; None fields fall back to the Google variables."""

    project: str | None = setting(None, help="the project of short references gcp://SECRET (default $GOOGLE_CLOUD_PROJECT, "
                                  "then the credentials' project)")
    credentials: Credentials = setting("default", "choice", choices=CREDENTIALS,
                               help="default: Application Default Credentials; none: anonymous (emulators)")
    endpoint: str | None = setting(None, help="http(s)://HOST[:PORT] for the REST API, HOST[:PORT] for gRPC "
                                   "(default https://secretmanager.googleapis.com)")
    type: str = "gcp"


@record
class SecretName:
    """A reference's path taken apart; ``project`` None means the source's project."""

    project: str | None
    secret: str
    version: str

    def resource(self, project: str) -> str:
        return f"projects/{self.project or project}/secrets/{self.secret}/versions/{self.version}"


def parse_path(path: str) -> SecretName:
    """``projects/P/secrets/S[/versions/V]`` or ``S[/versions/V]``; ``ValueError`` saying what is wrong."""
    parts = path.split("/")
    project = None
    if len(parts) >= 4 and parts[0] == "projects" and parts[2] == "secrets":
        project, parts = parts[1], parts[3:]
        if not _PROJECT_RE.match(project):
            raise ValueError(f"{project!r} is not a Google Cloud project id or number")
    elif parts[0] == "projects" and len(parts) >= 3 and parts[2] == "locations":
        raise ValueError("regional secrets (projects/P/locations/L/...) are not supported")
    if len(parts) not in (1, 3) or (len(parts) == 3 and parts[1] != "versions"):
        raise ValueError("expected gcp://SECRET[/versions/V] or gcp://projects/PROJECT/secrets/SECRET[/versions/V]")
    if not _SECRET_RE.match(parts[0]):
        raise ValueError(f"{parts[0]!r} is not a Secret Manager secret id (1-255 letters, digits, _ and -)")
    version = parts[2] if len(parts) == 3 else "latest"
    if not _VERSION_RE.match(version):
        raise ValueError(f"version {version!r} is not a version number, latest or an alias")
    return SecretName(project, parts[0], version)


def reference_problem(config: GcpSourceConfig, ref: Reference) -> str | None:
    """What is wrong with ``ref`` for this backend, found without any request."""
    if ref.version is not None:
        return (f"?version= is not used by gcp references: name the version in the path, "
                f"{ref.source}://{ref.path.split('/versions/')[0]}/versions/{ref.version}")
    try:
        parse_path(ref.path)
    except ValueError as exc:
        return str(exc)
    return None
