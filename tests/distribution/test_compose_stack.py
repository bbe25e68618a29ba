"""``docker/compose.yaml`` and its one-shot steps, checked without Docker: the file has the
properties the stack promises, the issuer step's key signs calls the service accepts, the
loader's Bundles are R4 transactions, and the loader and the call step's no-prefetch calls work
against the local FHIR test server exactly as they run in the stack."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask import Flask

from cds_service.cli import main
from cds_service.services import SERVICES
from cds_service.settings import Settings
from cds_service.tryit.examples import load_examples, record_on
from tests.support.fhir_server import FhirTestServer
from tests.support.served import clean_env, on_loopback

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse the compose file")

DOCKER = Path(__file__).resolve().parents[2] / "docker"
TODAY = date(2031, 3, 17)  # not an example's own date: everything is moved to it


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, DOCKER / "loader" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


load_examples_script = _script("load_examples")
make_issuer_script = _script("make_issuer")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def _call_runs(compose: dict[str, Any]) -> list[tuple[str, str]]:
    """(hook, example) of every call the call step makes."""
    script = compose["services"]["call"]["command"][0]
    return [tuple(run.split()) for run in re.findall(r'"([a-z-]+ [a-z0-9-]+)"', script)]


def test_every_port_is_published_on_loopback_only(compose: dict[str, Any]) -> None:
    published = [(name, port) for name, service in compose["services"].items()
                 for port in service.get("ports", ())]
    assert {name for name, _ in published} == {"myocds", "hapi"}
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), (name, port)


def test_the_service_runs_with_authentication_on_an_issuer_of_the_stacks_own(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    env = services["myocds"]["environment"]
    assert env["MYOCDS_AUTH"] == "required"
    assert "MYOCDS_TRY" not in env and "MYOCDS_TRUST_SANDBOX" not in env
    issuer = services["issuer"]["command"]
    assert issuer[:2] == ["python", "/opt/loader/make_issuer.py"]
    keys_dir = _option(issuer, "--out")
    assert env["MYOCDS_ISSUERS_FILE"] == f"{keys_dir}/{make_issuer_script.ISSUERS}"
    assert f"keys:{keys_dir}" in services["issuer"]["volumes"]
    assert f"keys:{keys_dir}:ro" in services["myocds"]["volumes"]
    assert services["myocds"]["depends_on"]["issuer"]["condition"] == (
        "service_completed_successfully"
    )
    settings = Settings.from_env({k: str(v) for k, v in env.items()})
    assert settings.auth == "required"


def test_the_fhir_server_is_one_and_the_same_everywhere(compose: dict[str, Any]) -> None:
    services = compose["services"]
    fhir = _option(services["issuer"]["command"], "--fhir-server")
    assert fhir == "http://hapi:8080/fhir"
    assert services["myocds"]["environment"]["MYOCDS_FHIR_ALLOW"] == fhir
    assert _option(services["loader"]["command"], "--fhir-server") == fhir
    assert services["call"]["environment"]["STACK_FHIR_SERVER"] == fhir
    assert services["call"]["environment"]["STACK_ISSUER"] == _option(
        services["issuer"]["command"], "--iss"
    )
    assert services["loader"]["depends_on"]["hapi"]["condition"] == "service_started"
    assert not services["hapi"]["image"].endswith(":latest")


def test_the_call_step_fires_every_hook_without_prefetch_after_the_load(
    compose: dict[str, Any],
) -> None:
    call = compose["services"]["call"]
    assert call["depends_on"]["loader"]["condition"] == "service_completed_successfully"
    assert call["depends_on"]["myocds"]["condition"] == "service_healthy"
    script = call["command"][0]
    command = shlex.split(script[script.index("myocds call"):].replace("\\\n", " "))
    assert "--no-prefetch" in command and "--private-key" in command
    assert _option(command, "--url") == "http://myocds:8080"
    runs = _call_runs(compose)
    assert {hook for hook, _ in runs} == {s.hook for s in SERVICES}
    names = load_examples().names()
    assert all(example in names for _, example in runs)


@pytest.mark.parametrize("example", load_examples().names())
def test_the_loaders_bundles_are_r4_transactions(example: str) -> None:
    from fhir.resources.R4B.bundle import Bundle

    bundle = load_examples_script.transaction_bundle(load_examples().get(example), TODAY)
    moved = record_on(load_examples().get(example), TODAY)
    problem = load_examples_script.r4_problem(bundle)
    if problem is not None:
        # Skipped by the loader: then the example itself is not valid R4 (flawed EHR data on
        # purpose), never because of what the loader did to it.
        assert load_examples_script.r4_problem(moved) is not None, problem
        return
    parsed = Bundle.parse_obj(bundle)
    assert parsed.type == "transaction"
    urls = [e.request.url for e in parsed.entry]
    assert all(e.request.method == "PUT" for e in parsed.entry)
    assert urls == [f"{e.resource.resource_type}/{e.resource.id}" for e in parsed.entry]
    assert len(set(urls)) == len(urls)
    patient = load_examples().get(example).patient_id
    assert f"Patient/{patient}" in urls
    # Every other id carries the patient's, so the examples do not overwrite each other.
    others = [u.split("/", 1)[1] for u in urls if u != f"Patient/{patient}"]
    assert others and all(i.startswith(f"{patient}-") for i in others)
    # The record as the try-it page shows it on TODAY, ids aside.
    assert [_without_id(e["resource"]) for e in bundle["entry"]] == [
        _without_id(_rewritten(e["resource"], patient)) for e in moved["entry"]
    ]


def _without_id(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "id"}


def _rewritten(resource: dict[str, Any], patient: str) -> dict[str, Any]:
    """References to the record's own resources, renamed as the loader names them."""
    text = json.dumps(resource)
    text = re.sub(r'"reference": "(?!Patient/)([A-Za-z]+)/([^"]+)"',
                  rf'"reference": "\1/{patient}-\2"', text)
    return dict(json.loads(text))


