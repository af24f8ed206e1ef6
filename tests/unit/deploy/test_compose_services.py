"""docker-compose.yml's fraudstream services, Prometheus and Grafana: commands, health, ports."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from fraudstream.stream.cli import build_parser
from tests.infra import ROOT
from tests.unit.deploy.contract import check_command, flag_value
from tests.unit.deploy.manifests import (
    GRAFANA,
    LABEL_SERVICES,
    PROMETHEUS,
    SERVE_SERVICES,
    command_tokens,
    compose,
    compose_services,
    duration_s,
    port_flag,
    serve_shutdown_default_s,
)

FRAUDSTREAM_SERVICES = SERVE_SERVICES + LABEL_SERVICES
_URL = re.compile(r"http://(?:localhost|127\.0\.0\.1):(\d+)(/[\w/.-]*)")


def _health_url(service: dict[str, Any]) -> tuple[int, str]:
    test = service["healthcheck"]["test"]
    match = _URL.search(" ".join(test) if isinstance(test, list) else test)
    assert match, f"no local http URL in {test}"
    return int(match.group(1)), match.group(2)


def test_the_project_and_every_service_health_check() -> None:
    doc = compose()
    assert doc["name"] == "fraudstream"
    expected = {*FRAUDSTREAM_SERVICES, "prometheus", "grafana", "kafka", "topics", "redis"}
    assert expected <= set(doc["services"])
    for name, service in doc["services"].items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"


@pytest.mark.parametrize("name", FRAUDSTREAM_SERVICES)
def test_each_command_is_accepted_by_the_cli(name: str) -> None:
    tokens = command_tokens(compose_services()[name])
    assert check_command(build_parser(), tokens) == []


def test_the_commands_are_serve_and_features_run_against_the_compose_brokers() -> None:
    services = compose_services()
    for name in FRAUDSTREAM_SERVICES:
        tokens = command_tokens(services[name])
        want = ["serve"] if name in SERVE_SERVICES else ["features", "run"]
        assert tokens[: len(want)] == want
        assert flag_value(tokens, "--bootstrap-servers") == "kafka:19092"
        # The Redis URL comes from the environment (see test_secrets).
        assert services[name]["environment"]["FRAUDSTREAM_REDIS_URL"] == "redis://redis:6379/0"
    for name in SERVE_SERVICES:
        tokens = command_tokens(services[name])
        assert flag_value(tokens, "--registry") == "/models"
        assert "./var/registry:/models:ro" in services[name]["volumes"]
    assert flag_value(command_tokens(services["serve-gpu"]), "--device") == "cuda"


def test_the_scorer_and_the_label_pipeline_use_different_consumer_groups() -> None:
    """serve and serve-gpu share one group on purpose (each transaction decided once, by the
    scorer owning its partition; see the compose file); the label pipeline has its own."""
    services = compose_services()
    groups = {
        n: flag_value(command_tokens(services[n]), "--group-id")
        for n in services
        if n in FRAUDSTREAM_SERVICES
    }
    assert groups["serve"] == groups["serve-gpu"] == "fraudstream"
    assert groups["labels"] not in (None, groups["serve"])


@pytest.mark.parametrize("name", FRAUDSTREAM_SERVICES)
def test_health_checks_probe_the_port_the_command_opens(name: str) -> None:
    service = compose_services()[name]
    tokens = command_tokens(service)
    assert _health_url(service) == (int(flag_value(tokens, port_flag(tokens)) or 0), "/healthz")
    assert service["healthcheck"]["test"][:2] == ["CMD", "python"], "the slim image has no curl"


def test_services_start_after_kafka_redis_and_the_topics() -> None:
    for name in FRAUDSTREAM_SERVICES:
        deps = compose_services()[name]["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"
        # topics exits once done; a one-shot never reports healthy.
        assert deps["topics"]["condition"] == "service_completed_successfully"


def test_stop_grace_outlasts_the_shutdown_bound() -> None:
    services = compose_services()
    for name in SERVE_SERVICES:
        given = flag_value(command_tokens(services[name]), "--shutdown-timeout-s")
        bound = float(given) if given else serve_shutdown_default_s()
        assert duration_s(services[name]["stop_grace_period"]) > bound
    for name in LABEL_SERVICES:
        assert duration_s(services[name]["stop_grace_period"]) > 10


def test_the_gpu_scorer_is_an_optional_profile_with_a_gpu_reservation() -> None:
    services = compose_services()
    assert "profiles" not in services["serve"]
    gpu = services["serve-gpu"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def _scrape_targets() -> dict[str, set[tuple[str, int]]]:
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets: dict[str, set[tuple[str, int]]] = {}
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        found = targets.setdefault(job["job_name"], set())
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                found.add((host, int(port)))
        for dns in job.get("dns_sd_configs", []):
            assert dns["type"] == "A"
            found.update((host, int(dns["port"])) for host in dns["names"])
    return targets


def test_prometheus_scrapes_every_fraudstream_service_on_its_port() -> None:
    services = compose_services()
    scraped: set[str] = set()
    for job, targets in _scrape_targets().items():
        for host, port in targets:
            if job == "prometheus":
                assert (host, port) == ("localhost", 9090)
                continue
            assert host in FRAUDSTREAM_SERVICES, f"{job}: {host} is no fraudstream service"
            tokens = command_tokens(services[host])
            assert port == int(flag_value(tokens, port_flag(tokens)) or 0), (job, host)
            scraped.add(host)
    assert scraped == set(FRAUDSTREAM_SERVICES)


def test_prometheus_and_grafana_mount_the_files_kept_in_ops() -> None:
    services = compose_services()
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    assert (
        "./ops/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
        in services["prometheus"]["volumes"]
    )
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    for name, port, path in (("prometheus", 9090, "/-/healthy"), ("grafana", 3000, "/api/health")):
        service = services[name]
        assert service["healthcheck"]["test"][:2] == ["CMD", "wget"]
        assert _health_url(service) == (port, path)
        assert f"{port}:{port}" in service["ports"]


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboards() -> None:
    grafana = compose_services()["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["./ops/grafana/provisioning"] == "/etc/grafana/provisioning"
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert [(d["type"], d["url"]) for d in datasources] == [
        ("prometheus", "http://prometheus:9090")
    ]
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/fraudstream.yml").read_text())[
        "providers"
    ]
    assert [p["options"]["path"] for p in providers] == [mounts["./ops/grafana/dashboards"]]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == mounts["./ops/grafana/dashboards"] + "/fraudstream.json"
