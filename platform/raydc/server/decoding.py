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
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, NodeEvent
from yaml.nodes import MappingNode, Node, ScalarNode

from raydc.server.errors import InvalidInput
from raydc.specs.limits import MAX_DEPTH, MAX_NODES, DataLimitError, check_plain_data

MAX_INT_DIGITS = 20  # a signed 64-bit integer, and then some

# libyaml's parser when PyYAML was built with it (much faster); the pure-Python one if not.
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


def _refuse(message: str, node_or_event: Node | NodeEvent | None) -> _YamlRefused:
    return _YamlRefused(problem=message, problem_mark=getattr(node_or_event, "start_mark", None))


class StrictYamlLoader(_BaseLoader):
    """SafeLoader that refuses duplicate keys, merge keys and huge integers, and keeps
    a timestamp as the text it was written as (what JSON would have sent)."""

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):
            raise ConstructorError(None, None, "expected a mapping", node.start_mark)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _refuse("YAML merge keys (<<) are not accepted", key_node)
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in mapping
            except TypeError:  # an unhashable key, e.g. a list
                raise _refuse("mapping keys must be strings", key_node) from None
            if repeated:
                raise _refuse(f"duplicate key {key!r:.80}", key_node)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_yaml_int(self, node: ScalarNode) -> int:
        digits = len(str(self.construct_scalar(node)).lstrip("+-").replace("_", ""))
        if digits > MAX_INT_DIGITS:
            raise _refuse(f"an integer of {digits} digits (at most {MAX_INT_DIGITS})", node)
        value: int = super().construct_yaml_int(node)
        return value

    def construct_yaml_timestamp(self, node: ScalarNode) -> str:
        return str(self.construct_scalar(node))


StrictYamlLoader.add_constructor("tag:yaml.org,2002:int", StrictYamlLoader.construct_yaml_int)
StrictYamlLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", StrictYamlLoader.construct_yaml_timestamp
)


def _check_yaml_events(text: str) -> None:
    """Refuse anchors, aliases, deep nesting and too many values before building anything
    (libyaml's composer recurses in C: depth must be bounded before it runs)."""
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_BaseLoader):
        if isinstance(event, NodeEvent):
            if isinstance(event, AliasEvent) or event.anchor is not None:
                raise _refuse("YAML anchors and aliases are not accepted", event)
            nodes += 1
            if nodes > MAX_NODES:
                raise _refuse(f"more than {MAX_NODES} values", event)
            if isinstance(event, CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _refuse(f"nested more than {MAX_DEPTH} levels deep", event)
        elif isinstance(event, CollectionEndEvent):
            depth -= 1


def _yaml_message(error: yaml.YAMLError) -> str:
    if isinstance(error, _YamlRefused):
        mark = error.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"{error.problem}{where}"
    return f"body is not valid YAML: {error}"


def decode_yaml(text: str) -> Any:
    try:
        _check_yaml_events(text)
        return yaml.load(text, Loader=StrictYamlLoader)
    except yaml.YAMLError as error:
        raise InvalidInput.field((), _yaml_message(error)) from error


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
