"""An AsyncAPI 3.0 document for every event, generated from `EVENT_TYPES` and the payload
models, so it cannot drift from the code. `pathways asyncapi` prints it; `make docs` writes
`docs/asyncapi.json`, and a test fails when the committed copy is stale."""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from pathways_shared.event_payloads import INTERNAL_EVENT_TYPES, PAYLOADS, Payload
from pathways_shared.events import EVENT_TYPES, STREAMS

REF = "#/components/schemas/{model}"


def _message_name(event_type: str) -> str:
    return "".join(part.capitalize() for part in event_type.replace("-", ".").split("."))


def build_document() -> dict[str, Any]:
    published = {t: PAYLOADS.get(t, Payload) for t in EVENT_TYPES if t not in INTERNAL_EVENT_TYPES}
    payload_models = sorted(set(published.values()), key=lambda m: m.__name__)
    _, schemas = models_json_schema(
        [(m, "validation") for m in payload_models], ref_template=REF, by_alias=True
    )
    components: dict[str, Any] = dict(schemas.get("$defs", {}))
    components["PersonReference"] = {
        "type": "object",
        "properties": {"identifiers": {"type": "array", "items": {
            "type": "object", "required": ["type", "value"],
            "properties": {"type": {"type": "string", "examples": ["CRN"]}, "value": {"type": "string"}}}}},
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event_type in sorted(published):
        kind = EVENT_TYPES[event_type]
        name = _message_name(event_type)
        model = published[event_type]
        envelope = f"{name}Envelope"
        components[envelope] = {
            "type": "object",
            "required": ["id", "eventType", "version", "occurredAt", "additionalInformation"],
            "properties": {
                "id": {"type": "string", "format": "uuid", "description": "Also the Nats-Msg-Id header"},
                "eventType": {"const": event_type},
                "version": {"const": kind.version},
                "description": {"type": "string", "examples": [kind.description]},
                "occurredAt": {"type": "string", "format": "date-time"},
                "detailUrl": {"type": ["string", "null"], "format": "uri"},
                "personReference": {"oneOf": [{"$ref": REF.format(model="PersonReference")}, {"type": "null"}]},
                "additionalInformation": {"$ref": REF.format(model=model.__name__)},
            },
        }
        messages[name] = {
            "name": event_type,
            "title": kind.description,
            "contentType": "application/json",
            "headers": {"type": "object", "properties": {
                "Nats-Msg-Id": {"type": "string", "description": "the event id"},
                "X-Correlation-ID": {"type": "string"}}},
            "payload": {"$ref": REF.format(model=envelope)},
        }
        channel_id = event_type.replace(".", "_").replace("-", "_")
        channels[channel_id] = {
            "address": event_type,
            "description": f"Stream {kind.stream}. {kind.description}.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        operations[f"publish_{channel_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"{kind.stream.lower()} publishes {event_type}",
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{name}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Pathways events",
            "version": "1.0.0",
            "description": (
                "Events on NATS JetStream. The subject is the eventType; streams: "
                + ", ".join(f"{k} ({v})" for k, v in STREAMS.items())
                + ". No personal details travel on the bus: consumers fetch them from detailUrl."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:4222", "protocol": "nats",
                              "description": "make run / make test"}},
        "channels": channels,
        "operations": operations,
        "components": {"schemas": components, "messages": messages},
    }


def render() -> str:
    return json.dumps(build_document(), indent=2, sort_keys=True) + "\n"
