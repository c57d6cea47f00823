"""A service's ``secrets:``: references to values that are never written in the manifest.

``secrets: {STRIPE_KEY: {env: STRIPE_LIVE_KEY}, DB_PASSWORD: {file: secrets/db}}`` gives
the instance ``STRIPE_KEY`` read from the environment ``corral up`` runs in and
``DB_PASSWORD`` read from a file next to the manifest. The control plane resolves them;
history, status and API answers only ever show a fingerprint of the value.
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, Field, model_validator

from corral import contract
from corral.manifest._diagnostics import Diagnostic
from corral.manifest._source import SourceMap
from corral.manifest._types import STRICT, EnvName, problem


class SecretRefSpec(BaseModel):
    """Where a secret's value comes from: exactly one of ``env`` or ``file``."""

    model_config = STRICT

    env: EnvName | None = Field(
        default=None, description="A variable of the environment `corral up` runs in."
    )
    file: str | None = Field(
        default=None,
        description="A file, relative to the manifest; one trailing newline is dropped.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.env is None) == (self.file is None):
            raise problem(
                "a secret comes from exactly one of 'env' or 'file'",
                "e.g. {env: STRIPE_KEY} or {file: secrets/stripe-key}",
            )
        return self


def _no_literal(value: Any) -> Any:
    """A value written in place of a reference is the mistake this section exists for."""
    if isinstance(value, str | int | float | bool):
        raise problem(
            "a secret's value is never written in the manifest",
            "refer to it: {env: NAME} (the environment corral runs in) or {file: path}",
        )
    return value


SecretRef = Annotated[SecretRefSpec, BeforeValidator(_no_literal)]


def check_secrets(
    name: str, env: dict[str, str], secrets: dict[str, SecretRefSpec], source: SourceMap
) -> list[Diagnostic]:
    """A secret may not be a variable Corral owns, nor also a plain ``env`` value."""
    problems = []
    for variable in sorted(secrets):
        path = ("services", name, "secrets", variable)
        if variable in contract.RESERVED:
            problems.append(
                source.diagnostic(
                    path, f"{variable} is set by Corral for each instance and cannot be a secret"
                )
            )
        elif variable in env:
            problems.append(
                source.diagnostic(
                    path,
                    f"{variable} is both a plain value (env) and a secret",
                    "keep it in one of env and secrets",
                )
            )
    return problems
