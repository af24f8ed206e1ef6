"""ops/k8s: commands, probes, ports, shutdown grace, secrets and autoscaling agree with the CLI."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from fraudstream.stream.cli import build_parser
from tests.unit.deploy.contract import check_command, env_names, flag_value, split_command
from tests.unit.deploy.manifests import (
    K8S,
    K8S_BASE,
    container,
    container_env,
    k8s,
    k8s_documents,
    partitions_default,
    resolved_args,
    serve_shutdown_default_s,
)

DEPLOYMENTS = {"serve": ("serve",), "labels": ("features", "run")}
SECRET = "fraudstream-secrets"
PORT_FLAGS = {"serve": "--metrics-port", "labels": "--web-port"}
# librdkafka's sasl.mechanism to the KEDA Kafka scaler's `sasl` value.
KEDA_SASL = {
    "PLAIN": "plaintext",
    "SCRAM-SHA-256": "scram_sha256",
    "SCRAM-SHA-512": "scram_sha512",
    "GSSAPI": "gssapi",
    "OAUTHBEARER": "oauthbearer",
}


def _deployment(name: str) -> dict[str, Any]:
    return k8s("Deployment", f"fraudstream-{name}")


def _port(c: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port, resolving a container port name."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert port in named, f"no container port named {port}"
    return int(named[port])


def _setting(name: str, flag: str) -> str | None:
    """What the process gets for a setting: the flag, else its FRAUDSTREAM_ variable."""
    c = container(_deployment(name))
    given = flag_value(resolved_args(c), flag)
    env = "FRAUDSTREAM_" + flag.removeprefix("--").replace("-", "_").upper()
    return given if given is not None else container_env(c).get(env)


def test_every_manifest_is_in_the_kustomization_but_the_secret_example() -> None:
    assert yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"] == ["base"]
    kustomization = yaml.safe_load((K8S_BASE / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S_BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"secret.example.yaml"}
    kinds = {(d["kind"], d["metadata"]["name"]) for d in k8s_documents() if "metadata" in d}
    assert ("Secret", SECRET) in kinds


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_the_container_command_is_accepted_by_the_cli(name: str) -> None:
    args = resolved_args(container(_deployment(name)))
    assert tuple(args[: len(DEPLOYMENTS[name])]) == DEPLOYMENTS[name]
    assert check_command(build_parser(), args) == []


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_every_fraudstream_variable_is_a_setting_of_the_command(name: str) -> None:
    c = container(_deployment(name))
    known = env_names(build_parser(), DEPLOYMENTS[name])
    given = {k for k in container_env(c) if k.startswith("FRAUDSTREAM_")}
    assert given - known == set(), "unknown names are silently ignored by the settings"


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_probes_and_the_service_use_the_port_the_command_opens(name: str) -> None:
    deployment = _deployment(name)
    c = container(deployment)
    port = int(_setting(name, PORT_FLAGS[name]) or 0)
    ready, live = c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"]
    assert _port(c, ready["port"]) == _port(c, live["port"]) == port
    assert ready["path"] == ("/readyz" if name == "serve" else "/healthz")
    assert live["path"] == "/healthz"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == port
    service = k8s("Service", f"fraudstream-{name}")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    ports = service["spec"]["ports"]
    assert [(p["name"], p["port"], _port(c, p["targetPort"])) for p in ports] == [
        ("metrics", port, port)
    ]


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_the_selector_matches_the_pods(name: str) -> None:
    spec = _deployment(name)["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()


def test_serve_mounts_the_registry_it_is_given() -> None:
    c = container(_deployment("serve"))
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    registry = _setting("serve", "--registry")
    assert registry in mounts and mounts[registry]["readOnly"] is True


def test_termination_grace_outlasts_serve_shutdown_bound() -> None:
    given = _setting("serve", "--shutdown-timeout-s")
    bound = float(given) if given is not None else serve_shutdown_default_s()
    grace = _deployment("serve")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > bound
    assert grace > serve_shutdown_default_s(), "also when the ConfigMap leaves it out"
    assert grace == 45


def test_serve_and_the_label_pipeline_use_different_consumer_groups() -> None:
    assert _setting("serve", "--group-id") == "fraudstream"
    assert _setting("labels", "--group-id") not in (None, "fraudstream")


def test_replicas_are_a_share_of_the_partitions() -> None:
    partitions = partitions_default()
    assert partitions == 6
    replicas = _deployment("serve")["spec"]["replicas"]
    assert 1 <= replicas <= partitions and partitions % replicas == 0


def test_resources_are_requested_and_memory_is_bounded() -> None:
    for name in DEPLOYMENTS:
        resources = container(_deployment(name))["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert "memory" in resources["limits"]


def _scaled_object() -> dict[str, Any]:
    return k8s("ScaledObject", "fraudstream-serve")


def test_keda_scales_serve_on_its_group_lag_up_to_the_partition_count() -> None:
    spec = _scaled_object()["spec"]
    assert spec["scaleTargetRef"]["name"] == _deployment("serve")["metadata"]["name"]
    replicas = _deployment("serve")["spec"]["replicas"]
    assert 1 <= spec["minReplicaCount"] <= replicas <= spec["maxReplicaCount"]
    assert spec["maxReplicaCount"] <= partitions_default()
    [trigger] = spec["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert meta["consumerGroup"] == _setting("serve", "--group-id")
    topic = _setting("serve", "--input-topic") or "transactions"
    assert meta["topic"] == topic == "transactions"
    assert int(meta["lagThreshold"]) > 0
    assert meta["bootstrapServers"] == _setting("serve", "--bootstrap-servers")


def test_keda_authenticates_like_serve() -> None:
    trigger = _scaled_object()["spec"]["triggers"][0]
    meta = trigger["metadata"]
    assert meta["sasl"] == KEDA_SASL[_setting("serve", "--sasl-mechanism") or ""]
    assert (meta.get("tls") == "enable") == (
        _setting("serve", "--security-protocol") in ("SSL", "SASL_SSL")
    )
    auth = k8s("TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
    secret = k8s("Secret", SECRET)
    [password] = auth["secretTargetRef"]
    assert password["parameter"] == "password"
    assert password["name"] == secret["metadata"]["name"]
    assert password["key"] in secret["stringData"]
    [user] = auth["env"]
    c = container(_deployment("serve"))
    assert user["containerName"] == c["name"]
    assert user["name"] in {e["name"] for e in c["env"]}


def test_rollouts_never_start_a_replica_that_would_own_no_partition() -> None:
    strategy = _deployment("serve")["spec"]["strategy"]
    if _scaled_object()["spec"]["maxReplicaCount"] == partitions_default():
        assert strategy["rollingUpdate"]["maxSurge"] == 0
        assert strategy["rollingUpdate"]["maxUnavailable"] >= 1


def test_the_subcommands_exist_in_the_cli() -> None:
    for path in DEPLOYMENTS.values():
        assert split_command(build_parser(), list(path)).path == path
