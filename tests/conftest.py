"""Fixtures shared by every test module: the OpenBao server, the Key Vault and Secret Manager emulators, PostgreSQL,
the bundle, a drained pipe."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.helpers import Sink

pytest_plugins = ["tests.openbao", "tests.keyvault_emulator", "tests.gcp_emulator", "tests.postgres", "tests.bundle_image"]


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A pipe drained by a thread (``Sink``), closed after the test if the test did not."""
    s = Sink()
    yield s
    try:
        os.close(s.fd)
    except OSError:
        pass
