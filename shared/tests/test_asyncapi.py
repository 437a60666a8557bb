"""The AsyncAPI document is generated from the event models and committed: never stale."""

from __future__ import annotations

import json
from pathlib import Path

from pathways_shared.asyncapi import build_document, render
from pathways_shared.event_payloads import INTERNAL_EVENT_TYPES, PAYLOADS, Payload
from pathways_shared.events import EVENT_TYPES

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_committed_asyncapi_matches_the_code():
    assert COMMITTED.read_text() == render(), "docs/asyncapi.json is stale: run `make docs`"


def test_every_event_type_has_a_payload_model_and_a_channel():
    assert set(PAYLOADS) == set(EVENT_TYPES)
    document = build_document()
    assert document["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in document["channels"].values()}
    assert addresses == set(EVENT_TYPES) - INTERNAL_EVENT_TYPES
    # every $ref resolves inside the document
    text = json.dumps(document)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/')[1:]}:
        node = document
        for key in ref.split("/"):
            node = node[key]


def test_every_published_payload_is_typed_and_internal_events_are_left_out():
    document = build_document()
    schemas = document["components"]["schemas"]
    for message in document["components"]["messages"].values():
        envelope = schemas[message["payload"]["$ref"].rsplit("/", 1)[1]]
        payload = schemas[envelope["properties"]["additionalInformation"]["$ref"].rsplit("/", 1)[1]]
        assert payload.get("properties"), message["name"]
    assert "pathways.test.ping" not in json.dumps(document)
    assert all(PAYLOADS[t] is not Payload for t in EVENT_TYPES)
