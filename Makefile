# The two commands of the README:
#   make demo   set up, then run the main job on the embedded defaults with live progress
#   make test   set up, then run the whole test suite (lint, the Tansu tier and the Apache
#               Kafka tier side by side)
.PHONY: demo test test-tansu test-apache lint bench setup test-floors

PY := .venv/bin
# `python -m` puts the repository on sys.path, where the progress plugin is found.
PYTEST := $(PY)/python -m pytest -p no:cacheprovider -p tests.support.progress
# pytest-xdist workers of the Tansu tier. Every broker test there has a broker of its own
# (and each worker its own PostgreSQL server); a test spends most of its time waiting on
# group joins, worker processes starting and the sandboxes' latency, not on CPU, so more
# workers than cores pay off. The long tests are handed out first, one at a time (see
# tests/conftest.py), so that no worker is left alone with a queue of them at the end.
TANSU_WORKERS ?= 3

setup:
	@scripts/bootstrap

demo: setup
	$(PY)/actions-sync demo

# Lint and the two tiers run side by side (the tiers' brokers are separate; a clean clone
# on 2 cores: Tansu ~16 min, Apache Kafka ~8, floors ~5, all done in ~16 instead of ~29
# one after the other); the output of each is printed whole when it ends. Meanwhile
# each tier writes a progress line every 30 s to the terminal, handed to it as file
# descriptor 3, which --output-sync does not hold (tests/support/progress.py).
# test-floors is listed last: with -j3 it starts when lint ends (~1 minute in), beside the
# two tiers, which spend most of their time waiting on brokers and processes, not on CPU;
# after them it would add its ~5 minutes (see test-floors).
test:
	@scripts/bootstrap --test
	PROGRESS_FD=3 $(MAKE) --no-print-directory -j3 --output-sync=target lint test-tansu test-apache test-floors 3>&2

lint:
	$(PY)/ruff check .
	$(PY)/ruff format --check .
	$(PY)/mypy actions_sync streams schemas sandboxes app connectors bench tests
	$(PY)/lint-imports --no-cache

# Every test, broker-facing ones on the embedded Tansu broker. The slowest are listed at
# the end (--durations): where the suite's time goes, run after run.
test-tansu:
	$(PYTEST) -q -n $(TANSU_WORKERS) --maxschedchunk=1 --durations=15

# The broker-facing tests again, on real single-node Apache Kafka (KRaft) brokers from Maven
# jars: one per pytest-xdist worker (tests/support/apache.py), the project's topics deleted
# before each test (their PostgreSQL variants test the store, not the broker, and the flows'
# rules suites repeat the same broker calls scenario after scenario: tests/conftest.py
# RULES_SUITES; the Tansu tier runs those). Without Java/Maven this tier skips with a reason — except in CI, where
# it must run.
APACHE_WORKERS ?= 2

test-apache:
	@if [ -z "$$CI" ] && ! { command -v java && command -v mvn; } >/dev/null 2>&1; then \
	  echo "SKIPPED Apache Kafka tier: java or mvn not found (run scripts/bootstrap --test)"; \
	else scripts/apache-kafka fetch >/dev/null && ACTIONS_SYNC_TEST_BROKER=apache \
	  $(PYTEST) -q -n $(APACHE_WORKERS) --maxschedchunk=1 --durations=10 -m "broker and not postgres and not rules_suite"; fi

# The benchmark matrix (broker x store) at a size that fits in ~10 minutes, one summary
# table (bench/matrix.py; each benchmark alone: bench/RESULTS.md).
bench: setup
	$(PY)/python bench/matrix.py

# The tests that need no broker and no PostgreSQL server, on the lowest versions
# pyproject.toml allows (scripts/floors: its own virtualenv, rebuilt only when
# pyproject.toml changes). One process: it runs beside the tiers, on the same 2 cores.
test-floors:
	scripts/floors
