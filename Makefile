# The two commands of the README:
#   make demo   set up, then run the main job on the embedded defaults with live progress
#   make test   set up, then run the whole test suite (Tansu tier, then Apache Kafka tier)
.PHONY: demo test test-tansu test-apache lint bench setup

PY := .venv/bin
PYTEST := $(PY)/pytest -p no:cacheprovider

setup:
	@scripts/bootstrap

demo: setup
	$(PY)/actions-sync demo

test:
	@scripts/bootstrap --test
	$(MAKE) --no-print-directory lint test-tansu test-apache

lint:
	$(PY)/ruff check .
	$(PY)/mypy actions_sync streams schemas sandboxes

# Every test, broker-facing ones on the embedded Tansu broker.
test-tansu:
	$(PYTEST) -q

# The broker-facing tests again, on a real single-node Apache Kafka (KRaft) from Maven jars
# (their PostgreSQL variants test the store, not the broker: the Tansu tier runs those).
# Without Java/Maven this tier skips with a reason — except in CI, where it must run.
test-apache:
	@if [ -z "$$CI" ] && ! { command -v java && command -v mvn; } >/dev/null 2>&1; then \
	  echo "SKIPPED Apache Kafka tier: java or mvn not found (run scripts/bootstrap --test)"; \
	else scripts/apache-kafka exec -- $(PYTEST) -q -m "broker and not postgres"; fi

bench: setup
	$(PY)/python bench/people_throughput.py
