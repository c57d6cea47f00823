"""``corral events catalog``: topics, producers, consumers and payload JSON Schemas as
an AsyncAPI 3.0 document.

:func:`build_catalog` is pure (plan and schemas in, document out); :func:`payload_schemas`
imports the manifest's ``payload: module:Class`` models; :func:`catalog` adds the live
message counts from the broker.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from corral.plan import EventsPlan
from corral.sdk.events import Envelope
from corral.sdk.events.wire import stream_name, subject

REF = "#/components/schemas/{model}"


def payload_schemas(events: EventsPlan, root: Path) -> tuple[dict[str, Any], list[str]]:
    """``(schemas by topic, problems)``: each topic's payload model's JSON Schema."""
    schemas: dict[str, Any] = {}
    problems: list[str] = []
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    for topic in events.topics:
        if topic.payload is None:
            continue
        module_name, _, attr = topic.payload.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:
            problems.append(f"{topic.name}: cannot import {topic.payload}: {exc}")
            continue
        if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
            problems.append(f"{topic.name}: {topic.payload} is not a pydantic model")
            continue
        schemas[topic.name] = obj.model_json_schema(ref_template=REF)
    return schemas, problems


def build_catalog(
    events: EventsPlan,
    schemas: dict[str, Any],
    *,
    url: str | None = None,
    stream_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document (pure; sorted for stable output)."""
    components: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    envelope = Envelope.model_json_schema(ref_template=REF)
    envelope.pop("$defs", None)
    for topic in events.topics:
        schema = dict(schemas.get(topic.name, {}))
        for name, definition in schema.pop("$defs", {}).items():
            components[name] = definition
        payload = {**envelope, "properties": {**envelope["properties"], "data": schema or {}}}
        message_id = topic.name
        messages[message_id] = {
            "name": topic.name,
            "title": topic.name,
            "contentType": "application/json",
            "payload": payload,
        }
        address = subject(events.system, topic.name) + (".{partition}" if topic.partitions else "")
        channel: dict[str, Any] = {
            "address": address,
            "messages": {message_id: {"$ref": f"#/components/messages/{message_id}"}},
            "x-corral": {
                "stream": stream_name(events.system, topic.name),
                "retention": topic.retention,
                "max_age": topic.max_age,
                "max_bytes": topic.max_bytes,
                "max_msgs": topic.max_msgs,
                "replicas": topic.replicas,
                "partitions": topic.partitions,
                "producers": list(topic.producers),
                "consumers": list(topic.consumers),
                "delivery": {
                    "max_deliveries": topic.delivery.max_deliveries,
                    "backoff": list(topic.delivery.backoff),
                    "ack_wait": topic.delivery.ack_wait,
                },
                "payload_model": topic.payload,
                "has_consumer": bool(topic.consumers),
            },
        }
        if topic.partitions:
            channel["parameters"] = {"partition": {"description": "hash of the ordering key"}}
        if topic.description:
            channel["description"] = topic.description
        if stream_state and topic.name in stream_state:
            channel["x-corral"]["state"] = stream_state[topic.name]
        channels[topic.name] = channel
        ref = {"$ref": f"#/channels/{topic.name}"}
        for service in topic.producers:
            operations[f"{service}.send.{topic.name}"] = {"action": "send", "channel": ref}
        for service in topic.consumers:
            operations[f"{service}.receive.{topic.name}"] = {"action": "receive", "channel": ref}
    document: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {"title": events.system, "version": "1.0.0"},
        "defaultContentType": "application/json",
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {
            "schemas": dict(sorted(components.items())),
            "messages": dict(sorted(messages.items())),
        },
    }
    if url:
        host = url.split("://", 1)[-1]
        document["servers"] = {"nats": {"host": host, "protocol": "nats"}}
    return document


async def catalog(url: str | None, events: EventsPlan, root: Path) -> dict[str, Any]:
    """The catalog, with each stream's message count when the broker is reachable."""
    schemas, problems = payload_schemas(events, root)
    state: dict[str, Any] = {}
    if url:
        import nats
        from nats.js.errors import NotFoundError

        try:
            nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
        except Exception:
            nc = None
        if nc is not None:
            js = nc.jetstream()
            for topic in events.topics:
                try:
                    info = await js.stream_info(stream_name(events.system, topic.name))
                    state[topic.name] = {"messages": info.state.messages, "bytes": info.state.bytes}
                except NotFoundError:
                    state[topic.name] = {"provisioned": False}
            await nc.close()
    document = build_catalog(events, schemas, url=url, stream_state=state)
    if problems:
        document["x-corral-problems"] = problems
    return document
