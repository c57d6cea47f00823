"""``CORRAL_IDENTITY``: the JWT providers a service verifies tokens against (see
:data:`corral.contract.IDENTITY`). Parsed with the other runtime variables at start, so a
malformed value is one more line of the service's :class:`~corral.sdk.SettingsError`."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from corral import contract

__all__ = ["IdentityConfig", "JwksConfig", "ProviderConfig"]

_STRICT = ConfigDict(extra="forbid", frozen=True)


class JwksConfig(BaseModel):
    """Where a provider's keys come from: exactly one of a service of the system (through
    discovery, as the gateway fetches them), a file, or a URL."""

    model_config = _STRICT

    service: str | None = None
    path: str = "/.well-known/jwks.json"
    file: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Self:
        given = [k for k in ("service", "file", "url") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("jwks needs exactly one of 'service', 'file' or 'url'")
        if not self.path.startswith("/"):
            raise ValueError(f"jwks path must start with '/', got {self.path!r}")
        if self.url is not None and not self.url.startswith(("https://", "http://")):
            raise ValueError("jwks url must be http:// or https://")
        return self


class ProviderConfig(BaseModel):
    model_config = _STRICT

    name: str = Field(min_length=1)
    issuer: str = Field(min_length=1)
    audiences: tuple[str, ...] = Field(min_length=1)
    algorithms: tuple[str, ...] = contract.JWT_ALGORITHMS
    jwks: JwksConfig
    cache_s: float = Field(default=30.0, gt=0)
    clock_skew_s: float = Field(default=30.0, ge=0)
    forward_claims: tuple[str, ...] = ("sub",)
    roles_claim: str = "roles"

    @field_validator("algorithms")
    @classmethod
    def _asymmetric(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        refused = sorted(set(value) - set(contract.JWT_ALGORITHMS))
        if refused:
            raise ValueError(
                f"algorithms {refused} are not accepted; use some of {contract.JWT_ALGORITHMS}"
            )
        if not value:
            raise ValueError("a provider needs at least one algorithm")
        return value


class IdentityConfig(BaseModel):
    model_config = _STRICT

    providers: tuple[ProviderConfig, ...] = ()
