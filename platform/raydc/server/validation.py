"""Turn pydantic errors into 422 details whose ``loc`` names the user's field."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from raydc.server.decoding import decode_body
from raydc.server.errors import InvalidInput

__all__ = ["decode_body", "invalid_input", "validation_details"]

# Union members that pydantic puts into a location; the user never wrote these.
_UNION_TAGS = {"int", "constrained-int", "str", "float", "WorkerRange", "train", "tune",
               "compress", "none", "asha", "pbt", "fifo"}  # fmt: skip


def _user_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        part for part in loc
        if isinstance(part, int) or (part not in _UNION_TAGS and "[" not in str(part))
    )  # fmt: skip


def validation_details(error: ValidationError) -> list[dict[str, Any]]:
    details: dict[tuple[Any, ...], dict[str, Any]] = {}
    for item in error.errors(include_url=False, include_context=False, include_input=False):
        loc = _user_loc(tuple(item["loc"]))
        entry = {"loc": ["body", *loc], "msg": item["msg"], "type": item["type"]}
        # For `int | {min,max}` pydantic reports both branches; keep the more specific one.
        if loc in details and item["type"] in ("int_type", "int_parsing", "model_type"):
            continue
        details[loc] = entry
    return list(details.values())


def invalid_input(error: ValidationError) -> InvalidInput:
    return InvalidInput(validation_details(error))