def test_no_two_examples_share_a_resource_on_the_server() -> None:
    seen: dict[str, str] = {}
    for example in load_examples():
        for entry in load_examples_script.transaction_bundle(example, TODAY)["entry"]:
            url = entry["request"]["url"]
            assert seen.setdefault(url, example.name) == example.name, url


@pytest.fixture
def fhir() -> Iterator[FhirTestServer]:
    server = FhirTestServer().start()
    yield server
    server.stop()


class Local:
    """The stack's commands as compose runs them, with this machine in place of the containers:
    the FHIR test server for HAPI, the app on loopback for the service, a temporary folder for
    the keys volume, the repository's docker/loader for /opt/loader, this venv's python."""

    def __init__(self, fhir: FhirTestServer, keys: Path) -> None:
        self.fhir, self.keys, self.url = fhir, keys, ""

    def text(self, value: str) -> str:
        value = value.replace("$$", "$").replace("http://hapi:8080/fhir", self.fhir.base_url)
        value = value.replace("/opt/loader/", f"{DOCKER}/loader/").replace("/keys", str(self.keys))
        return value.replace("http://myocds:8080", self.url) if self.url else value

    def env(self, service: dict[str, Any]) -> dict[str, str]:
        env = clean_env(**{k: self.text(str(v)) for k, v in service.get("environment", {}).items()})
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["MYOCDS_TODAY"] = TODAY.isoformat()  # the date the service below is pinned to
        return env

    def run(self, service: dict[str, Any], argv: list[str]) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable if a == "python" else self.text(a) for a in argv]
        return subprocess.run(argv, env=self.env(service), capture_output=True, text=True,
                              timeout=300, cwd=self.keys.parent)


@pytest.fixture
def stack(
    fhir: FhirTestServer, tmp_path: Path, settings: Settings,
    make_app: Callable[[Settings], Flask], compose: dict[str, Any],
) -> Iterator[Local]:
    """The issuer step run as compose runs it (its command; the entrypoint's chown of the keys
    volume to the service's user aside), then the service with authentication on, trusting the
    issuer it wrote."""
    local = Local(fhir, tmp_path / "keys")
    services = compose["services"]
    made = local.run(services["issuer"], services["issuer"]["command"])
    assert made.returncode == 0, made.stderr
    env = services["myocds"]["environment"]
    app = make_app(settings.with_overrides(
        auth=env["MYOCDS_AUTH"], issuers_file=local.text(env["MYOCDS_ISSUERS_FILE"]),
        fhir_allow=(local.text(env["MYOCDS_FHIR_ALLOW"]),),
        public_base_url=env["MYOCDS_PUBLIC_BASE_URL"], today=TODAY,
    ))
    with on_loopback(app) as url:
        local.url = url
        yield local


def test_the_loader_and_the_call_step_against_a_fhir_server(
    stack: Local, fhir: FhirTestServer, compose: dict[str, Any],
) -> None:
    services = compose["services"]
    loaded = stack.run(services["loader"], services["loader"]["command"])
    assert loaded.returncode == 0, loaded.stderr
    valid = [e for e in load_examples() if load_examples_script.r4_problem(
        load_examples_script.transaction_bundle(e, TODAY)) is None]
    assert {name for _, name in _call_runs(compose)} <= {e.name for e in valid}
    assert loaded.stdout.count("loaded ") == len(valid)
    assert loaded.stdout.count("skipped ") == len(load_examples()) - len(valid)
    patients = [e["resource"]["id"] for e in fhir.record["entry"]
                if e["resource"]["resourceType"] == "Patient"]
    assert sorted(patients) == sorted(e.patient_id for e in valid)

    fhir.reset()
    call = services["call"]
    called = stack.run(call, [*call["entrypoint"], *call["command"]])
    assert called.returncode == 0, called.stdout + called.stderr
    sections = re.split(r"^### ", called.stdout, flags=re.M)[1:]
    assert [section.split()[0] for section in sections] == [h for h, _ in _call_runs(compose)]
    for section, (_, name) in zip(sections, _call_runs(compose), strict=True):
        expected = {e.topic for e in load_examples().get(name).expect}
        assert expected and expected <= set(re.findall(r"  \(([A-Z]+-\d+)\)$", section, re.M))
    # No prefetch was sent: the service read each patient from the FHIR server itself.
    for _, name in _call_runs(compose):
        assert f"Patient/{load_examples().get(name).patient_id}" in fhir.paths()
    assert len([p for p in fhir.paths() if p == "Observation"]) >= len(sections)


def test_the_service_of_the_stack_refuses_an_unsigned_call(
    stack: Local, capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["call", "--hook", "patient-view", "--example", "statin-ck-over-10x",
                   "--url", stack.url])
    assert status == 2 and "HTTP 401" in capsys.readouterr().err
