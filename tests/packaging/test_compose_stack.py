"""``docker/compose.yaml`` and its one-shot steps, checked without Docker: the file has the
properties the stack promises, the issuer step's key signs calls the service accepts, the
loader's Bundles are R4 transactions, and the loader and the call step's no-prefetch calls work
against the local FHIR test server exactly as they run in the stack."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
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
from tests.support.served import on_loopback

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


@pytest.fixture
def stack(
    fhir: FhirTestServer, tmp_path: Path, settings: Settings,
    make_app: Callable[[Settings], Flask], compose: dict[str, Any],
) -> Iterator[tuple[str, Path, str]]:
    """The stack's steps on loopback: the issuer step's files, the service with authentication
    on trusting them, the FHIR test server in HAPI's place."""
    iss = _option(compose["services"]["issuer"]["command"], "--iss")
    keys = tmp_path / "keys"
    assert make_issuer_script.main(
        ["--out", str(keys), "--iss", iss, "--fhir-server", fhir.base_url]
    ) == 0
    public = compose["services"]["myocds"]["environment"]["MYOCDS_PUBLIC_BASE_URL"]
    app = make_app(settings.with_overrides(
        auth="required", issuers_file=str(keys / make_issuer_script.ISSUERS), today=TODAY,
        fhir_allow=(fhir.base_url,), public_base_url=public,
    ))
    with on_loopback(app) as url:
        yield url, keys, iss


def test_the_loader_and_the_no_prefetch_calls_against_a_fhir_server(
    stack: tuple[str, Path, str], fhir: FhirTestServer, compose: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, keys, iss = stack
    assert load_examples_script.main(
        ["--fhir-server", fhir.base_url, "--today", TODAY.isoformat(), "--wait", "5"]
    ) == 0
    loaded = capsys.readouterr().out
    valid = [e for e in load_examples() if load_examples_script.r4_problem(
        load_examples_script.transaction_bundle(e, TODAY)) is None]
    assert {name for _, name in _call_runs(compose)} <= {e.name for e in valid}
    assert loaded.count("loaded ") == len(valid)
    assert loaded.count("skipped ") == len(load_examples()) - len(valid)
    patients = [e["resource"]["id"] for e in fhir.record["entry"]
                if e["resource"]["resourceType"] == "Patient"]
    assert sorted(patients) == sorted(e.patient_id for e in valid)
    public = compose["services"]["call"]["environment"]["STACK_PUBLIC_BASE_URL"]
    assert public == compose["services"]["myocds"]["environment"]["MYOCDS_PUBLIC_BASE_URL"]
    signing = ["--private-key", str(keys / make_issuer_script.PRIVATE_KEY), "--issuer", iss,
               "--audience", public]
    for hook, name in _call_runs(compose):
        fhir.reset()
        status = main(["call", "--hook", hook, "--example", name, "--no-prefetch",
                       "--fhir-server", fhir.base_url, "--url", url, "--today", TODAY.isoformat(),
                       *signing])
        out = capsys.readouterr().out
        assert status == 0, out
        expected = {e.topic for e in load_examples().get(name).expect}
        assert expected and expected <= set(re.findall(r"  \(([A-Z]+-\d+)\)$", out, re.M)), out
        searched = {path for path in fhir.paths()}
        assert "Observation" in searched, searched  # the service fetched the record itself
    # Authentication is on: the same call unsigned is refused.
    status = main(["call", "--hook", "patient-view", "--example", "statin-ck-over-10x",
                   "--no-prefetch", "--fhir-server", fhir.base_url, "--url", url])
    assert status == 2 and "HTTP 401" in capsys.readouterr().err
