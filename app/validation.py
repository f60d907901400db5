"""Turning pydantic's validation errors into one readable sentence that names the field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

MAX_LISTED = 5


def _location(loc: Sequence[Any]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts)


def describe_errors(errors: Sequence[Mapping[str, Any]], prefix: str = "") -> str:
    described = []
    for error in errors[:MAX_LISTED]:
        loc = list(error.get("loc", ()))
        if prefix and (not loc or loc[0] != prefix):
            loc = [prefix, *loc]
        # pydantic names the union member or validator in the location; readers want the field path
        loc = [part for part in loc if not (isinstance(part, str) and part.startswith("function-"))]
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        described.append(f"{_location(loc)}: {message}" if loc else message)
    more = len(errors) - MAX_LISTED
    return "; ".join(described) + (f"; and {more} more" if more > 0 else "")


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    return describe_errors(exc.errors(), prefix)
