"""Query and path parameter rules shared by the routers (bounded, so nothing reaches SQL unchecked)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

from linesight.api.errors import ApiError
from model.names import CLASS_NAME_MAX_CHARS, CLASS_NAME_PATTERN, CLASS_NAME_RULE, check_class_name

__all__ = ["MAX_ID", "TEXT_PATTERN", "ClassNameStr", "as_utc"]

MAX_ID = 2**63 - 1  # SQL BIGINT
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]{1,128}$"  # printable, 1-128 characters
# A product class in a path, query or form field: model.names' rule (422 naming the value).
ClassNameStr = Annotated[
    str,
    AfterValidator(check_class_name),
    WithJsonSchema({"type": "string", "pattern": CLASS_NAME_PATTERN, "maxLength": CLASS_NAME_MAX_CHARS,
                    "description": f"product class: {CLASS_NAME_RULE}"}),
]


def as_utc(value: datetime | None, name: str) -> datetime | None:
    """``value`` as an aware UTC datetime (a naive one is taken as UTC); 422 naming an unusable one."""
    if value is None:
        return None
    try:
        if value.tzinfo is None or value.utcoffset() is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ApiError(422, f"query parameter {name!r}: {value.isoformat()!r} is out of range") from None
