"""Response field types that say in the published schema what the server sends.

A model-wide `field_serializer("*")` (times written with `iso_z`) leaves every field of the
response schema untyped (`{}`: `Any` in a generated client); this type writes the time the
same way and keeps its schema: a `date-time` string.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, WithJsonSchema, create_model

from pathways_shared.clock import iso_z

UtcDateTime = Annotated[
    datetime,
    PlainSerializer(iso_z, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]



def stored_form(
    record: type[BaseModel], name: str, description: str, **types: Any
) -> type[BaseModel]:
    """A stored record as a subject access request discloses it: every column, with the
    column's type (a `date-time` a time, a `date` a date), all of them always present. Built
    from the table model, so the published schema follows the table; `types` names what a
    JSON column holds (`criteria_reasons=list[str]`)."""
    fields: dict[str, Any] = {
        field: (types.get(field, info.annotation), ...) for field, info in record.model_fields.items()
    }
    return create_model(  # type: ignore[call-overload, no-any-return]
        name, __config__=ConfigDict(title=name, json_schema_extra={"description": description}),
        **fields,
    )


__all__ = ["UtcDateTime", "stored_form"]
