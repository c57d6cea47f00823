"""Three services of a small system, written as ridehail's were: they read the gateway's
claim headers themselves (tests/sdk/identity/test_system.py).

``rides`` lists rides (all of them for an admin) and asks ``tracking`` for a ride's
distance through ``svc.client``; ``auth`` serves the key set; only old SDK APIs are used,
so the same file runs against an SDK that trusted the headers.
"""

import json
import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import Header

from corral.sdk import Problem, Service

Sub = Annotated[str | None, Header(alias="x-corral-claim-sub")]
Role = Annotated[str | None, Header(alias="x-corral-claim-role")]

auth = Service("auth")


@auth.get("/.well-known/jwks.json")
async def keys() -> Any:
    return json.loads(Path(os.environ["TEST_JWKS_FILE"]).read_text())


rides = Service("rides")
RIDES = [{"id": "r1", "rider": "rider-1"}, {"id": "r2", "rider": "rider-2"}]


@rides.get("/rides")
async def list_rides(sub: Sub = None, role: Role = None) -> list[dict[str, str]]:
    if not sub:
        raise Problem(401, "Not authenticated")
    return RIDES if role == "admin" else [r for r in RIDES if r["rider"] == sub]


@rides.get("/rides/{ride_id}/distance")
async def distance(ride_id: str) -> Any:
    return (await rides.client("tracking").get(f"/rides/{ride_id}/distance")).json()


tracking = Service("tracking")


@tracking.get("/rides/{ride_id}/distance")
async def tracked(ride_id: str, sub: Sub = None, role: Role = None) -> dict[str, str | None]:
    if not sub:
        raise Problem(401, "Not authenticated")
    return {"ride": ride_id, "caller": sub, "role": role}
