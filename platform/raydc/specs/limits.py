"""Bounds on free-form data a user sends (a whole request body, a job's ``config``).

Decoded data is stored, echoed and handed to jobs, so it must be JSON's data model and
small: nested at most ``MAX_DEPTH`` levels, at most ``MAX_NODES`` values, strings of
bounded length with neither NUL nor lone surrogates (which no database text column or
UTF-8 encoder takes), and numbers a signed 64-bit column and a float can hold.
"""

from __future__ import annotations

import math
from typing import Any

MAX_DEPTH = 64
MAX_NODES = 50_000
MAX_STRING_CHARS = 64 * 1024
MAX_KEY_CHARS = 256
_INT64 = 2**63

Path = tuple[str | int, ...]


class DataLimitError(ValueError):
    """``path`` names the offending value inside the checked data."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{'.'.join(map(str, path))}: {message}" if path else message)
        self.path = path
        self.message = message


def _check_text(text: str, path: Path, limit: int, what: str) -> None:
    if len(text) > limit:
        raise DataLimitError(path, f"{what} of {len(text)} characters (at most {limit})")
    if "\x00" in text:
        raise DataLimitError(path, f"{what} contains NUL (\\u0000)")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise DataLimitError(path, f"{what} contains a lone surrogate") from error


def check_plain_data(value: Any, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> None:
    """Raise DataLimitError unless ``value`` is small, finite JSON data (iteratively:
    a cycle or a deep nest ends at the depth bound, never in a RecursionError)."""
    stack: list[tuple[Any, Path, int]] = [(value, (), 1)]
    nodes = 0
    while stack:
        item, path, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise DataLimitError((), f"more than {max_nodes} values")
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            _check_text(item, path, MAX_STRING_CHARS, "a string")
        elif isinstance(item, int):
            if not -_INT64 <= item < _INT64:
                raise DataLimitError(path, "an integer beyond 64 bits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise DataLimitError(path, "a number must be finite")
        elif isinstance(item, dict | list):
            if depth > max_depth:
                raise DataLimitError(path, f"nested more than {max_depth} levels deep")
            if isinstance(item, list):
                stack.extend((v, (*path, i), depth + 1) for i, v in enumerate(item))
                continue
            for key, child in item.items():
                if not isinstance(key, str):
                    raise DataLimitError(path, f"mapping keys must be strings, not {key!r}")
                _check_text(key, (*path, key), MAX_KEY_CHARS, "a key")
                stack.append((child, (*path, key), depth + 1))
        else:
            raise DataLimitError(
                path, f"{type(item).__name__} values are not accepted, only JSON's "
                "(objects, arrays, strings, numbers, booleans, null)",
            )  # fmt: skip
