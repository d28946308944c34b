"""Strict readers for JSON documents that name the failing field by its path.

Shared by the request and schedule codecs: each reader either returns the value with its Python
type or raises ``ProblemFormatError(field, message)``, so malformed input can never surface as a
KeyError or TypeError far from the field that caused it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


class ProblemFormatError(ValueError):
    """A document that does not have the request's shape; ``field`` is its JSON path."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"))


def json_kind(value: object) -> str:
    if value is None:
        return "null"
    for python_type, name in JSON_TYPES:
        if isinstance(value, python_type):
            return name
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else "?"


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def read_object(
    value: object, path: str, required: Collection[str], optional: Collection[str] = ()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProblemFormatError(path, f"must be an object, got {json_kind(value)}")
    for key in value:
        if key not in required and key not in optional:
            raise ProblemFormatError(join(path, str(key)), "unknown field")
    for key in required:
        if key not in value:
            raise ProblemFormatError(join(path, key), "is required")
    return value


def read_int(value: object, path: str) -> int:
    """JSON Schema's integer: 12 and 12.0 (as protobuf's JSON parser allows), never true/12.5."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "a non-integral number" if isinstance(value, float) else json_kind(value)
        raise ProblemFormatError(path, f"must be an integer, got {kind}")
    return value


def read_str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ProblemFormatError(path, f"must be a string, got {json_kind(value)}")
    return value


def read_list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ProblemFormatError(path, f"must be an array, got {json_kind(value)}")
    return value
