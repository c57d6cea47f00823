"""Settings: every bad field in one message; secrets collected for redaction."""

from __future__ import annotations

import pytest
from pydantic import Field, SecretStr

from corral import contract
from corral.sdk import ServiceSettings, SettingsError
from corral.sdk._settings import load_settings, secret_values
from corral.sdk.testing import patched_env


class Settings(ServiceSettings):
    api_token: SecretStr
    max_riders: int
    region: str = "eu"
    signing_key: str = Field(default="k-123456", json_schema_extra={"secret": True})


def test_every_problem_is_listed_once() -> None:
    """Missing, invalid and runtime-variable problems come in one SettingsError."""
    env = {
        "API_TOKEN": None,
        "MAX_RIDERS": "lots",
        contract.GRACE_PERIOD: "-3",
        contract.DATABASE_URL: None,
    }
    with patched_env(env), pytest.raises(SettingsError) as info:
        load_settings("rides", Settings, require_database=True)
    message = str(info.value)
    assert message.startswith("service 'rides' cannot start")
    assert "API_TOKEN: required but not set" in message
    assert "MAX_RIDERS: " in message
    assert f"{contract.GRACE_PERIOD}: " in message
    assert f"{contract.DATABASE_URL}: required" in message
    assert "lots" not in message
    assert len(info.value.problems) == 4


def test_valid_settings_load() -> None:
    """Valid values load into the model and the runtime env."""
    env = {"API_TOKEN": "abcd1234", "MAX_RIDERS": "4", contract.PORT: "9001"}
    with patched_env(env):
        runtime, settings = load_settings("rides", Settings)
    assert settings is not None
    assert settings.max_riders == 4
    assert runtime.port == 9001


def test_secret_values_cover_secretstr_marked_fields_and_db_password() -> None:
    """SecretStr, secret-marked fields and the DATABASE_URL password are all secrets."""
    env = {
        "API_TOKEN": "abcd1234",
        "MAX_RIDERS": "4",
        contract.DATABASE_URL: "postgresql://svc:pa55word@db/svc",
    }
    with patched_env(env):
        runtime, settings = load_settings("rides", Settings)
    secrets = secret_values(runtime, settings)
    assert {"abcd1234", "k-123456", "pa55word"} <= secrets
    assert "eu" not in secrets
