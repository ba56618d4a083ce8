"""What a worker's helper process runs (`streams.offload`): the decoder and a handler's
`prepare`, for each batch.

A module of its own, importing the decode path only: the helper imports whatever the
functions it unpickles live in, and when they lived in `streams.app` it imported faust,
aiokafka and the rest of the worker, ~20 MB of RSS it never ran (bench/RESULTS.md,
issue 15). Keep faust, the store's engine and the Kafka clients out of this module and of
the `prepare` functions handed to it (`streams.people_prepare`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from actions_sync.serialization import FastDeserializer, RegistryClient
from streams.batch import RawRecord

__all__ = ["Decode", "Prepare", "prepare", "setup"]

Decode = Callable[[bytes | None], dict[str, Any]]
Prepare = Callable[[Sequence[RawRecord], Decode], Any]

_decode: Decode | None = None  # the helper process's decoder


def setup(registry_url: str, record: str) -> None:
    """Runs once in the helper process."""
    global _decode
    _decode = FastDeserializer(RegistryClient(registry_url), record)


def prepare(
    prepare: Prepare, batch: tuple[str, list[tuple[int, int, bytes | None, bytes | None]]]
) -> Any:
    """Runs in the helper process, for each batch."""
    assert _decode is not None, "set up by setup()"
    topic, items = batch
    make = RawRecord._make
    return prepare([make((topic, *item)) for item in items], _decode)
