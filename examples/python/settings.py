"""pydantic-settings: a settings class filled from the launcher (pip install 'secret-launcher[pydantic]').

    python examples/python/settings.py
"""

from __future__ import annotations

from pathlib import Path

try:
    from pydantic import Field, SecretStr
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

    from launcher.pydantic import LauncherSettingsSource, Refreshing
except ModuleNotFoundError as missing:  # what is missing, in one line rather than a traceback
    raise SystemExit(f"settings.py needs {missing.name}: pip install 'secret-launcher[pydantic]'") from None

MANIFEST = Path(__file__).with_name("launcher.yaml")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(hide_input_in_errors=True)  # a value that fails validation is not shown

    db_password: SecretStr  # the manifest binding DB_PASSWORD (the field's environment name)
    api_key: SecretStr = Field(json_schema_extra={"secret": "dev://app/api-key"})  # a reference of its own
    feature_token: str = Field("off", json_schema_extra={"secret": "dev://app/flags#token"})  # missing: the default
    log_level: str = "warning"  # LOG_LEVEL from the manifest (a literal binding)
    port: int = 8000  # no binding, no reference: left to the environment and the default

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, LauncherSettingsSource(settings_cls, manifest=MANIFEST), env_settings, dotenv_settings


if __name__ == "__main__":
    print(Settings())  # SecretStr fields print as '**********'
    with Refreshing(Settings, manifest=MANIFEST, interval=2) as settings:
        settings.on_change(lambda new: print("settings refreshed:", new))
        print("current:", settings.current)  # always the newest valid instance
