"""Hostile Avro bodies: the compiled reader against fastavro on runs of 0xff bytes.

A PersonChange body whose `marketo_id` is a varint that never ends (its event id, then
N bytes of 0xff), decoded by the project's `FastDeserializer` (the compiled reader) and
by `Deserializer` (fastavro), each the best of `--rounds`; CPU seconds and the ratio.
Before varints were bounded (issue 10) the compiled reader took 0.19 s at 80 KB, 3.7 s
at 320 KB and ~3 minutes at 2 MB (quadratic: each byte shifted all the bits before it);
fastavro 0.05 s at 2 MB. Target: the compiled reader no slower than fastavro.

    .venv/bin/python bench/avro_hostile.py [--sizes 80000 320000 2000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import fastavro

import schemas
from actions_sync.errors import UndecodableRecord
from actions_sync.serialization import Deserializer, FastDeserializer, frame


class _Registry:
    """Schema id 1 is PersonChange (the deserializers ask the registry for writers)."""

    def schema(self, schema_id: int) -> Any:
        return fastavro.parse_schema(json.loads(schemas.schema_text("PersonChange")))


def _cpu_s(decode: Callable[[bytes], Any], wire: bytes, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        try:
            decode(wire)
        except UndecodableRecord:
            pass
        else:
            raise SystemExit("a hostile body was decoded")
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[80_000, 320_000, 2_000_000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    registry: Any = _Registry()
    compiled, reference = (
        FastDeserializer(registry, "PersonChange"),
        Deserializer(registry, "PersonChange"),
    )
    event_id = str(uuid.uuid4()).encode()
    for size in args.sizes:
        wire = frame(1, bytes([len(event_id) << 1]) + event_id + b"\xff" * size)
        ours, theirs = _cpu_s(compiled, wire, args.rounds), _cpu_s(reference, wire, args.rounds)
        print(
            f"{size:>10,} bytes of 0xff: compiled {ours * 1e3:9.3f} ms CPU   fastavro"
            f" {theirs * 1e3:9.3f} ms CPU   compiled/fastavro {ours / theirs:7.4f}"
        )


if __name__ == "__main__":
    main()
