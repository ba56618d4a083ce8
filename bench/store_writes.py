"""Person upserts into a growing SQLite store: SQLite's defaults against the store's tuning.

An initial sync writes ~900k people whose ids and emails arrive in no key order (the bulk
export is cut by creation date), so each batch lands on pages all over the table and its
email index. In one process, in turns (A B A B ...), each configuration loads the same
people into a fresh store through `Store.write_people` and prints the write time per
row over the whole load and over its first and last tenth:
  - defaults: SQLite's 2 MB page cache and a WAL checkpoint every 1,000 pages, batch 5,000;
  - tuned: the store's pragmas (`SQLITE_CACHE_KIB`, `SQLITE_WAL_CHECKPOINT_PAGES`),
    batch 5,000 (the old people batch) and 20,000 (`ACTIONS_SYNC_PEOPLE_BATCH_SIZE`).

    .venv/bin/python bench/store_writes.py [--people 900000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from typing import Any

from sqlalchemy import event

from actions_sync.store import PeopleParams, Store, people_params
from sandboxes.population import generate

CONFIGS = {  # name -> (pragmas run after the store's own, batch)
    "defaults, batch 5000": (("PRAGMA cache_size=-2000", "PRAGMA wal_autocheckpoint=1000"), 5000),
    "tuned, batch 5000": ((), 5000),
    "tuned, batch 20000": ((), 20_000),
}


def people(count: int) -> list[tuple[Any, ...]]:
    """The population's sales-owned people as store parameters, in a scattered order."""
    rows = []
    for person in generate(count):
        if person["sfdc_lead_owner_id"] or person["sfdc_contact_owner_id"]:
            person["changed_at"] = person["updated_at"]
            rows.append(person)
    random.Random(1).shuffle(rows)  # windows of creation dates: ids all over the table
    return people_params(rows, [], sqlite=True).upserts


def load(rows: list[tuple[Any, ...]], pragmas: tuple[str, ...], batch: int) -> list[float]:
    """Seconds per batch, loading `rows` into a fresh store."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/store.db")
        store.migrate()
        store.engine.dispose()  # every connection from now on runs `pragmas` too
        event.listen(
            store.engine, "connect", lambda dbapi, _: [dbapi.execute(pragma) for pragma in pragmas]
        )
        times = []
        for at in range(0, len(rows), batch):
            started = time.perf_counter()
            store.write_people(PeopleParams(rows[at : at + batch], []))
            times.append(time.perf_counter() - started)
        store.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--people",
        type=int,
        default=1_500_000,
        help="population size (~60 %% are sales-owned and written)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows = people(args.people)
    print(f"{len(rows):,} sales-owned people of {args.people:,}, scattered order")
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in CONFIGS}
    for round_ in range(1, args.rounds + 1):
        for name, (pragmas, batch) in CONFIGS.items():
            times = load(rows, pragmas, batch)
            tenth = max(1, len(times) // 10)
            per_row = (
                sum(times) / len(rows) * 1e6,
                sum(times[:tenth]) / (tenth * batch) * 1e6,
                sum(times[-tenth:]) / (tenth * batch) * 1e6,
            )
            results[name].append(per_row)
            print(
                f"round {round_}: {name:22} {per_row[0]:5.1f} us/row (first tenth "
                f"{per_row[1]:5.1f}, last tenth {per_row[2]:5.1f})"
            )
    base = statistics.median(r[0] for r in results["defaults, batch 5000"])
    for name, runs in results.items():
        median = statistics.median(r[0] for r in runs)
        print(f"median: {name:22} {median:5.1f} us/row  ({median / base:.0%} of the defaults)")


if __name__ == "__main__":
    main()
