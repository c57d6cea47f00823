"""emitter: POST /emit/{word} publishes ``word.said`` (the dead-letter test's producer)."""

from __future__ import annotations

from pydantic import BaseModel

from corral.sdk import Service

svc = Service("emitter")


class Said(BaseModel):
    word: str


@svc.post("/emit/{word}")
async def emit(word: str) -> dict[str, str]:
    await svc.events.publish("word.said", Said(word=word))
    return {"published": word}
