"""The payload model of each topic, and the check on publish."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from corral.sdk.events._errors import EventSchemaError


class Payloads:
    """Topic -> payload model, as declared (``events.topic``) or read from handlers."""

    def __init__(self) -> None:
        self.models: dict[str, type[BaseModel]] = {}

    def declare(self, topic: str, model: type[BaseModel]) -> None:
        known = self.models.setdefault(topic, model)
        if known is not model:
            raise ValueError(f"topic {topic!r} already has payload model {known.__name__}")

    def data(self, topic: str, payload: BaseModel | dict[str, Any], *, validate: bool) -> Any:
        """The JSON data of ``payload``; with ``validate``, checked against the topic's
        model first (:class:`EventSchemaError` when it does not match)."""
        model = self.models.get(topic)
        if model is not None and validate:
            if isinstance(payload, BaseModel) and not isinstance(payload, model):
                raise EventSchemaError(
                    f"topic {topic!r} carries {model.__name__}, not {type(payload).__name__}"
                )
            raw = (
                payload.model_dump(mode="json", warnings=False)
                if isinstance(payload, BaseModel)
                else payload
            )
            try:
                return model.model_validate(raw).model_dump(mode="json")
            except ValidationError as exc:
                raise EventSchemaError(
                    f"payload for {topic!r} does not match {model.__name__}: {exc}"
                ) from None
        if isinstance(payload, BaseModel):
            return payload.model_dump(mode="json")
        return payload
