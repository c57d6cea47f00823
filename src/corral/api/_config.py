"""The configuration endpoints: versions, changes, and each service's live watch.

People and the CLI use the admin token for everything here. Instances use their
service's own token (``CORRAL_CONFIG_TOKEN``) for two endpoints only: the watch of their
service's configuration and the reports of what they did with a version, so a service
sees no other's configuration and can report for no other. Answers never hold a secret's
value: versions keep only fingerprints (see :mod:`corral.config`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any, Protocol, runtime_checkable

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sse_starlette.sse import EventSourceResponse

from corral import contract
from corral.api._gate import Access, Rule
from corral.api._problems import ApiProblem, problem
from corral.api._version import API_VERSION
from corral.config import (
    ConfigControl,
    ConfigDiff,
    ConfigError,
    ConfigHistoryEntry,
    ConfigInstance,
    ConfigOutcome,
    ConfigRejectedError,
    ConfigShown,
    InvalidChangeError,
    Outcome,
    Report,
    UndeclaredSettingError,
    UnknownVersionError,
    VersionConflictError,
    diff_view,
    history_view,
    instances_view,
    version_view,
)
from corral.manifest import ManifestError


@runtime_checkable
class ConfigTarget(Protocol):
    """A control target with live configuration (the running system's session)."""

    @property
    def config(self) -> ConfigControl: ...


class Change(BaseModel):
    author: str = Field(default="unknown", max_length=200, description="Who asks (the CLI user).")
    message: str = Field(default="", max_length=2000, description="Why, for the history.")
    if_version: int | None = Field(
        default=None,
        ge=0,
        description="Only if the configuration is still at this version (compare-and-swap); "
        "409 otherwise.",
    )


class SetRequest(Change):
    values: dict[str, str] = Field(description="Variables and their new values.")
    new: bool = Field(
        default=False,
        description="Accept variables that are not settings of the service (neither its "
        "manifest, its runtime values nor its running settings model declares them).",
    )


class UnsetRequest(Change):
    keys: list[str] = Field(description="Variables whose runtime value is dropped.")


class RollbackRequest(Change):
    version: int = Field(ge=1, description="The version whose configuration comes back.")


_bearer = HTTPBearer(auto_error=False)

_PREFIX = f"/{API_VERSION}/config"

CONFIG_RULES = {
    # Instances, with their service's token, for their own instance id only.
    contract.CONFIG_WATCH_PATH: Rule(Access.INSTANCE, 0),
    contract.CONFIG_REPORT_PATH: Rule(Access.INSTANCE),
    # Values may be long (a certificate, a JSON document): more room than a command.
    f"{_PREFIX}/services/{{service}}/set": Rule(Access.ADMIN, 1024 * 1024),
}
"""The gate's rules for these routes (the others are the admin's)."""


def config_router(control: ConfigControl, *, admin: DependsParam) -> APIRouter:
    """The endpoints of ``control``; ``admin`` is the API's admin-token dependency."""
    router = APIRouter(tags=["config"])
    prefix = _PREFIX

    def known(service: str | None) -> str | None:
        if service is not None and not control.has_service(service):
            raise ApiProblem(404, "unknown service", f"no service named {service!r}")
        return service

    def instance_service(
        instance: str,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> str:
        if credentials is None:
            raise ApiProblem(401, "missing bearer token")
        service = control.instance_service(instance, credentials.credentials)
        if service is None:
            raise ApiProblem(401, "invalid bearer token", f"not a token of {instance}")
        return service

    @router.get(prefix, dependencies=[admin])
    async def show(
        service: str | None = None,
        version: Annotated[int | None, Query(ge=1)] = None,
    ) -> ConfigShown:
        """A version's configuration (the current one by default): every variable's value
        and where it comes from; secrets as fingerprints."""
        record = control.current if version is None else _get(control, version)
        return version_view(record, known(service))

    @router.get(f"{prefix}/history", dependencies=[admin])
    async def history(service: str | None = None) -> list[ConfigHistoryEntry]:
        """Every version, oldest first, with its author, time, message and changes."""
        return history_view(control.store.history(), known(service))

    @router.get(f"{prefix}/diff", dependencies=[admin])
    async def diff(
        a: Annotated[int, Query(ge=1)], b: Annotated[int, Query(ge=1)], service: str | None = None
    ) -> ConfigDiff:
        """What differs from version a to version b."""
        return diff_view(_get(control, a), _get(control, b), known(service))

    @router.get(f"{prefix}/instances", dependencies=[admin])
    async def instances() -> list[ConfigInstance]:
        """Each running instance of a service: the version it last reported, how it took
        it, and the propagation latency (publication to report) of a version it took
        while running. An instance that does not watch (a ``command:`` service) has
        none."""
        rollout = control.rollout
        snapshot = rollout.runtime.registry.snapshot()
        return instances_view(
            [(r.service, r.instance) for r in snapshot.instances if not r.component],
            rollout.reported(),
            rollout.received(),
            rollout.revisions(),
        )

    @router.post(
        f"{prefix}/services/{{service}}/set", dependencies=[admin], response_model=ConfigOutcome
    )
    async def set_values(service: str, body: SetRequest) -> Any:
        """Set runtime values and roll them out; answers once every instance has them."""
        return await _answer(
            control.set(
                service,
                body.values,
                author=body.author,
                message=body.message,
                expected=body.if_version,
                new=body.new,
            )
        )

    @router.post(
        f"{prefix}/services/{{service}}/unset", dependencies=[admin], response_model=ConfigOutcome
    )
    async def unset_values(service: str, body: UnsetRequest) -> Any:
        """Drop runtime values (the manifest's apply again) and roll that out."""
        return await _answer(
            control.unset(
                service,
                body.keys,
                author=body.author,
                message=body.message,
                expected=body.if_version,
            )
        )

    @router.post(f"{prefix}/rollback", dependencies=[admin], response_model=ConfigOutcome)
    async def rollback(body: RollbackRequest) -> Any:
        """Make an earlier version's configuration current again, as a new version."""
        return await _answer(
            control.rollback(
                body.version, author=body.author, message=body.message, expected=body.if_version
            )
        )

    @router.post(f"{prefix}/apply", dependencies=[admin], response_model=ConfigOutcome)
    async def apply(body: Change) -> Any:
        """Read the manifest, its overlay and the secrets again; roll out what changed."""
        return await _answer(
            control.apply(author=body.author, message=body.message, expected=body.if_version)
        )

    @router.get(contract.CONFIG_WATCH_PATH, response_model=None)
    async def watch(
        request: Request,
        instance: str,
        since: Annotated[int | None, Query(ge=0)] = None,
        # A default, not Annotated: the dependency is local to this function, and
        # postponed annotations are resolved in the module's namespace.
        service: str = Depends(instance_service),
    ) -> EventSourceResponse:
        """Server-sent events for one instance: its service's configuration, then each
        change (plain values, and secrets as fingerprints)."""

        async def stream() -> AsyncIterator[dict[str, str]]:
            async for payload in control.watch(instance, service, since):
                if await request.is_disconnected():
                    return
                yield {
                    "event": "config",
                    "id": str(payload["version"]),
                    "data": json.dumps(payload),
                }

        return EventSourceResponse(stream(), ping=15)

    @router.post(contract.CONFIG_REPORT_PATH, dependencies=[Depends(instance_service)])
    async def report(instance: str, body: Report) -> dict[str, bool]:
        """What the instance did with a version it was shown."""
        await control.report(instance, body)
        return {"ok": True}

    return router


def _get(control: ConfigControl, version: int) -> Any:
    try:
        return control.store.get(version)
    except UnknownVersionError as exc:
        raise ApiProblem(404, "unknown version", str(exc)) from None


async def _answer(change: Awaitable[Outcome]) -> ConfigOutcome | Response:
    """A change's outcome, or its refusal as problem+json (a Response: FastAPI sends it
    as it is, past the route's response model)."""
    try:
        outcome = await change
    except ConfigRejectedError as exc:
        return problem(
            422,
            "configuration rejected",
            str(exc),
            service=exc.service,
            version=exc.version,
            restored_version=exc.restored,
            problems=list(exc.problems),
        )
    except VersionConflictError as exc:
        return problem(409, "version conflict", str(exc), version=exc.actual)
    except UndeclaredSettingError as exc:
        return problem(
            422,
            "unknown setting",
            str(exc),
            service=exc.service,
            keys=list(exc.keys),
            suggestions=exc.suggestions,
            declared=list(exc.declared),
        )
    except (InvalidChangeError, UnknownVersionError) as exc:
        status = 404 if isinstance(exc, UnknownVersionError) else 422
        return problem(status, "invalid change", str(exc))
    except ManifestError as exc:
        return problem(422, "invalid manifest", exc.render())
    except ConfigError as exc:
        return problem(422, "configuration error", str(exc))
    return outcome.to_model()
