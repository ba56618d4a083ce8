"""The `actions-sync` command line, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actions_sync.kafka import dlq_topic, ensure_topics, read_topic
from actions_sync.topics import PERSON_CHANGES, specs
from app.stack import http_client
from tests.support.checks import present

ALL_COMMANDS = (
    "demo",
    "up",
    "worker",
    "broker",
    "sandbox",
    "produce",
    "sync",
    "settings",
    "dlq",
    "reconcile",
    "tail",
    "topics",
    "env",
)


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ACTIONS_SYNC_")
        and k not in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL")
    }
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=timeout,
    )


def test_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert all(command in result.stdout for command in ALL_COMMANDS)


def test_a_part_not_built_names_the_part_of_the_product_it_belongs_to() -> None:
    from actions_sync.errors import ConfigError
    from app.cli import _entry

    with pytest.raises(ConfigError, match="worker 'x' is not built yet: it belongs to S99"):
        _entry("streams.no_such_agent:run", "worker 'x'", "S99")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["worker", "nope"], "unknown worker 'nope'"),
        (["worker", "activities"], "KAFKA_BOOTSTRAP_SERVERS and SCHEMA_REGISTRY_URL must be set"),
        (["demo", "--people", "0"], "--people"),
        (["produce", "no.such.topic", "-"], "not a producer topic"),
        (["sandbox", "nope"], "'nope' is not one of"),
        (["worker", "reminders"], "KAFKA_BOOTSTRAP_SERVERS and SCHEMA_REGISTRY_URL must be set"),
        (["bogus"], "No such command"),
        (["reconcile", "unsubscribes"], "ACTIONS_SYNC_SALESFORCE_URL must be set"),
    ],
)
def test_bad_arguments_print_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ACTIONS_SYNC_PARTITIONS", "many"),
        ("DATABASE_URL", "mysql://x"),
        ("ACTIONS_SYNC_LOG_LEVEL", "loud"),
    ],
)
def test_bad_settings_name_the_variable_and_exit_2(variable: str, value: str) -> None:
    result = run_cli("worker", "people", env={variable: value})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and variable in result.stderr


def test_worker_without_a_broker_says_how_to_fix_it() -> None:
    result = run_cli("worker", "people")
    assert result.returncode == 2
    assert "KAFKA_BOOTSTRAP_SERVERS" in result.stderr and "actions-sync up" in result.stderr


def test_produce_publishes_good_lines_and_names_each_bad_one(
    kafka: str, registry: str, tmp_path: Path
) -> None:
    lines = [
        json.dumps(
            {
                "event_id": "6b0e4c52-2f39-4c3c-9f0e-0d1c5c4f7a11",
                "marketo_id": 1,
                "changed_at": "2026-03-01T12:00:00Z",
                "sfdc_lead_owner_id": "005x",
            }
        ),
        "{not json",
        json.dumps({"marketo_id": "one"}),
        json.dumps(
            {
                "event_id": "6b0e4c52-2f39-4c3c-9f0e-0d1c5c4f7a12",
                "marketo_id": 2,
                "changed_at": 1772366400000,
            }
        ),
    ]
    path = tmp_path / "people.jsonl"
    path.write_text("\n".join(lines) + "\n")
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka, "SCHEMA_REGISTRY_URL": registry}
    ensure_topics(kafka, specs((PERSON_CHANGES,), 8))
    result = run_cli("produce", PERSON_CHANGES, str(path), env=env)
    assert result.returncode == 1
    assert f"{path}:line 2: not JSON" in result.stderr
    assert f"{path}:line 3: does not match PersonChange" in result.stderr
    assert "published 2 records" in result.stderr
    assert len(read_topic(kafka, PERSON_CHANGES)) == 2


def test_dlq_list_shows_reasons_and_replay_republishes(kafka: str, registry: str) -> None:
    from actions_sync.dead_letter import DeadLetterProducer, dead_letter
    from actions_sync.errors import UndecodableRecord

    ensure_topics(kafka, specs((PERSON_CHANGES,), 8))
    letters = DeadLetterProducer(kafka)
    letters.send([dead_letter(PERSON_CHANGES, 3, 17, b"k", b"v", UndecodableRecord("bad"))])
    letters.close()
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka}
    listed = [
        json.loads(line)
        for line in run_cli("dlq", "list", PERSON_CHANGES, "--json", env=env).stdout.splitlines()
    ]
    assert [(x["error.class"], x["source.offset"], x["key"]) for x in listed] == [
        ("UndecodableRecord", "17", "k")
    ]
    assert "replayed 1 records" in run_cli("dlq", "replay", PERSON_CHANGES, env=env).stderr
    assert "replayed 0 records" in run_cli("dlq", "replay", PERSON_CHANGES, env=env).stderr
    assert len(read_topic(kafka, PERSON_CHANGES)) == 1
    assert len(read_topic(kafka, dlq_topic(PERSON_CHANGES))) == 1


def test_dlq_list_filters_and_replay_selects_on_a_real_broker(kafka: str) -> None:
    from actions_sync.dead_letter import DeadLetterProducer, dead_letter
    from actions_sync.errors import RuleViolation, UndecodableRecord

    ensure_topics(kafka, specs((PERSON_CHANGES,), 8))
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka}
    empty = run_cli("dlq", "list", PERSON_CHANGES, env=env)
    assert (empty.returncode, empty.stdout) == (0, "")
    assert f"no dead letters in {PERSON_CHANGES}.dlq" in empty.stderr
    letters = DeadLetterProducer(kafka)  # the --key letter first: its partition's first
    letters.send(
        [
            dead_letter(PERSON_CHANGES, 0, 1, b"k2", b"v2", RuleViolation("no email")),
            dead_letter(PERSON_CHANGES, 0, 2, b"k1", b"v1", UndecodableRecord("bad avro")),
            dead_letter(PERSON_CHANGES, 0, 3, b"k3", b"v3", RuleViolation("no name")),
        ]
    )
    letters.close()

    def listed(*args: str) -> list[str]:
        result = run_cli("dlq", "list", PERSON_CHANGES, "--json", *args, env=env)
        assert result.returncode == 0, result.stderr
        return sorted(json.loads(line)["key"] for line in result.stdout.splitlines())

    assert listed() == ["k1", "k2", "k3"]
    assert listed("--reason", "ruleVIOLATION") == ["k2", "k3"]
    assert listed("--reason", "bad avro") == ["k1"]
    assert listed("--since", "1h") == ["k1", "k2", "k3"]
    assert listed("--since", "2999-01-01T00:00:00") == []
    human = run_cli("dlq", "list", PERSON_CHANGES, "--reason", "no email", env=env).stdout
    assert "key=k2" in human and "RuleViolation" in human and "no email" in human
    bad = run_cli("dlq", "list", PERSON_CHANGES, "--since", "yesterday", env=env)
    assert bad.returncode == 2 and "--since 'yesterday'" in bad.stderr

    dry = run_cli("dlq", "replay", PERSON_CHANGES, "--dry-run", env=env)
    assert "would replay 3 records" in dry.stderr and dry.stdout.count("key=") == 3
    assert read_topic(kafka, PERSON_CHANGES, idle_s=1) == []
    assert (
        "replayed 1 records"
        in run_cli("dlq", "replay", PERSON_CHANGES, "--key", "k2", env=env).stderr
    )
    assert [m.key() for m in read_topic(kafka, PERSON_CHANGES)] == [b"k2"]
    rest = run_cli("dlq", "replay", PERSON_CHANGES, env=env)
    assert "replayed 2 records" in rest.stderr
    replayed = read_topic(kafka, PERSON_CHANGES)
    assert sorted((m.key(), m.value()) for m in replayed) == [
        (b"k1", b"v1"),
        (b"k2", b"v2"),
        (b"k3", b"v3"),
    ]
    assert all(
        dict(m.headers())["replayed.from"].startswith(f"{PERSON_CHANGES}.dlq/".encode())
        for m in replayed
    )
    assert len(read_topic(kafka, dlq_topic(PERSON_CHANGES))) == 3  # the DLQ keeps its records


def test_top_level_packages_import_from_this_repo() -> None:
    import connectors
    import sandboxes
    import schemas
    import streams

    root = Path(__file__).resolve().parents[2]
    for package in (streams, schemas, connectors, sandboxes):
        assert Path(present(package.__file__)).resolve().is_relative_to(root)


def test_readme_documents_every_setting() -> None:
    from actions_sync.settings import Settings, env_name

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [env_name(f) for f in Settings.model_fields if f"`{env_name(f)}`" not in readme]
    assert missing == []


@pytest.mark.timeout(600)  # `up` waits for every worker: minutes on 2 busy cores
def test_up_runs_the_stack_and_writes_its_endpoints(tmp_path: Path) -> None:
    import signal
    import time

    endpoints = tmp_path / "stack.json"
    with (tmp_path / "up.err").open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "up", "--endpoints-file", str(endpoints)],
            env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/s.db"},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 300  # every worker answers first: slow on a busy machine
        while not endpoints.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        urls = json.loads(endpoints.read_text())
        assert set(urls) >= {
            "kafka",
            "schema_registry",
            "marketo",
            "salesforce",
            "admin",
            "metrics",
        }
        for name in ("schema_registry", "marketo", "salesforce"):
            assert http_client().get(urls[name] + "/_sandbox/journal").status_code == 200
        token = {"Authorization": f"Bearer {urls['admin_token']}"}
        assert http_client().get(urls["admin"] + "/settings").status_code == 401
        assert http_client().get(urls["admin"] + "/settings", headers=token).status_code == 200
        assert set(urls["metrics"]) == {  # one copy of each built flow
            "people-0",
            "activities-0",
            "marketo-sink-0",
            "salesforce-sink-0",
            "unsubscribes-0",
            "salesforce-optout-sink-0",
            "send-check-0",
            "salesforce-source-0",
            "reminders-0",
        }
        while "ready:" not in (said := (tmp_path / "up.err").read_text()):
            assert time.monotonic() < deadline, said  # said right after the file is written
            time.sleep(0.2)
        assert f"logs in {urls['logs']}" in said
        assert f"people-0: {urls['metrics']['people-0']}, log {urls['logs']}" in said
        for url in urls["metrics"].values():  # the file appears once every worker answers
            assert http_client().get(url).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(120) == 0  # ten workers stopping on 2 busy cores
    assert not endpoints.exists()  # removed on exit: a later script never reads stale URLs


def test_broker_command_creates_the_topics_and_leaves_no_orphan() -> None:
    import signal

    from confluent_kafka.admin import AdminClient

    from actions_sync.kafka import admin_config
    from actions_sync.topics import INPUT_TOPICS
    from app.broker import tansu_binary

    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "broker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = present(proc.stdout).readline().strip()
        bootstrap = line.removeprefix("KAFKA_BOOTSTRAP_SERVERS=")
        topics = AdminClient(admin_config(bootstrap)).list_topics(timeout=10).topics
        for name in INPUT_TOPICS:
            assert len(topics[name].partitions) == 8
            assert len(topics[dlq_topic(name)].partitions) == 8
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        present(proc.stdout).close()
    leftover = subprocess.run(
        ["pgrep", "-f", f"{tansu_binary()}.*{bootstrap}"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and leftover.stdout == ""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_readmes_publishing_by_hand_block_works_pasted(tmp_path: Path) -> None:
    """The README's block, run line for line by bash as a user pastes it (its endpoints
    file moved to tmp_path): no race with `up`, no tool the bootstrap does not install."""
    import re

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    block = present(re.search(r"Publishing by hand.*?```sh\n(.*?)```", readme, re.S)).group(1)
    endpoints = tmp_path / "stack.json"
    script = block.replace("/tmp/stack.json", str(endpoints)) + "wait\n"  # `up` has stopped
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ACTIONS_SYNC_")
        and k not in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL")
    }
    result = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=540,
        env={**clean, "DATABASE_URL": f"sqlite:///{tmp_path}/s.db"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "published 1 records to marketo.person.changes; 0 bad lines" in result.stderr
    [ada] = [json.loads(line) for line in result.stdout.splitlines() if '"Ada"' in line]
    assert ada["key"] == "1" and ada["value"]["first_name"] == "Ada"
    assert re.search(
        r"^marketo\.person\.changes  partitions 8  end offsets 1 ", result.stdout, re.M
    )
    assert "no dead letters in marketo.person.changes.dlq" in result.stderr
    assert not endpoints.exists()


def test_env_waits_for_a_running_ups_endpoints_and_skips_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "stack.json"
    stale.write_text(
        json.dumps({"kafka": "old:9092", "schema_registry": "http://old", "pid": 2**22 + 1})
    )  # above pid_max's default: not running
    waited = run_cli("env", str(stale), "--wait", "1")
    assert waited.returncode == 2 and "did not appear within 1s" in waited.stderr
    stale.write_text(
        json.dumps({"kafka": "new:9092", "schema_registry": "http://new", "pid": os.getpid()})
    )
    assert run_cli("env", str(stale)).stdout.splitlines() == [
        "KAFKA_BOOTSTRAP_SERVERS=new:9092",
        "SCHEMA_REGISTRY_URL=http://new",
    ]


def test_the_stack_and_the_broker_remove_the_temp_files_they_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from actions_sync.settings import Settings
    from app.broker import EmbeddedBroker
    from app.stack import Stack

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where they make them
    with EmbeddedBroker() as broker:
        assert broker.log.parent == tmp_path and broker.log.exists()
    settings = Settings(database_url=f"sqlite:///{tmp_path}/s.db")
    with Stack(settings) as stack:
        assert stack.logdir.parent == tmp_path and (stack.logdir / "broker.log").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the store was never opened
    with pytest.raises(RuntimeError), Stack(settings) as failed:
        raise RuntimeError("a failure names the logs: they stay")
    assert (failed.logdir / "broker.log").exists()
