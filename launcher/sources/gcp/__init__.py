"""The ``gcp`` source: Google Secret Manager through google-cloud-secret-manager.

``config`` (settings and reference rules, a leaf), ``client`` (credentials and the
REST or gRPC transport, the SDK's import), ``source`` (reads, versions, CRC32C, the
error mapping). This package's ``BACKEND`` is what the source registry imports to
read a manifest: it imports the settings only; the SDK loads on the first request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from launcher.events import EventSink
from launcher.sources.base import Backend
from launcher.sources.gcp.config import GcpSourceConfig, reference_problem

if TYPE_CHECKING:
    from launcher.sources.gcp.source import GcpSource

__all__ = ["BACKEND", "GcpSourceConfig"]


def _open(config: Any, events: EventSink) -> GcpSource:
    from launcher.sources.gcp.source import GcpSource  # the SDK: only once a source is opened

    return GcpSource(config)


BACKEND = Backend(
    type="gcp",
    config=GcpSourceConfig,
    open=_open,
    reference_problem=reference_problem,
    loggers=("google", "grpc"),  # the SDK logs whole answers at DEBUG
    requires=("google.cloud.secretmanager_v1",),
    extra="gcp",
    starter="project: my-project   # default $GOOGLE_CLOUD_PROJECT; references: my-gcp://db-password\n",
)
