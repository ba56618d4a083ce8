"""Avro schema resolution: can a reader schema read data written with a writer schema?

A pure checker of the Avro specification's "Schema Resolution" rules, used by the
evolution guard (tests) and by the schema-registry sandbox. It answers with reasons,
one per problem, each naming where it is (`PersonChange.address.zip: ...`); no reasons
means compatible.

    same primitive, or a promotion of PROMOTIONS (int -> long, string -> bytes ...)
    records   match by unqualified name or a reader alias; every reader field is in the
              writer (by name or field alias) or has a default; writer-only fields are
              skipped; field types resolve recursively
    enums     match by name; every writer symbol is a reader symbol, or the reader has
              a `default` symbol
    fixed     match by name and size
    arrays / maps resolve their items / values
    unions    every writer branch resolves to the reader (to some branch if it is a union)

Logical types resolve as their underlying type. Names are resolved with namespaces, so a
named type may be referenced after its first definition, recursively too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "LEVELS",
    "PROMOTIONS",
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

# writer type -> the reader types it may be read as (Avro spec, "Schema Resolution")
PROMOTIONS: Final[dict[str, frozenset[str]]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}

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

PRIMITIVES: Final = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)
NAMED: Final = frozenset({"record", "error", "enum", "fixed"})

Names = dict[str, dict[str, Any]]


def backward_incompatibilities(reader: AvroSchema, writer: AvroSchema) -> list[str]:
    """Why `reader` cannot read data written with `writer`; empty when it can."""
    reader_names: Names = {}
    writer_names: Names = {}
    r = _index(_load(reader), "", reader_names)
    w = _index(_load(writer), "", writer_names)
    root = _deref(r, reader_names)
    path = _short(root["name"]) if isinstance(root, dict) and "name" in root else ""
    return list(dict.fromkeys(_Resolver(reader_names, writer_names).check(r, w, path)))


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


# -- names: qualify every named type and reference, remember the definitions ----------


def _load(schema: AvroSchema) -> Any:
    # JSON text ('{"type": ...}', '["null", ...]', '"int"') or a bare type name ("int")
    if isinstance(schema, str) and schema.lstrip()[:1] in ("{", "[", '"'):
        return json.loads(schema)
    return schema


def _fullname(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _short(fullname: str) -> str:
    return fullname.rpartition(".")[2]


def _index(node: Any, namespace: str, names: Names) -> Any:
    """`node` with named types fully qualified; their definitions are added to `names`."""
    if isinstance(node, list):
        return [_index(branch, namespace, names) for branch in node]
    if isinstance(node, str):
        if node in PRIMITIVES:
            return node
        full = _fullname(node, namespace)
        return full if full in names else node  # else a name in the null namespace
    kind = node["type"]
    if kind in NAMED:
        return _index_named(node, namespace, names)
    if kind == "array":
        return {"type": "array", "items": _index(node["items"], namespace, names)}
    if kind == "map":
        return {"type": "map", "values": _index(node["values"], namespace, names)}
    return _index(kind, namespace, names)  # a logical type, or {"type": <another schema>}


def _index_named(node: dict[str, Any], namespace: str, names: Names) -> dict[str, Any]:
    full = _fullname(node["name"], node.get("namespace", namespace))
    inner = full.rpartition(".")[0]
    aliases = [_fullname(a, inner) for a in node.get("aliases", [])]
    kind = "record" if node["type"] == "error" else node["type"]
    out = {**node, "type": kind, "name": full, "aliases": aliases}
    names[full] = out  # before the fields: a record may refer to itself
    if kind == "record":
        out["fields"] = [{**f, "type": _index(f["type"], inner, names)} for f in node["fields"]]
    return out


def _deref(node: Any, names: Names) -> Any:
    if not isinstance(node, str) or node in PRIMITIVES:
        return node
    if node not in names:
        raise ValueError(f"unknown Avro type name {node!r}")
    return names[node]


def _kind(node: Any) -> str:
    if isinstance(node, list):
        return "union"
    return node if isinstance(node, str) else str(node["type"])


def _at(path: str, problem: str) -> str:
    return f"{path}: {problem}" if path else problem


def _describe(node: Any) -> str:
    if isinstance(node, list):
        return "union [" + ", ".join(_describe(b) for b in node) + "]"
    if isinstance(node, dict) and "name" in node:
        return f"{node['type']} {node['name']}"
    return _kind(node)


# -- resolution ------------------------------------------------------------------------


@dataclass
class _Resolver:
    reader_names: Names
    writer_names: Names
    # record pairs being compared right now: a recursive reference to one of them is
    # assumed to resolve (it resolves if everything else does)
    in_progress: set[tuple[str, str]] = field(default_factory=set)

    def check(self, reader: Any, writer: Any, path: str) -> list[str]:
        reader = _deref(reader, self.reader_names)
        writer = _deref(writer, self.writer_names)
        if isinstance(writer, list):
            return [reason for branch in writer for reason in self.check(reader, branch, path)]
        if isinstance(reader, list):
            if any(not self.check(branch, writer, path) for branch in reader):
                return []
            problem = f"writer's {_describe(writer)} matches no branch of the reader's"
            return [_at(path, f"{problem} {_describe(reader)}")]
        r_kind, w_kind = _kind(reader), _kind(writer)
        if r_kind != w_kind:
            if r_kind in PROMOTIONS.get(w_kind, ()):
                return []
            problem = f"writer's {_describe(writer)} cannot be read as {_describe(reader)}"
            return [_at(path, problem)]
        resolve = _COMPLEX.get(r_kind)
        return resolve(self, reader, writer, path) if resolve else []

    def records(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
        pair = (reader["name"], writer["name"])
        if pair in self.in_progress:
            return []
        self.in_progress.add(pair)
        try:
            by_name = {f["name"]: f for f in writer["fields"]}
            return [reason for f in reader["fields"] for reason in self._field(f, by_name, path)]
        finally:
            self.in_progress.discard(pair)

    def _field(self, field: dict[str, Any], writer_fields: dict[str, Any], path: str) -> list[str]:
        where = f"{path}.{field['name']}" if path else field["name"]
        names = (field["name"], *field.get("aliases", ()))
        written = next((writer_fields[n] for n in names if n in writer_fields), None)
        if written is not None:
            return self.check(field["type"], written["type"], where)
        if "default" in field:
            return []
        return [_at(where, "reader field has no default and the writer has no such field")]

    def enums(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if not missing or "default" in reader:
            return []
        problem = f"writer's symbols {missing} are not reader symbols and the reader has no default"
        return [_at(path, problem)]

    def fixed(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
        if reader["size"] == writer["size"]:
            return []
        return [_at(path, f"fixed size {writer['size']} cannot be read as size {reader['size']}")]

    def arrays(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
        return self.check(reader["items"], writer["items"], f"{path}[]")

    def maps(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
        return self.check(reader["values"], writer["values"], f"{path}{{}}")


Resolve = Callable[[_Resolver, Any, Any, str], list[str]]


def _named(resolve: Resolve) -> Resolve:
    """Named types resolve only when the names match: unqualified, or by a reader alias."""

    def checked(self: _Resolver, reader: Any, writer: Any, path: str) -> list[str]:
        same = _short(reader["name"]) == _short(writer["name"])
        if same or writer["name"] in reader["aliases"]:
            return resolve(self, reader, writer, path)
        problem = f"writer's {_describe(writer)} is not the reader's {_describe(reader)}"
        return [_at(path, f"{problem} (names and aliases differ)")]

    return checked


_COMPLEX: Final[dict[str, Resolve]] = {
    "record": _named(_Resolver.records),
    "enum": _named(_Resolver.enums),
    "fixed": _named(_Resolver.fixed),
    "array": _Resolver.arrays,
    "map": _Resolver.maps,
}
