"""Response field types that say in the published schema what the server sends.

A model-wide `field_serializer("*")` (times written with `iso_z`) leaves every field of the
response schema untyped (`{}`: `Any` in a generated client); this type writes the time the
same way and keeps its schema: a `date-time` string.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import PlainSerializer, WithJsonSchema

from pathways_shared.clock import iso_z

UtcDateTime = Annotated[
    datetime,
    PlainSerializer(iso_z, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]

__all__ = ["UtcDateTime"]
