"""pydantic-settings integration: routing, defaults, SecretStr, errors, refresh after rotation."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("pydantic_settings")

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from launcher.errors import CompoundError, ManifestError, NotFoundError
from launcher.pydantic import LauncherSettingsSource, Refreshing
from tests.helpers import wait_for
from tests.openbao import OpenBao, write_kv2

CANARY = "canary-91d4-pyd"
MANIFEST = """\
version: 1
sources:
  dev: {type: file, path: ./secrets.yaml}
env:
  APP_DB_PASSWORD: dev://db#password
  app_port: dev://app#port
  APP_HOSTS: dev://app#hosts
  UNRELATED: dev://missing#entirely
"""
SECRETS: dict[str, Any] = {"db": {"password": "pw-" + CANARY}, "api": "key-" + CANARY,
                           "app": {"port": "9000", "hosts": '["a", "b"]'}}


@pytest.fixture
def dev(tmp_path: Path) -> Path:
    write_secrets(tmp_path, SECRETS)
    (tmp_path / "launcher.yaml").write_text(MANIFEST)
    return tmp_path / "launcher.yaml"


def write_secrets(folder: Path, doc: dict[str, Any]) -> None:
    (folder / "secrets.yaml").write_text(yaml.safe_dump(doc))


def settings_for(manifest: Path) -> type[BaseSettings]:
    class Settings(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="APP_", hide_input_in_errors=True)

        db_password: SecretStr  # the binding APP_DB_PASSWORD (env_prefix applied)
        port: int = 8080  # the binding app_port (case-insensitive)
        hosts: list[str] = []  # APP_HOSTS, a JSON list
        api_key: str = Field(json_schema_extra={"secret": "dev://api"})
        token: str = Field("no-token", json_schema_extra={"secret": "dev://tokens#app"})  # missing: the default
        dsn: SecretStr = Field(SecretStr(""), json_schema_extra={"secret": "postgres://app:{{ dev://db#password }}@db/app"})
        region: str = "eu"  # neither: left to the other sources

        @classmethod
        def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                       env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                       file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, LauncherSettingsSource(settings_cls, manifest=manifest), env_settings

    return Settings


def test_fields_are_routed_by_secret_ref_or_binding_name(dev: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_REGION", "us")
    monkeypatch.setenv("APP_PORT", "1")  # the launcher's source comes first here
    settings: Any = settings_for(dev)()
    assert settings.db_password.get_secret_value() == "pw-" + CANARY
    assert (settings.port, settings.hosts, settings.api_key) == (9000, ["a", "b"], "key-" + CANARY)
    assert settings.token == "no-token"  # a missing secret leaves the default
    assert settings.dsn.get_secret_value() == f"postgres://app:pw-{CANARY}@db/app"
    assert settings.region == "us"  # from the environment
    assert CANARY not in repr(settings.db_password) + repr(settings.dsn) and "**" in str(settings.db_password)


def test_unrouted_bindings_are_not_read(dev: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # UNRELATED does not exist: no field uses it, so it is neither read nor an error.
    trail = dev.parent / "audit.jsonl"
    monkeypatch.setenv("LAUNCHER_AUDIT", str(trail))  # every read the source makes is audited
    settings_for(dev)()
    read = {json.loads(line)["ref"] for line in trail.read_text().splitlines() if json.loads(line)["event"] == "fetch"}
    assert "dev://db" in read and "dev://app" in read  # what the fields use was read...
    assert not any(ref.startswith("dev://missing") for ref in read)  # ...and the unrouted binding was not


def test_a_missing_required_secret_raises_the_launchers_error(dev: Path) -> None:
    write_secrets(dev.parent, {**SECRETS, "db": {"user": "x"}})
    with pytest.raises(NotFoundError) as info:
        settings_for(dev)()
    line = MANIFEST.splitlines().index("  APP_DB_PASSWORD: dev://db#password") + 1
    assert str(info.value).startswith(f"{dev}:{line}: env.APP_DB_PASSWORD: dev://db#password: no key 'password'")
    assert info.value.exit_code == 66


def test_a_missing_required_secret_field_and_a_bad_reference(dev: Path) -> None:
    class Needs(BaseSettings):
        key: str = Field(json_schema_extra={"secret": "dev://nothing#here"})
        other: str = Field(json_schema_extra={"secret": "dev://nothing#there"})

    source = LauncherSettingsSource(Needs, manifest=dev)
    with pytest.raises(CompoundError) as info:
        source()
    assert [e.exit_code for e in info.value.errors] == [66, 66] and "Needs.key" in str(info.value.errors[0])

    class Typo(BaseSettings):
        key: str = Field(json_schema_extra={"secret": "prd://x#y"})

    with pytest.raises(ManifestError, match=r"^Typo\.key: json_schema_extra\['secret'\]: unknown source 'prd'"):
        LauncherSettingsSource(Typo, manifest=dev)()

    class Literal(BaseSettings):
        key: str = Field(json_schema_extra={"secret": CANARY})

    with pytest.raises(ManifestError) as literal:
        LauncherSettingsSource(Literal, manifest=dev)()
    assert CANARY not in str(literal.value)


def test_refreshing_follows_rotations_and_keeps_the_last_valid(dev: Path, caplog: pytest.LogCaptureFixture) -> None:
    changes: list[Any] = []
    with Refreshing(settings_for(dev), manifest=dev, interval=0.1) as refreshing:
        first = refreshing.current
        assert first.port == 9000  # type: ignore[attr-defined]
        refreshing.on_change(changes.append)
        write_secrets(dev.parent, {**SECRETS, "app": {"port": "9001", "hosts": "[]"}})
        wait_for(lambda: changes, what="the refresh")
        assert refreshing.current is changes[0] and changes[0].port == 9001 and changes[0].hosts == []
        assert isinstance(changes[0], type(first).__mro__[1])  # an instance of the class given
        for bad in ("not-a-port", "still-not-a-port"):
            write_secrets(dev.parent, {**SECRETS, "app": {"port": f"{bad}-{CANARY}", "hosts": "[]"}})
            wait_for(lambda bad=bad: refreshing._handle.secrets["app_port"].startswith(bad), what="the invalid value")
        assert refreshing.current is changes[0] and len(changes) == 1
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "port: int_parsing" in warnings[0]
        write_secrets(dev.parent, {**SECRETS, "app": {"port": "9002", "hosts": "[]"}})
        wait_for(lambda: refreshing.current.port == 9002, what="a valid value again")  # type: ignore[attr-defined]
    assert CANARY not in caplog.text


@pytest.mark.vault
def test_refreshing_after_a_kv2_rotation(openbao: OpenBao, tmp_path: Path) -> None:
    path = f"pyd/{openbao.unique()}"
    write_kv2(openbao, path, {"password": "one-" + CANARY})
    (tmp_path / "token").write_text(openbao.token)
    doc = {"version": 1, "sources": {"bao": {"type": "vault", "address": openbao.addr,
                                             "auth": {"method": "token", "token_file": "./token"}}}}
    (tmp_path / "launcher.yaml").write_text(yaml.safe_dump(doc))

    class Db(BaseSettings):
        password: SecretStr = Field(json_schema_extra={"secret": f"bao://secret/{path}#password"})

    with Refreshing(Db, manifest=tmp_path / "launcher.yaml", interval=0.5) as refreshing:
        assert refreshing.current.password.get_secret_value() == "one-" + CANARY
        write_kv2(openbao, path, {"password": "two-" + CANARY})
        wait_for(lambda: refreshing.current.password.get_secret_value() == "two-" + CANARY, timeout=5, what="the refresh")
