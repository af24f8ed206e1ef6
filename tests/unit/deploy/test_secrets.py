"""Credentials (the settings typed ``SecretStr``: the Redis URL, the SASL and key passwords)
reach fraudstream from the Secret as environment variables: never from a ConfigMap, never on
the command line, in ops/k8s as in docker-compose.yml."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.unit.deploy.manifests import (
    K8S_GPU,
    SECRET_EXAMPLE,
    command_tokens,
    compose_services,
    container,
    container_env,
    kustomization,
    kustomize_build,
    resolved_args,
)
from tests.unit.deploy.pods import (
    SECRET_VALUE,
    placeholder,
    secret_env_names,
    secret_fields,
    secret_flags,
    settings_of,
)

SECRET = "fraudstream-secrets"
# Settings the pods must get from the Secret (the key password only comes with mutual TLS).
POD_SECRETS = ("FRAUDSTREAM_REDIS_URL", "FRAUDSTREAM_SASL_PASSWORD")
SECRET_LOOKING = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|REDIS_URL", re.IGNORECASE)
USERINFO_PASSWORD = re.compile(r"://[^/@\s:]*:[^/@\s]+@")
"""``scheme://user:password@``: a URL that carries a password."""


def _built() -> list[dict[str, Any]]:
    """Everything the GPU overlay applies: the base's documents and the GPU replica."""
    return kustomize_build(K8S_GPU)


def _deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _built() if d["kind"] == "Deployment"}


def _example() -> dict[str, Any]:
    doc = yaml.safe_load(SECRET_EXAMPLE.read_text())
    assert isinstance(doc, dict)
    return doc


def test_the_credentials_are_the_settings_typed_secret() -> None:
    assert {"redis_url", "sasl_password", "ssl_key_password"} <= secret_fields()
    assert set(POD_SECRETS) <= secret_env_names()
    assert {"--redis-url", "--sasl-password"} <= secret_flags()


def test_no_config_map_holds_a_credential() -> None:
    maps = [d for d in _built() if d["kind"] == "ConfigMap"]
    assert {m["metadata"]["name"] for m in maps} == {
        "fraudstream",
        "fraudstream-serve",
        "fraudstream-labels",
    }
    for config_map in maps:
        name = config_map["metadata"]["name"]
        for key, value in config_map["data"].items():
            assert key not in secret_env_names(), f"{name}: {key} belongs in the Secret"
            assert not SECRET_LOOKING.search(key), f"{name}: {key} looks like a credential"
            assert not USERINFO_PASSWORD.search(str(value)), f"{name}: {key} holds a password"


def test_every_pod_takes_each_credential_from_the_secret_by_name() -> None:
    example = _example()
    assert example["metadata"]["name"] == SECRET
    assert "secret.example.yaml" not in kustomization(K8S_GPU.parent / "base")["resources"]
    deployments = _deployments()
    assert set(deployments) == {
        "fraudstream-serve",
        "fraudstream-serve-gpu",
        "fraudstream-labels",
    }
    for name, deployment in deployments.items():
        env = {e["name"]: e for e in container(deployment).get("env", [])}
        for variable in POD_SECRETS:
            assert variable in env, f"{name} does not get {variable}"
            ref = env[variable]["valueFrom"]["secretKeyRef"]
            # Named key, not optional: a Secret without it stops the pod from starting.
            assert ref == {"name": SECRET, "key": variable}, name
            assert variable in example["stringData"]
        assert not any(source.get("secretRef") for source in container(deployment)["envFrom"])
    assert set(example["stringData"]) <= secret_env_names()


def test_no_argument_carries_a_credential() -> None:
    for name, deployment in _deployments().items():
        c = container(deployment)
        tokens = [str(t) for t in c.get("command", []) + c["args"]]
        for token in tokens:
            assert token.split("=", 1)[0] not in secret_flags(), f"{name}: {token}"
            for variable in secret_env_names():
                assert f"$({variable})" not in token, f"{name}: {token}"
        for token in resolved_args(c):
            assert not USERINFO_PASSWORD.search(token), f"{name}: {token}"


@pytest.mark.parametrize(
    "name", ["fraudstream-serve", "fraudstream-serve-gpu", "fraudstream-labels"]
)
def test_each_pod_builds_its_settings_with_the_credentials_from_its_environment(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = container(_deployments()[name])
    settings = settings_of(resolved_args(c), container_env(c), monkeypatch)
    assert settings.redis_url.get_secret_value() == placeholder("FRAUDSTREAM_REDIS_URL")
    assert settings.sasl_password.get_secret_value() == SECRET_VALUE
    assert settings.security_protocol == "SASL_SSL"
    assert settings.sasl_mechanism and settings.sasl_username


def test_the_keda_scaler_reads_the_sasl_password_from_the_same_secret() -> None:
    [auth] = [d for d in _built() if d["kind"] == "TriggerAuthentication"]
    [ref] = auth["spec"]["secretTargetRef"]
    assert (ref["name"], ref["key"]) == (SECRET, "FRAUDSTREAM_SASL_PASSWORD")


def test_compose_passes_the_redis_url_in_the_environment_not_on_the_command_line() -> None:
    services = compose_services()
    for name in ("serve", "serve-gpu", "labels"):
        tokens = command_tokens(services[name])
        assert not {t.split("=", 1)[0] for t in tokens} & secret_flags(), name
        assert not any(USERINFO_PASSWORD.search(t) for t in tokens), name
        assert services[name]["environment"]["FRAUDSTREAM_REDIS_URL"] == "redis://redis:6379/0"


@pytest.mark.parametrize("name", ["serve", "serve-gpu", "labels"])
def test_each_compose_service_builds_its_settings_with_the_redis_url_from_its_environment(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = compose_services()[name]
    settings = settings_of(command_tokens(service), service["environment"], monkeypatch)
    assert settings.redis_url.get_secret_value() == "redis://redis:6379/0"
