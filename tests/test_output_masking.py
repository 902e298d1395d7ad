"""What the supervisor holds for masking: versions kept, masker built off its thread, one pipe for one file, what is visible."""

from __future__ import annotations

import json
import logging
import os
import random
import string
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from launcher.model.refs import FetchKey
from launcher.resolve.bindings import BindingResult
from launcher.resolve.visible import Slot, string_leaves, visible_values
from launcher.run.mask_versions import Versions
from launcher.run.output_masking import Masking
from launcher.sources.base import Secret
from tests.helpers import Sink, wait_for

CANARY = "canary-Tq8ZvX3kLm9pWd7"
OTHER = "other-JfR2yH6nBc4sKe1"


def slots(*values: str) -> dict[Slot, str]:
    return {("binding", f"V{i}", "0"): v for i, v in enumerate(values)}


# -- Versions -----------------------------------------------------------------------------------


def test_three_versions_of_each_value_are_kept() -> None:
    versions = Versions()
    for value in ("v1-aaaa", "v2-bbbb", "v3-cccc", "v4-dddd"):
        versions.add({("binding", "DB", "0"): value, ("binding", "API", "0"): "api-steady"})
    assert versions.texts() == {"v2-bbbb", "v3-cccc", "v4-dddd", "api-steady"}
    versions.add({("binding", "DB", "0"): "v2-bbbb", ("binding", "API", "0"): "api-steady"})  # a rollback
    assert versions.texts() == {"v3-cccc", "v4-dddd", "v2-bbbb", "api-steady"}


def test_a_slot_that_stays_missing_is_forgotten_after_three_updates() -> None:
    versions = Versions()
    versions.add({("secret", "dev", "a", "", "k1"): "gone-soon", ("secret", "dev", "a", "", "k2"): "stays"})
    for expected in ({"gone-soon", "stays"}, {"gone-soon", "stays"}, {"stays"}):
        versions.add({("secret", "dev", "a", "", "k2"): "stays"})
        assert versions.texts() == expected
    assert len(versions) == 1


def test_thirty_thousand_values_rotated_five_times_keep_three_versions() -> None:
    rnd = random.Random(1)
    versions = Versions()
    for _ in range(5):
        versions.add({("secret", "big", "k", "", str(i)): "".join(rnd.choices(string.ascii_letters, k=24)) for i in range(30000)})
    assert len(versions.texts()) == 90000


# -- what the child can see ------------------------------------------------------------------------


def test_visible_values_are_the_bindings_pieces_and_every_string_leaf() -> None:
    key = FetchKey("aws", "prod/app/db", None)
    secret = Secret(value=json.dumps({"user": "app-user", "password": "pw-1", "replica": {"hosts": ["h-1", {"pw": "pw-2"}]},
                                      "port": 5432, "config": json.dumps({"token": "tok-3"})}))
    results = [
        BindingResult("URL", "postgres://{{ aws://prod/app/db#user }}@db", "ok", value="postgres://app-user@db",
                      from_secrets=(("1", "app-user"),)),
        BindingResult("DB_*", "aws://prod/app/db", "ok", from_secrets=(("DB_PORT", "5432"),)),
        BindingResult("LEVEL", "-", "default", value="info"),
    ]
    seen = visible_values(results, {key: secret})
    assert set(seen.values()) == {"app-user", "5432", "pw-1", "h-1", "pw-2", "tok-3"}  # not "info", not the JSON text
    assert seen[("binding", "URL", "1")] == "app-user"
    assert seen[("secret", "aws", "prod/app/db", "", "", "replica", "hosts", "1", "pw")] == "pw-2"
    fields = visible_values([], {key: Secret(fields={"a": "plain", "b": '["x-1", "[not json"]'})})
    assert set(fields.values()) == {"plain", "x-1", "[not json"}


def test_string_leaves_of_deep_and_broken_json() -> None:
    deep = "[" * 5000 + '"deep-1"' + "]" * 5000  # past the parser's recursion limit: the text itself
    assert [leaf for _, leaf in string_leaves(deep)] == [deep]
    assert list(string_leaves('{"a": [1, true, null, "s-1"]}')) == [(("a", "3"), "s-1")]
    assert list(string_leaves("  {broken")) == [((), "  {broken")]


# -- Masking: the builder thread and the pause ---------------------------------------------------------


def test_update_returns_at_once_and_output_waits_for_the_new_masker(sink: Sink) -> None:
    """The caller (the supervisor's loop) never builds; what the next child writes waits for the masker that knows it."""
    masking = Masking(streams=(sink.fd,))
    masking.update(lambda: slots(CANARY))
    masking.start()
    child = masking.outputs()[sink.fd]
    os.write(child, f"before {CANARY}\n".encode())
    wait_for(lambda: sink.data == b"before <concealed>\n", what="the first line")
    gate = threading.Event()
    builder: list[str] = []

    def slow() -> Mapping[Slot, str]:
        builder.append(threading.current_thread().name)
        gate.wait(30)
        return slots(CANARY, OTHER)

    started = time.monotonic()
    masking.update(slow)
    assert time.monotonic() - started < 10  # the build waits 30 s for the gate: returning at all proves update did not
    os.write(child, f"after {OTHER}\n".encode())  # a new child with the new value
    wait_for(lambda: builder, what="the build to start")
    assert builder == ["mask-build"]
    with pytest.raises(AssertionError):  # nothing is written while the masker is being built
        wait_for(lambda: len(sink.data) > len(b"before <concealed>\n"), timeout=0.5, what="output during the build")
    gate.set()
    wait_for(lambda: sink.data.endswith(b"after <concealed>\n"), what="the held line, masked")
    masking.finish(timeout=0.2)
    assert sink.close() == b"before <concealed>\nafter <concealed>\n"
    assert masking.built[0] == 2


def test_a_failed_build_drops_output_instead_of_leaking_it(sink: Sink, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> Mapping[Slot, str]:
        raise RuntimeError("bug")

    masking = Masking(streams=(sink.fd,))
    with caplog.at_level(logging.ERROR, logger="launcher.run.output_masking"):
        masking.update(broken)
        masking.start()
        os.write(masking.outputs()[sink.fd], f"{CANARY}\n".encode())
        masking.finish(timeout=0.2)
    assert sink.close() == b""
    assert "building the output masker failed" in caplog.text


def test_one_pipe_when_stdout_and_stderr_are_one_file(tmp_path: Path) -> None:
    with open(tmp_path / "log", "wb") as fh:
        first, second = fh.fileno(), os.dup(fh.fileno())
        try:
            masking = Masking(streams=(first, second))
            outputs = masking.outputs()
            assert outputs[first] == outputs[second]
            masking.update(lambda: slots(CANARY))
            masking.start()
            os.write(outputs[second], f"err {CANARY}\n".encode())
            os.write(outputs[first], b"out\n")
            masking.finish(timeout=0.2)
        finally:
            os.close(second)
    assert (tmp_path / "log").read_bytes() == b"err <concealed>\nout\n"
    other = os.open(tmp_path / "other", os.O_WRONLY | os.O_CREAT, 0o600)
    with open(tmp_path / "log", "ab") as fh:
        try:
            masking = Masking(streams=(fh.fileno(), other))
            assert len(set(masking.outputs().values())) == 2
            masking.finish(timeout=0.2)
        finally:
            os.close(other)
