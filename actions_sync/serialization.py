"""Confluent wire format with fastavro, and a caching schema-registry client.

Wire format: byte 0 = magic 0x00, bytes 1-4 = schema id (big-endian), then the Avro binary
body. Writer schemas are fetched by id once and parsed once; when the writer schema is
the reader's own, records are read without schema resolution (the fast path).

`Serializer` and `FastDeserializer` use the codecs compiled by `actions_sync.avro`
for flat records (a PersonChange: 3.1 us to encode instead of fastavro's 10.3, 6.5 us to
decode instead of 11.6; same bytes, same records) and fastavro for the rest.
`Deserializer` is fastavro throughout.
"""

from __future__ import annotations

import io
import json
import struct
import threading
from typing import Any

import fastavro
import httpx

import schemas
from actions_sync.avro import Reader, compile_reader, compile_writer
from actions_sync.errors import Fatal, Retriable, UndecodableRecord

__all__ = [
    "MAGIC",
    "Deserializer",
    "FastDeserializer",
    "RegistryClient",
    "Serializer",
    "frame",
    "subject_for",
]

MAGIC = 0
_HEADER = struct.Struct(">bI")


def subject_for(topic: str, field: str = "value") -> str:
    """Confluent's TopicNameStrategy: `<topic>-value` / `<topic>-key`."""
    return f"{topic}-{field}"


def frame(schema_id: int, body: bytes) -> bytes:
    return _HEADER.pack(MAGIC, schema_id) + body


def _canonical(schema: Any) -> str:
    return json.dumps(fastavro.schema.to_parsing_canonical_form(schema))


class RegistryClient:
    """The subset of the Confluent Schema Registry REST API the project uses, cached.

    `transport` is injectable for tests; production uses the real network.
    """

    def __init__(
        self, url: str, transport: httpx.BaseTransport | None = None, timeout_s: float = 10.0
    ) -> None:
        self._http = httpx.Client(base_url=url, transport=transport, timeout=timeout_s)
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, Any] = {}
        self._lock = threading.Lock()

    def register(self, subject: str, schema_text: str) -> int:
        """Register (or find) `schema_text` under `subject`; return its global id."""
        key = (subject, schema_text)
        if key not in self._ids:
            body = self._call("POST", f"/subjects/{subject}/versions", {"schema": schema_text})
            self._ids[key] = int(body["id"])
        return self._ids[key]

    def schema(self, schema_id: int) -> Any:
        """The parsed writer schema with `schema_id`; `UndecodableRecord` when unknown."""
        with self._lock:
            if schema_id not in self._schemas:
                body = self._call("GET", f"/schemas/ids/{schema_id}")
                self._schemas[schema_id] = fastavro.parse_schema(json.loads(body["schema"]))
            return self._schemas[schema_id]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise Retriable(f"schema registry unreachable: {exc}") from exc
        if response.status_code == 404:
            raise UndecodableRecord(f"schema registry: {path}: {response.text}")
        if response.status_code >= 500:
            raise Retriable(f"schema registry {response.status_code}: {response.text}")
        if response.status_code >= 400:
            raise Fatal(f"schema registry refused {path}: {response.status_code} {response.text}")
        return response.json()

    def close(self) -> None:
        self._http.close()


class Serializer:
    """Encodes records of one schema for one topic, registering the schema on first use.

    Raises TypeError or ValueError for a record that does not fit the schema.
    """

    def __init__(self, registry: RegistryClient, topic: str, record: str) -> None:
        self._schema = schemas.parsed(record)
        self._write = compile_writer(self._schema)  # None: fastavro
        self._registry = registry
        self._subject = subject_for(topic)
        self._text = schemas.schema_text(record)
        self._id: int | None = None
        self._header = b""

    @property
    def schema_id(self) -> int:
        if self._id is None:
            self._id = self._registry.register(self._subject, self._text)
        return self._id

    def __call__(self, record: dict[str, Any]) -> bytes:
        header = self._header or self._first_header()
        if self._write is None:
            buf = io.BytesIO()
            buf.write(header)
            fastavro.schemaless_writer(buf, self._schema, record)
            return buf.getvalue()
        out = bytearray(header)
        self._write(record, out)
        return bytes(out)

    def _first_header(self) -> bytes:
        self._header = _HEADER.pack(MAGIC, self.schema_id)
        return self._header


class Deserializer:
    """Decodes Confluent-framed Avro into records of the reader schema `record`.

    Raises `UndecodableRecord` for bytes that are not such a record (bad framing, unknown
    schema id, a body that does not match its writer schema or has bytes left over) and
    `Retriable` when the registry cannot be reached.
    """

    def __init__(self, registry: RegistryClient, record: str) -> None:
        self._registry = registry
        self._reader = schemas.parsed(record)
        self._reader_form = _canonical(self._reader)
        self._plans: dict[int, tuple[Any, Any]] = {}  # id -> (writer, reader or None)

    def _plan(self, schema_id: int) -> tuple[Any, Any]:
        plan = self._plans.get(schema_id)
        if plan is None:
            writer = self._registry.schema(schema_id)
            same = _canonical(writer) == self._reader_form
            plan = self._plans[schema_id] = (writer, None if same else self._reader)
        return plan

    def __call__(self, data: bytes | None) -> dict[str, Any]:
        if data is None or len(data) < 5 or data[0] != MAGIC:
            raise UndecodableRecord("not Confluent wire format (missing magic byte 0x00)")
        writer, reader = self._plan(int.from_bytes(data[1:5], "big"))
        buf = io.BytesIO(data)
        buf.seek(5)
        try:
            record = fastavro.schemaless_reader(buf, writer, reader)
        except Exception as exc:  # fastavro raises many types for corrupt bodies
            raise UndecodableRecord(f"Avro body does not match its schema: {exc!r}") from exc
        if buf.tell() != len(data):
            raise UndecodableRecord(f"{len(data) - buf.tell()} bytes left after the Avro record")
        if not isinstance(record, dict):
            raise UndecodableRecord("Avro body is not a record")
        return record


class FastDeserializer:
    """`Deserializer`'s contract (and errors), with a compiled reader where it applies."""

    def __init__(self, registry: RegistryClient, record: str) -> None:
        self._registry = registry
        self._fallback = Deserializer(registry, record)
        reader_schema = schemas.parsed(record)
        self._compiled = compile_reader(reader_schema)
        self._reader_form = _canonical(reader_schema)
        self._readers: dict[int, Reader | None] = {}  # schema id -> compiled, or fallback

    def __call__(self, data: bytes | None) -> dict[str, Any]:
        if data is None or len(data) < 5 or data[0] != MAGIC:
            raise UndecodableRecord("not Confluent wire format (missing magic byte 0x00)")
        schema_id = int.from_bytes(data[1:5], "big")
        try:
            read = self._readers[schema_id]
        except KeyError:
            read = self._readers[schema_id] = self._reader_for(schema_id)
        if read is None:
            return self._fallback(data)
        try:
            record, end = read(data, 5)
        except Exception as exc:  # IndexError (truncated), ValueError, UnicodeDecodeError...
            raise UndecodableRecord(f"Avro body does not match its schema: {exc!r}") from exc
        if end != len(data):
            raise UndecodableRecord(f"{len(data) - end} bytes left after the Avro record")
        return record  # type: ignore[no-any-return]

    def _reader_for(self, schema_id: int) -> Reader | None:
        if self._compiled is None:
            return None
        writer = self._registry.schema(schema_id)  # UndecodableRecord / Retriable, as before
        return self._compiled if _canonical(writer) == self._reader_form else None
