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


def test_kubernetes_pod_meets_the_restricted_pod_security_profile() -> None:
    docs = _k8s()
    labels = docs["Namespace"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    template = docs["Deployment"]["spec"]["template"]
    pod = template["spec"]
    [container] = pod["containers"]
    pod_security, security = pod["securityContext"], container["securityContext"]
    # Kubernetes "restricted": each of these on the container or inherited from the pod.
    for name, wanted in (("runAsNonRoot", True), ("seccompProfile", {"type": "RuntimeDefault"})):
        assert security.get(name, pod_security.get(name)) == wanted, name
    assert pod_security["runAsUser"] != 0 and security.get("runAsUser") != 0
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert not security["capabilities"].get("add")
    assert security["readOnlyRootFilesystem"] is True
    assert not security.get("privileged")
    assert pod["automountServiceAccountToken"] is False
    assert not any(pod.get(name) for name in ("hostNetwork", "hostPID", "hostIPC"))
    # What must be written has an emptyDir: /tmp, and /dev/shm (gunicorn heartbeats, metrics).
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounted = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    for path in ("/tmp", "/dev/shm"):
        assert "emptyDir" in volumes[mounted[path]], path
        assert volumes[mounted[path]]["emptyDir"]["sizeLimit"]
    # No hostPath volumes (not allowed by the profile).
    assert not any("hostPath" in v for v in pod["volumes"])


def _ports(rule: dict[str, Any]) -> set[tuple[str, int]]:
    return {(p.get("protocol", "TCP"), int(p["port"])) for p in rule.get("ports", [])}


def test_network_policy_allows_egress_only_to_dns_database_redis_and_https() -> None:
    docs = _k8s()
    policy = docs["NetworkPolicy"]["spec"]
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    allowed: dict[frozenset[tuple[str, int]], list[dict[str, Any]]] = {}
    for rule in policy["egress"]:
        assert rule.get("ports"), "an egress rule without ports allows every port"
        assert rule.get("to"), "an egress rule without peers allows every destination"
        allowed[frozenset(_ports(rule))] = rule["to"]
    assert set(allowed) == {
        frozenset({("UDP", 53), ("TCP", 53)}),
        frozenset({("TCP", 5432)}),
        frozenset({("TCP", 6379)}),
        frozenset({("TCP", 443)}),
    }
    dns = allowed[frozenset({("UDP", 53), ("TCP", 53)})]
    assert dns[0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert allowed[frozenset({("TCP", 5432)})][0]["podSelector"]["matchLabels"] == {
        "app": "postgres"
    }
    assert allowed[frozenset({("TCP", 6379)})][0]["podSelector"]["matchLabels"] == {
        "app": "redis"
    }
    # HTTPS only to addresses outside the private, link-local (cloud metadata) and CGNAT ranges.
    import ipaddress

    blocks = [peer["ipBlock"] for peer in allowed[frozenset({("TCP", 443)})]]
    assert {b["cidr"] for b in blocks} == {"0.0.0.0/0", "::/0"}
    excluded = [ipaddress.ip_network(c) for b in blocks for c in b.get("except", [])]
    for address in ("10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
                    "127.0.0.1", "fd00::1", "fe80::1", "::ffff:10.0.0.1", "64:ff9b::a00:1"):
        assert any(ipaddress.ip_address(address) in net for net in excluded), address
    # Only the service port comes in.
    assert [_ports(rule) for rule in policy["ingress"]] == [{("TCP", 8080)}]
    [container] = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert {p["containerPort"] for p in container["ports"]} == {8080}


def test_kubernetes_workers_one_per_cpu_of_the_limit() -> None:
    # README "Scaling out": one worker per core (the work is CPU-bound Python).
    [container] = _k8s()["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    cpu = str(container["resources"]["limits"]["cpu"])
    cores = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    assert int(env["MYOCDS_WORKERS"]) == cores
    assert int(env["MYOCDS_THREADS"]) >= 1
