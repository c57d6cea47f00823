"""Settings: the service's own pydantic-settings model plus the runtime contract's variables.

Both are read from the environment at start. Every problem in either is collected into one
:class:`SettingsError` whose message lists each bad field, so a misconfigured instance says
everything that is wrong at once instead of failing one variable at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, Json, SecretBytes, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from corral import contract
from corral.sdk.identity._config import IdentityConfig

__all__ = ["RuntimeEnv", "ServiceSettings", "SettingsError", "load_settings", "secret_values"]


class SettingsError(Exception):
    """Missing or invalid settings; ``str(err)`` is the one message to show the user."""

    def __init__(self, service: str, problems: list[str]) -> None:
        self.service = service
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"service {service!r} cannot start, its settings are invalid:\n{lines}")


class ServiceSettings(BaseSettings):
    """Base class for a service's settings: plain env vars, unknown ones ignored.

    Subclass it and declare fields; use ``SecretStr`` (or ``Field(json_schema_extra=
    {"secret": True})``) for values that must never be logged.
    """

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)


class RuntimeEnv(BaseModel):
    """What the control plane tells every instance (names from :mod:`corral.contract`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    service: str | None = Field(default=None, validation_alias=contract.SERVICE)
    instance: str | None = Field(default=None, validation_alias=contract.INSTANCE)
    system: str | None = Field(default=None, validation_alias=contract.SYSTEM)
    host: str = Field(default="127.0.0.1", validation_alias=contract.HOST)
    port: int = Field(default=8000, ge=0, le=65535, validation_alias=contract.PORT)
    database_url: SecretStr | None = Field(default=None, validation_alias=contract.DATABASE_URL)
    grace_period: float = Field(default=30.0, gt=0, validation_alias=contract.GRACE_PERIOD)
    log_format: Literal["json", "ecs", "console"] = Field(
        default="json", validation_alias=contract.LOG_FORMAT
    )
    otel_endpoint: str | None = Field(default=None, validation_alias=contract.OTEL_ENDPOINT)
    otel_service_name: str | None = Field(default=None, validation_alias=contract.OTEL_SERVICE_NAME)
    calls: str | None = Field(default=None, validation_alias=contract.CALLS)
    identity: Json[IdentityConfig] | None = Field(default=None, validation_alias=contract.IDENTITY)

    @property
    def declared_calls(self) -> frozenset[str] | None:
        """The services the manifest says this one calls; None when it does not say."""
        if self.calls is None:
            return None
        return frozenset(name for name in self.calls.split(",") if name)


def _describe(err: ValidationError, env_names: Mapping[str, str]) -> Iterable[str]:
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(settings)"
        var = env_names.get(field, field.upper())
        if e["type"] == "missing":
            yield f"{var}: required but not set"
        else:
            # Never echo the rejected input: it may be a secret.
            yield f"{var}: {e['msg']}"


def load_settings[S: BaseSettings](
    service: str,
    settings_cls: type[S] | None,
    *,
    require_database: bool = False,
    environ: Mapping[str, str] | None = None,
) -> tuple[RuntimeEnv, S | None]:
    """``environ`` replaces ``os.environ`` for the runtime variables only; the service's own
    settings class reads the process environment as pydantic-settings always does."""
    problems: list[str] = []
    env = dict(os.environ if environ is None else environ)
    runtime: RuntimeEnv | None = None
    runtime_names = {
        name: str(info.validation_alias) for name, info in RuntimeEnv.model_fields.items()
    }
    try:
        runtime = RuntimeEnv.model_validate(env)
    except ValidationError as err:
        problems.extend(_describe(err, runtime_names))
    if require_database and not env.get(contract.DATABASE_URL):
        problems.append(
            f"{contract.DATABASE_URL}: required but not set (this service has a database)"
        )
    settings: S | None = None
    if settings_cls is not None:
        try:
            settings = settings_cls()
        except ValidationError as err:
            prefix = str(settings_cls.model_config.get("env_prefix", ""))
            names = {n: (prefix + n).upper() for n in settings_cls.model_fields}
            problems.extend(_describe(err, names))
    if problems:
        raise SettingsError(service, sorted(set(problems)))
    assert runtime is not None
    return runtime, settings


def secret_values(*models: BaseModel | None) -> set[str]:
    """Every secret value in these models: ``SecretStr``/``SecretBytes`` fields, fields marked
    ``json_schema_extra={"secret": True}``, and the password of any database URL."""
    found: set[str] = set()
    for model in models:
        if model is None:
            continue
        for name, info in type(model).model_fields.items():
            value = getattr(model, name, None)
            extra = info.json_schema_extra
            marked = isinstance(extra, dict) and extra.get("secret") is True
            if isinstance(value, SecretStr):
                found.add(value.get_secret_value())
            elif isinstance(value, SecretBytes):
                found.add(value.get_secret_value().decode(errors="replace"))
            elif marked and value is not None:
                found.add(str(value))
    for model in models:
        if isinstance(model, RuntimeEnv) and model.database_url is not None:
            from sqlalchemy.engine import make_url

            try:
                password = make_url(model.database_url.get_secret_value()).password
            except Exception:
                password = None
            if password:
                found |= _password_forms(str(password))
    # Very short values would redact ordinary words; they are not secrets worth the name.
    return {s for s in found if len(s) >= 4}


def environment_secrets(environ: Mapping[str, str]) -> set[str]:
    """Secrets the runtime contract hands every instance, whatever the service's settings
    declare: the registry's discovery token, the configuration token, credentials inside
    the bus URL, and the values of the variables the manifest declares ``secrets:``."""
    found: set[str] = set()
    for variable in (contract.DISCOVERY_TOKEN, contract.CONFIG_TOKEN):
        token = environ.get(variable)
        if token:
            found.add(token)
    for variable in environ.get(contract.SECRET_VARIABLES, "").split(","):
        value = environ.get(variable.strip()) if variable.strip() else None
        if value:
            found.add(value)
    for variable in (contract.NATS_URL, contract.DATABASE_URL):
        url = environ.get(variable)
        if url and "@" in url:
            password = urlsplit(url).password
            if password:
                found |= _password_forms(unquote(password))
    return {s for s in found if len(s) >= 4}


def _password_forms(password: str) -> set[str]:
    """The password as decoded and as written in a URL (percent-encoded)."""
    return {password, quote(password, safe=""), quote(password)}
