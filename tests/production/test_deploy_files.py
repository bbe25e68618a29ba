"""The container and cluster files, checked by reading (no Docker engine here): they parse, every
file they copy exists, every MYOCDS_* variable they set is one the service reads, and the pieces
that must agree (ports, labels, probes, names) do."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from cds_service.settings import Settings

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse the deployment files")

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER = REPO_ROOT / "docker"


def known_variables() -> set[str]:
    """Every MYOCDS_* variable the service reads (settings, cards directory)."""
    sources = [REPO_ROOT / "cds_service" / "settings.py",
               REPO_ROOT / "cds_service" / "cards_render" / "templates.py"]
    names: set[str] = set()
    for source in sources:
        names |= set(re.findall(r'"(MYOCDS_[A-Z0-9_]+)"', source.read_text()))
    return names


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_known_variables_are_found() -> None:
    names = known_variables()
    assert {"MYOCDS_AUTH", "MYOCDS_DATABASE_URL", "MYOCDS_METRICS_PUBLIC"} <= names


def test_dockerfile_runs_as_non_root_with_a_healthcheck_and_copies_what_exists() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD .*/healthz", text, re.M)
    assert re.search(r'^CMD \["myocds", "serve"\]', text, re.M)
    copied = re.findall(r"^COPY (.+) \S+$", text, re.M)
    sources = [source for line in copied for source in line.split()]
    assert sources
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
    # What the package reads beside itself at run time is in the image.
    for needed in ("cards", "fhir_mappings", "examples", "cds_service", "pyproject.toml"):
        assert needed in sources
    for name in re.findall(r"\b(MYOCDS_[A-Z0-9_]+)=", text):
        assert name in known_variables()


def test_dockerignore_keeps_the_context_small_but_not_what_is_copied() -> None:
    ignored = {line.strip() for line in (DOCKER / "Dockerfile.dockerignore").read_text()
               .splitlines() if line.strip() and not line.startswith("#")}
    assert {".venv", ".git", "var"} <= ignored
    assert not ignored & {"cds_service", "cards", "fhir_mappings", "examples", "pyproject.toml",
                          "README.md"}


def test_compose_stack() -> None:
    compose = load(DOCKER / "compose.yaml")
    services = compose["services"]
    assert {"myocds", "postgres", "redis", "hapi"} <= set(services)
    myocds = services["myocds"]
    context = (DOCKER / myocds["build"]["context"]).resolve()
    assert (context / myocds["build"]["dockerfile"]).is_file()
    env = myocds["environment"]
    assert set(env) <= known_variables()
    assert env["MYOCDS_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in env["MYOCDS_DATABASE_URL"]
    assert env["MYOCDS_REDIS_URL"].startswith("redis://redis:6379")
    assert env["MYOCDS_FHIR_ALLOW"].startswith("http://hapi:8080/")
    assert myocds["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"]
    assert not services["hapi"]["image"].endswith(":latest")
    # The values parse as settings.
    Settings.from_env({k: str(v) for k, v in env.items()})


def _k8s() -> dict[str, dict[str, Any]]:
    documents = {}
    for path in sorted((DOCKER / "k8s").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            documents[document["kind"]] = document
    return documents


def test_kubernetes_deployment_service_and_autoscaler_agree() -> None:
    docs = _k8s()
    assert {"Deployment", "Service", "HorizontalPodAutoscaler"} <= set(docs)
    deployment, service, hpa = docs["Deployment"], docs["Service"], docs["HorizontalPodAutoscaler"]
    template = deployment["spec"]["template"]
    labels = template["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    [container] = template["spec"]["containers"]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in port_names
    # Liveness must not follow the database (an outage would restart every replica);
    # readiness does, so a replica without its store leaves the load balancer.
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert container[probe]["httpGet"]["path"] == path
        assert container[probe]["httpGet"]["port"] in port_names
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert template["spec"]["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e for e in container["env"]}
    assert set(env) <= known_variables()
    assert env["MYOCDS_AUTH"]["value"] == "required"
    assert "secretKeyRef" in env["MYOCDS_DATABASE_URL"]["valueFrom"]  # no password in the file
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert mounts <= {v["name"] for v in template["spec"]["volumes"]}
    assert container["resources"]["limits"]["memory"]
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # Prometheus is told where /metrics is, and can read it without a CDS client JWT.
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) in port_names.values()
    assert env["MYOCDS_METRICS_PUBLIC"]["value"] == "on"
