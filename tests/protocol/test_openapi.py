"""``GET /openapi.json`` and schemathesis against it (the WSGI app, in process).

Schemathesis generates schema-valid and schema-invalid requests for every documented operation
and checks each answer against the document: no 5xx, documented status codes, content types and
response schemas (a card response for 200, an OperationOutcome for every error), 405 for
undocumented methods, and with authentication on, that a request without the JWT is refused.
"""

from __future__ import annotations

import json
import socket
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import responses
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from cds_service import create_app
from cds_service.protocol.openapi import openapi_document
from cds_service.services import SERVICES
from cds_service.settings import Settings
from tests.support.signing import BASE_URL, SigningKey
from tests.support.strategies import DEAD_FHIR, local_only_getaddrinfo

_DATABASE = Path(tempfile.mkdtemp(prefix="myocds-openapi-")) / "st.sqlite3"
_SETTINGS = Settings().with_overrides(
    auth="off",
    database_url=f"sqlite:///{_DATABASE}",
    today=date(2026, 1, 15),
    fhir_allow=(DEAD_FHIR,),
    fhir_timeout_seconds=0.5,
    hook_deadline_seconds=1.0,
)
APP = create_app(_SETTINGS)
SCHEMA = schemathesis.openapi.from_wsgi("/openapi.json", APP)

# A 412 (prefetch incomplete, no fhirServer) or 422 answers schema-valid requests by design: the
# request schema cannot say which data the rules need. The other checks all stay on.
EXCLUDED = [positive_data_acceptance]
SENT: list[int] = []


@pytest.fixture(autouse=True)
def no_dns_beyond_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A generated fhirServer like https://0.com must never make us query DNS or the network."""
    local_only = local_only_getaddrinfo(socket.getaddrinfo, "test")
    monkeypatch.setattr(socket, "getaddrinfo", local_only)


def test_document_is_openapi_31_and_lists_every_service() -> None:
    response = APP.test_client().get("/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    for service in SERVICES:
        operation = document["paths"][f"/cds-services/{service.id}"]["post"]
        assert (
            service.hook
            in operation["requestBody"]["content"]["application/json"]["schema"]["allOf"][1][
                "properties"
            ]["hook"]["enum"]
        )
        for status in ("400", "401", "404", "412", "413", "415"):
            error = operation["responses"][status]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/OperationOutcome"}
        assert f"/cds-services/{service.id}/feedback" in document["paths"]
    assert {"/cds-services", "/healthz"} <= set(document["paths"])


def test_every_component_schema_is_valid_2020_12_and_every_ref_resolves() -> None:
    document = openapi_document(_SETTINGS)
    components = document["components"]["schemas"]
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    for schema in components.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, ref
            node = node[part]


def test_security_scheme_is_declared_when_auth_is_on() -> None:
    document = openapi_document(_SETTINGS.with_overrides(auth="required"))
    assert document["paths"]["/cds-services"]["get"]["security"] == [{"cdsHooksJwt": []}]
    assert document["paths"]["/healthz"]["get"]["security"] == []
    scheme = document["components"]["securitySchemes"]["cdsHooksJwt"]
    assert (scheme["scheme"], scheme["bearerFormat"]) == ("bearer", "JWT")


@SCHEMA.parametrize()
@settings(
    max_examples=10,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_schemathesis(case: Any) -> None:
    SENT.append(1)
    case.call_and_validate(excluded_checks=EXCLUDED)


# --- with authentication on: every generated request carries a fresh valid token --------------

_KEY = SigningKey.generate("ES384", "schemathesis-key")


def _auth_app() -> Any:
    issuers = Path(tempfile.mkdtemp(prefix="myocds-openapi-")) / "issuers.json"
    entry = {
        "iss": "https://ehr.test.example",
        "jwks": _KEY.jwks(),
        "fhirServers": ["https://fhir.test.example/r4"],
    }
    issuers.write_text(json.dumps({"issuers": [entry]}))
    return create_app(
        _SETTINGS.with_overrides(
            auth="required",
            issuers_file=str(issuers),
            public_base_url=BASE_URL,
            database_url=f"sqlite:///{issuers.parent / 'auth.sqlite3'}",
        )
    )


AUTH_APP = _auth_app()
AUTH_SCHEMA = schemathesis.openapi.from_wsgi("/openapi.json", AUTH_APP)


@AUTH_SCHEMA.parametrize()
@settings(
    max_examples=4,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_schemathesis_with_authentication(case: Any) -> None:
    SENT.append(1)
    token = _KEY.token(aud=BASE_URL + case.formatted_path, header={"jku": None})
    with responses.RequestsMock(assert_all_requests_are_fired=False):
        # The ignored_auth check replays the case without the token and expects 401.
        case.call_and_validate(
            headers={"Authorization": f"Bearer {token}"}, excluded_checks=EXCLUDED
        )


def test_schemathesis_sent_requests() -> None:
    if not SENT:
        pytest.skip("run with the schemathesis tests above")
    print(f"schemathesis cases: {len(SENT)}")
    assert len(SENT) >= 1000, len(SENT)
