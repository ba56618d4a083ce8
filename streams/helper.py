"""What a worker's helper process runs (`streams.offload`): the decoder and a handler's
`prepare`, for each batch.

A module of its own, importing the decode path only: the helper imports whatever the
functions it unpickles live in, and when they lived in `streams.app` it imported faust,
aiokafka and the rest of the worker, ~20 MB of RSS it never ran (bench/RESULTS.md,
issue 15). Keep faust, the store's engine and the Kafka clients out of this module and of
the `prepare` functions handed to it (`streams.people_prepare`).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from itertools import repeat
from operator import attrgetter
from typing import Any

from actions_sync.serialization import FastDeserializer, RegistryClient
from streams.batch import RawRecord, raw_record

__all__ = ["Columns", "Decode", "Prepare", "columns", "prepare", "setup"]

Decode = Callable[[bytes | None], dict[str, Any]]
Prepare = Callable[[Sequence[RawRecord], Decode], Any]
# topic, then partitions, offsets, keys and values of its records, in order
Columns = tuple[str, "array[int]", "array[int]", list[bytes | None], list[bytes | None]]

_partition, _offset, _key, _value = map(attrgetter, ("partition", "offset", "key", "value"))

_decode: Decode | None = None  # the helper process's decoder


def setup(registry_url: str, record: str) -> None:
    """Runs once in the helper process."""
    global _decode
    _decode = FastDeserializer(RegistryClient(registry_url), record)


def columns(topic: str, records: Sequence[RawRecord]) -> Columns:
    """A batch of one topic's records as the helper's `prepare` takes it: a column per
    field, each made in one C loop (no Python code per record; the list of tuples it
    replaces was made by a list comprehension), the integers pickled as two arrays."""
    return (
        topic,
        array("q", map(_partition, records)),
        array("q", map(_offset, records)),
        list(map(_key, records)),
        list(map(_value, records)),
    )


def prepare(prepare: Prepare, batch: Columns) -> Any:
    """Runs in the helper process, for each batch (`columns`)."""
    assert _decode is not None, "set up by setup()"
    topic, partitions, offsets, keys, values = batch
    records = list(map(raw_record, zip(repeat(topic), partitions, offsets, keys, values)))
    return prepare(records, _decode)
