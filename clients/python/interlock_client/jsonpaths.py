"""Field paths and JSON type names, written the way the server writes them.

Shared by the client's plan-document checks and the server's plan validation,
so a problem found on either side names the field the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

PLAIN_KEY = re.compile(r"^[A-Za-z0-9_@:-]+$")


def member(base: str, key: object) -> str:
    """The path of a map entry: ``base.key``, or ``base["k.e.y"]`` for other keys."""
    text = str(key)
    return f"{base}.{text}" if PLAIN_KEY.match(text) else f"{base}[{json.dumps(text)}]"


def json_type(value: object) -> str:
    """The JSON name of a value's type ("object", "array", "number", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


__all__ = ["PLAIN_KEY", "json_type", "member"]
