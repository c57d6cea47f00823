"""greeter: answers GET /hello/{name} with a JSON greeting."""

from __future__ import annotations

from pydantic import BaseModel

from corral.sdk import Problem, Service

svc = Service("greeter")


class Greeting(BaseModel):
    message: str
    served_by: str


@svc.get("/hello/{name}")
async def hello(name: str) -> Greeting:
    if not name.strip():
        raise Problem(422, "empty name", detail="say who to greet")
    svc.log.info("greeting", name=name)
    return Greeting(message=f"hello, {name}", served_by=svc.instance)
