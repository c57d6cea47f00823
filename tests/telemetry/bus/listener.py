"""listener: consumes ``word.said`` and refuses ``poison`` every time (a dead letter)."""

from __future__ import annotations

from pydantic import BaseModel

from corral.sdk import Service

svc = Service("listener")


class Said(BaseModel):
    word: str


@svc.events.subscribe("word.said")
async def on_said(event: Said) -> None:
    if event.word == "poison":
        raise RuntimeError("cannot swallow poison")
