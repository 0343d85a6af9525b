"""Strict JSON and YAML decoding of request bodies: thin hooks on ``json`` and PyYAML.

Whichever the format, a body may not be anything but UTF-8, repeat a key, or hold an
integer of more than ``MAX_INT_DIGITS`` digits (Python's int parsing is quadratic and
raises ValueError at 4,300 digits). After decoding, ``specs.limits`` bounds depth, the
number of values, string sizes, and refuses NaN and infinities (JSON's ``NaN``,
``Infinity``, ``1e400``; YAML's ``.inf``), naming the place. YAML may not use anchors,
aliases or merge keys either: an alias is how a few hundred bytes expand to gigabytes,
and a circular one makes data no encoder can write. They are refused event by event in
libyaml before anything is built, so a refused body costs little.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
)
from yaml.nodes import ScalarNode

from raydc.server.errors import InvalidInput
from raydc.specs.limits import MAX_DEPTH, MAX_NODES, DataLimitError, check_plain_data

MAX_INT_DIGITS = 20  # a signed 64-bit integer, and then some

# libyaml's parser, for the checks, when PyYAML was built with it (much faster); the
# pure-Python one if not. The body is then built by yaml.safe_load.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Refused(ValueError):
    """Refused while decoding JSON (whose hooks know no position)."""


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # the rare case: find the key to name it
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {key!r:.80}")
            seen.add(key)
    return obj


def _json_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {digits} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def decode_json(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_json_object, parse_int=_json_int)
    except _Refused as error:
        raise InvalidInput.field((), str(error)) from error
    except RecursionError as error:
        raise InvalidInput.field((), f"body is nested more than {MAX_DEPTH} levels deep") from error
    except ValueError as error:
        raise InvalidInput.field((), f"body is not valid JSON: {error}") from error


class _YamlRefused(yaml.MarkedYAMLError):
    """Well-formed YAML that raydc does not accept."""


def _refuse(message: str, event: NodeEvent) -> _YamlRefused:
    mark: Any = event.start_mark  # libyaml's Mark or PyYAML's: both have line, column
    return _YamlRefused(problem=message, problem_mark=mark)


_RESOLVER = yaml.resolver.Resolver()
_INT = "tag:yaml.org,2002:int"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


def _tag(event: ScalarEvent) -> str:
    if event.tag not in (None, "!"):
        return str(event.tag)
    return str(_RESOLVER.resolve(ScalarNode, event.value, event.implicit))


@dataclass
class _Mapping:
    """A mapping being read: the keys seen, and whether the next node is a key."""

    keys: set[tuple[str, str]] = field(default_factory=set)
    at_key: bool = True


def _check_yaml_events(text: str) -> bool:
    """Refuse, before anything is built: anchors and aliases, merge keys, duplicate or
    non-scalar keys, integers of more than MAX_INT_DIGITS digits, deep nesting and too
    many values (libyaml's parser, event by event). Returns whether a timestamp was seen.
    """
    stack: list[_Mapping | None] = []  # None: a sequence
    nodes = 0
    timestamps = False
    for event in yaml.parse(text, Loader=_BaseLoader):
        if isinstance(event, CollectionEndEvent):
            stack.pop()
            if stack and stack[-1] is not None:
                stack[-1].at_key = not stack[-1].at_key
            continue
        if not isinstance(event, NodeEvent):
            continue
        if isinstance(event, AliasEvent) or event.anchor is not None:
            raise _refuse("YAML anchors and aliases are not accepted", event)
        nodes += 1
        if nodes > MAX_NODES:
            raise _refuse(f"more than {MAX_NODES} values", event)
        parent = stack[-1] if stack else None
        if isinstance(event, CollectionStartEvent):
            if parent is not None and parent.at_key:
                raise _refuse("mapping keys must be strings", event)
            if len(stack) >= MAX_DEPTH:
                raise _refuse(f"nested more than {MAX_DEPTH} levels deep", event)
            stack.append(_Mapping() if isinstance(event, MappingStartEvent) else None)
            continue
        if not isinstance(event, ScalarEvent):  # alias events were refused above
            continue
        tag = _tag(event)
        if tag == _INT:
            digits = len(event.value.lstrip("+-").replace("_", ""))
            if digits > MAX_INT_DIGITS:
                raise _refuse(f"an integer of {digits} digits (at most {MAX_INT_DIGITS})", event)
        timestamps = timestamps or tag == _TIMESTAMP
        if parent is not None:
            if parent.at_key:
                if tag == "tag:yaml.org,2002:merge":
                    raise _refuse("YAML merge keys (<<) are not accepted", event)
                if (tag, event.value) in parent.keys:
                    raise _refuse(f"duplicate key {event.value!r:.80}", event)
                parent.keys.add((tag, event.value))
            parent.at_key = not parent.at_key
    return timestamps


def _dates_as_text(data: Any) -> Any:
    """YAML dates and times as the text JSON would have sent (str() writes them as YAML
    does: ``2024-01-31``, ``2024-01-31 10:00:00``)."""
    if isinstance(data, dict):
        return {key: _dates_as_text(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_dates_as_text(value) for value in data]
    return str(data) if isinstance(data, date) else data


def _yaml_message(error: yaml.YAMLError) -> str:
    if isinstance(error, _YamlRefused):
        mark = error.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"{error.problem}{where}"
    return f"body is not valid YAML: {error}"


def decode_yaml(text: str) -> Any:
    try:
        timestamps = _check_yaml_events(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InvalidInput.field((), _yaml_message(error)) from error
    return _dates_as_text(data) if timestamps else data


def decode_body(body: bytes, content_type: str | None) -> Any:
    """Decode a JSON or YAML request body (YAML is a superset, but JSON errors read better)
    and check it is small, plain JSON data; a 422 naming the place if not."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput.field(
            (), f"body is not valid UTF-8 (byte {error.start}: {error.reason})"
        ) from error
    data = decode_json(text) if content_type and "json" in content_type else decode_yaml(text)
    try:
        check_plain_data(data)
    except DataLimitError as error:
        raise InvalidInput.field(error.path, error.message) from error
    return data
