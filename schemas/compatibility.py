"""Avro schema compatibility: can a reader schema read data written with a writer schema?

Apache Avro's own checker decides (`avro.compatibility`, the one Karapace's registry
uses: the specification's "Schema Resolution" rules — promotions, record fields by name
or alias with defaults for new ones, enum symbols or the reader's default, fixed sizes,
array items, map values, union branches, named types by name or alias). This module adds
what a schema registry needs on top: its compatibility levels (backward, forward, full,
each against the latest version or transitively against all), and reasons as text. It
serves the evolution guard (tests) and the schema-registry sandbox.

A reason is `KIND: message at location`, the location a path into the reader schema
(`/fields/0/type/fields/1`); no reasons means compatible.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final, Literal

import avro.errors
import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

__all__ = [
    "LEVELS",
    "AvroSchema",
    "Level",
    "backward_incompatibilities",
    "check_backward",
    "check_compatibility",
    "is_backward_compatible",
]

AvroSchema = dict[str, Any] | str | list[Any]
Level = Literal[
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
]

# level -> (directions checked, against every previous version rather than the latest)
# "backward": the new schema reads old data; "forward": old schemas read new data.
LEVELS: Final[dict[Level, tuple[tuple[str, ...], bool]]] = {
    "NONE": ((), False),
    "BACKWARD": (("backward",), False),
    "BACKWARD_TRANSITIVE": (("backward",), True),
    "FORWARD": (("forward",), False),
    "FORWARD_TRANSITIVE": (("forward",), True),
    "FULL": (("backward", "forward"), False),
    "FULL_TRANSITIVE": (("backward", "forward"), True),
}


def backward_incompatibilities(reader: AvroSchema, writer: AvroSchema) -> list[str]:
    """Why `reader` cannot read data written with `writer`; empty when it can."""
    # avro types the checker's __init__ without annotations
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(_parse(reader), _parse(writer))
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    # the checker merges its findings into sets of kinds, messages and locations
    kinds = "/".join(sorted({kind.name.upper() for kind in result.incompatibilities}))
    where = ", ".join(sorted(result.locations))
    return [f"{kinds}: {message} at {where}" for message in sorted(result.messages)]


def is_backward_compatible(reader: AvroSchema, writer: AvroSchema) -> bool:
    """True when `reader` can read every datum written with `writer`."""
    return not backward_incompatibilities(reader, writer)


def check_backward(new: AvroSchema, previous_versions: Sequence[AvroSchema]) -> list[str]:
    """BACKWARD: `new` must read data written with the latest of `previous_versions`."""
    return backward_incompatibilities(new, previous_versions[-1]) if previous_versions else []


def check_compatibility(
    level: Level, new: AvroSchema, previous_versions: Sequence[AvroSchema]
) -> list[str]:
    """Reasons `new` breaks `level` against `previous_versions` (oldest first)."""
    directions, transitive = LEVELS[level]
    olds = previous_versions if transitive else previous_versions[-1:]
    reasons: list[str] = []
    for old in olds:
        if "backward" in directions:
            reasons += [f"backward: {r}" for r in backward_incompatibilities(new, old)]
        if "forward" in directions:
            reasons += [f"forward: {r}" for r in backward_incompatibilities(old, new)]
    return list(dict.fromkeys(reasons))


def _parse(schema: AvroSchema) -> avro.schema.Schema:
    # JSON text ('{"type": ...}', '["null", ...]', '"int"'), a bare type name ("int"), or
    # the parsed JSON
    if isinstance(schema, str) and schema.lstrip()[:1] in ("{", "[", '"'):
        text = schema
    else:
        text = json.dumps(schema)
    try:
        return avro.schema.parse(text)
    except avro.errors.AvroException as exc:
        raise ValueError(f"invalid Avro schema: {exc}") from exc
