"""fakepay: a stand-in payment provider with Stripe-like idempotency and injectable faults.

``POST /charges`` (header ``Idempotency-Key``) -> 201, or 200 with the first charge when
the key was used before; 503 when a fault is injected; ``PUT /faults`` changes the
failure rate, the number of next calls to fail and the latency. Its books (charges by
key, tallies) are in its own database and survive a restart, as a real provider's do;
the faults are per process (run one replica, so ``fail_next`` means what it says).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from contracts.identity import CallerDep, require
from corral.sdk import ConfigChange, Problem, Service, ServiceSettings
from fakepay.domain import Charge, Faults, InjectedFailure, KeyReused, Provider
from fakepay.store import SqlBooks, metadata


class Settings(ServiceSettings):
    # Reloadable: `corral config set fakepay FAKEPAY_FAILURE_RATE=0.5` reaches the running
    # instance, no restart (see _reconfigure).
    fakepay_failure_rate: float = Field(
        default=0.0, ge=0, le=1, json_schema_extra={"reloadable": True}
    )
    fakepay_latency_ms: float = Field(default=0.0, ge=0, json_schema_extra={"reloadable": True})
    fakepay_seed: int | None = None


svc = Service("fakepay", settings=Settings, metadata=metadata, title="fake payment provider")
provider = Provider(SqlBooks(svc.db))


def _configured_faults() -> Faults:
    s = svc.settings
    return Faults(
        failure_rate=s.fakepay_failure_rate, latency_ms=s.fakepay_latency_ms, seed=s.fakepay_seed
    )


@svc.on_startup
async def _start() -> None:
    provider.faults = _configured_faults()


@svc.on_config_change
async def _reconfigure(change: ConfigChange) -> None:
    """The failure rate or latency changed live: inject faults at the new rate."""
    provider.faults = _configured_faults()


class ChargeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Decimal = Field(gt=0, max_digits=12, decimal_places=2)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    reference: str = Field(min_length=1, max_length=100)


class ChargeView(BaseModel):
    id: str
    amount: str
    currency: str
    reference: str
    created_at: datetime


def _view(charge: Charge) -> ChargeView:
    return ChargeView(
        id=charge.id,
        amount=str(charge.amount),
        currency=charge.currency,
        reference=charge.reference,
        created_at=charge.created_at,
    )


@svc.post("/charges")
async def charge(
    body: ChargeRequest, idempotency_key: Annotated[str, Header(min_length=8, max_length=100)]
) -> JSONResponse:
    """Charge once per Idempotency-Key."""
    if provider.faults.latency_ms:
        await asyncio.sleep(provider.faults.latency_ms / 1000)
    try:
        made, replayed = await provider.charge(
            key=idempotency_key,
            amount=body.amount,
            currency=body.currency,
            reference=body.reference,
            now=datetime.now(UTC),
        )
    except InjectedFailure as exc:
        raise Problem(
            503, "Provider unavailable", detail=str(exc), headers={"Retry-After": "1"}
        ) from exc
    except KeyReused as exc:
        raise Problem(422, "Idempotency key reused", detail=str(exc)) from exc
    return JSONResponse(
        _view(made).model_dump(mode="json"),
        status_code=200 if replayed else 201,
        headers={"Idempotent-Replayed": "true" if replayed else "false"},
    )


class FaultSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    failure_rate: float = Field(default=0.0, ge=0, le=1)
    fail_next: int = Field(default=0, ge=0)
    latency_ms: float = Field(default=0.0, ge=0, le=60_000)
    seed: int | None = None


@svc.put("/faults")
async def set_faults(body: FaultSettings, caller: CallerDep) -> FaultSettings:
    """Change the injected faults (admins)."""
    require(caller, "admin")
    provider.faults = Faults(**body.model_dump())
    return body


@svc.get("/charges")
async def list_charges(caller: CallerDep, reference: str | None = None) -> dict[str, object]:
    """Every charge (or those for one reference), with attempt counters (admins)."""
    require(caller, "admin")
    tally = await provider.books.tally()
    charges = [_view(c) for c in await provider.books.charges(reference)]
    return {"charges": charges, "attempts": tally.attempts, "failures": tally.failures}
