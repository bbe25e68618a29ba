"""Authentication through the HTTP interface: discovery, service call and feedback.

Every refused token gets the same answer (401, ``WWW-Authenticate: Bearer``, one generic
OperationOutcome), so a caller learns nothing about which check failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from cds_service.settings import Settings
from tests.support.signing import BASE_URL, JKU, SigningKey

SERVICE = "myopathy-review"
DISCOVERY = "/cds-services"
CALL = f"/cds-services/{SERVICE}"
FEEDBACK = f"/cds-services/{SERVICE}/feedback"
PATIENT_ID = "trust-pt-1"
REPO_ROOT = Path(__file__).resolve().parents[2]


def call_body() -> dict[str, Any]:
    """A patient-view call with a complete prefetch: answerable without any FHIR fetch."""
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"patientId": PATIENT_ID, "userId": "Practitioner/trust-1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": PATIENT_ID, "gender": "female"},
            "observations": None,
            "medicationRequests": None,
            "medicationAdministrations": None,
            "medicationStatements": None,
            "conditions": None,
        },
    }


def feedback_body() -> dict[str, Any]:
    return {
        "feedback": [
            {
                "card": str(uuid.uuid4()),
                "outcome": "overridden",
                "outcomeTimestamp": "2026-01-15T10:00:00Z",
            }
        ]
    }


REQUESTS: dict[str, tuple[str, str, Callable[[], dict[str, Any]] | None]] = {
    "discovery": ("GET", DISCOVERY, None),
    "service": ("POST", CALL, call_body),
    "feedback": ("POST", FEEDBACK, feedback_body),
}


@pytest.fixture
def auth_app(
    settings: Settings,
    make_app: Callable[[Settings], Flask],
    issuers_file: Callable[..., str],
    rs384: SigningKey,
    es384: SigningKey,
) -> Iterator[Flask]:
    auth_settings = settings.with_overrides(
        auth="required", issuers_file=issuers_file(), public_base_url=BASE_URL
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JKU, json={"keys": [rs384.jwk, es384.jwk]})
        yield make_app(auth_settings)


@pytest.fixture
def auth_client(auth_app: Flask) -> FlaskClient:
    return auth_app.test_client()


def send(client: FlaskClient, which: str, authorization: str | None) -> Any:
    method, path, body = REQUESTS[which]
    headers = {"Authorization": authorization} if authorization is not None else {}
    if method == "GET":
        return client.get(path, headers=headers)
    return client.post(path, json=body() if body else None, headers=headers)


def assert_bare_401(response: Any) -> None:
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [issue["code"] for issue in outcome["issue"]] == ["login"]


@pytest.mark.parametrize("which", list(REQUESTS))
@pytest.mark.parametrize("key_name", ["rs384", "es384"])
def test_valid_token_is_accepted(
    request: pytest.FixtureRequest, auth_client: FlaskClient, which: str, key_name: str
) -> None:
    key: SigningKey = request.getfixturevalue(key_name)
    path = REQUESTS[which][1]
    response = send(auth_client, which, f"Bearer {key.token(aud=BASE_URL + path)}")
    assert response.status_code == 200, response.get_data(as_text=True)


def _attacks(key: SigningKey, aud: str) -> dict[str, str | None]:
    """Each attack as the Authorization header it sends."""
    import base64

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    good = key.token(aud=aud)
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["iss"] = "https://ehr.test.example"
    claims["tenant"] = "tampered"
    none_header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": key.kid}).encode())
    return {
        "alg-none": f"Bearer {none_header}.{payload}.",
        "expired": f"Bearer {key.token(aud=aud, now=time.time() - 900)}",
        "not-yet-valid": f"Bearer {key.token(aud=aud, nbf=int(time.time()) + 900)}",
        "wrong-aud": f"Bearer {key.token(aud=BASE_URL + '/cds-services/other')}",
        "unknown-iss": f"Bearer {key.token(aud=aud, iss='https://attacker.example')}",
        "jku-not-allowed": f"Bearer {key.token(aud=aud, header={'jku': 'https://x.example/j'})}",
        "unknown-kid": f"Bearer {key.token(aud=aud, header={'kid': 'nobody'})}",
        "tampered": f"Bearer {header}.{b64(json.dumps(claims).encode())}.{signature}",
        "missing-header": None,
        "malformed-header": f"Token {good}",
    }


ATTACKS = (
    "alg-none", "expired", "not-yet-valid", "wrong-aud", "unknown-iss", "jku-not-allowed",
    "unknown-kid", "tampered", "missing-header", "malformed-header",
)  # fmt: skip


@pytest.mark.parametrize("which", list(REQUESTS))
@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_is_a_bare_401(
    auth_client: FlaskClient, es384: SigningKey, which: str, attack: str
) -> None:
    header = _attacks(es384, BASE_URL + REQUESTS[which][1])[attack]
    response = send(auth_client, which, header)
    assert_bare_401(response)


def test_all_refusals_look_identical(auth_client: FlaskClient, es384: SigningKey) -> None:
    assert set(_attacks(es384, BASE_URL + CALL)) == set(ATTACKS)
    bodies = {
        attack: send(auth_client, "service", header).get_data()
        for attack, header in _attacks(es384, BASE_URL + CALL).items()
    }
    assert len(set(bodies.values())) == 1, bodies


@pytest.mark.parametrize("which", list(REQUESTS))
def test_replayed_token_is_a_bare_401(
    auth_client: FlaskClient, es384: SigningKey, which: str
) -> None:
    token = es384.token(aud=BASE_URL + REQUESTS[which][1])
    assert send(auth_client, which, f"Bearer {token}").status_code == 200
    assert_bare_401(send(auth_client, which, f"Bearer {token}"))


def test_hs256_signed_with_the_public_key_is_a_bare_401(
    auth_client: FlaskClient, rs384: SigningKey
) -> None:
    import base64
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import serialization

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    pem = rs384.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _, payload, _ = rs384.token(aud=BASE_URL + CALL).split(".")
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": rs384.kid}).encode())
    signature = b64(hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    assert_bare_401(send(auth_client, "service", f"Bearer {header}.{payload}.{signature}"))


def test_unauthenticated_call_is_refused_before_the_body_is_read(
    auth_client: FlaskClient,
) -> None:
    # Not JSON at all: had the body been read first, this would be 415.
    response = auth_client.post(CALL, data=b"\x00" * 100, content_type="application/octet-stream")
    assert_bare_401(response)


def test_cors_preflight_needs_no_token(auth_client: FlaskClient) -> None:
    response = auth_client.options(
        CALL,
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code in (200, 204)


EVIL = "http://evil.example"


@pytest.mark.parametrize("which", list(REQUESTS))
@pytest.mark.parametrize(
    "forged",
    [
        {},
        {"X-Forwarded-Proto": "http", "X-Forwarded-Host": "evil.example"},
        {"Forwarded": "proto=http;host=evil.example"},
    ],
    ids=["host", "host+x-forwarded", "host+forwarded"],
)
def test_a_token_for_the_host_the_client_names_is_refused(
    auth_app: Flask, es384: SigningKey, which: str, forged: dict[str, str]
) -> None:
    # Minted for the URL the attacker makes the request look like it was sent to.
    method, path, body = REQUESTS[which]
    token = es384.token(aud=EVIL + path)
    client = auth_app.test_client()
    headers = {"Authorization": f"Bearer {token}", "Host": "evil.example", **forged}
    response = client.open(path, method=method, json=body() if body else None,
                           headers=headers, base_url=EVIL)
    assert_bare_401(response)
    # The same request with a token for the configured public URL is accepted.
    good = {**headers, "Authorization": f"Bearer {es384.token(aud=BASE_URL + path)}"}
    accepted = client.open(path, method=method, json=body() if body else None,
                           headers=good, base_url=EVIL)
    assert accepted.status_code == 200, accepted.get_data(as_text=True)


def test_forwarded_headers_from_a_trusted_proxy_do_not_move_the_audience_either(
    settings: Settings,
    make_app: Callable[[Settings], Flask],
    issuers_file: Callable[..., str],
    es384: SigningKey,
) -> None:
    app = make_app(settings.with_overrides(
        auth="required", issuers_file=issuers_file(jku=[], jwks=es384.jwks()),
        public_base_url=BASE_URL, trusted_proxies=("127.0.0.1",),
    ))
    client = app.test_client()
    headers = {"X-Forwarded-Proto": "http", "X-Forwarded-Host": "evil.example"}
    token = es384.token(aud=EVIL + DISCOVERY, header={"jku": None})
    response = client.get(DISCOVERY, headers={"Authorization": f"Bearer {token}", **headers},
                          environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert_bare_401(response)


def test_authentication_required_without_a_public_base_url_does_not_start(
    settings: Settings, issuers_file: Callable[..., str]
) -> None:
    from cds_service import create_app
    from cds_service.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="needs MYOCDS_PUBLIC_BASE_URL"):
        create_app(settings.with_overrides(
            auth="required", issuers_file=issuers_file(), public_base_url=None
        ))


@pytest.mark.parametrize(
    "url", ["cds.example.org", "ftp://cds.example.org", "https://", "https://cds.example.org/?x=1",
            "https://cds.example.org/#top", "https://cds.example.org:port"],
)
def test_a_public_base_url_that_is_not_a_base_url_does_not_start(
    settings: Settings, issuers_file: Callable[..., str], url: str
) -> None:
    from cds_service import create_app
    from cds_service.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="MYOCDS_PUBLIC_BASE_URL must be an http"):
        create_app(settings.with_overrides(
            auth="required", issuers_file=issuers_file(), public_base_url=url
        ))


def test_serve_without_a_public_base_url_says_so_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYOCDS_")}
    env.update(MYOCDS_AUTH="required", MYOCDS_DATABASE_URL=f"sqlite:///{tmp_path / 'db'}",
               MYOCDS_PORT="1")
    result = subprocess.run(
        [sys.executable, "-m", "cds_service.cli", "serve"], env=env, cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "myocds: cannot start: MYOCDS_AUTH=required needs MYOCDS_PUBLIC_BASE_URL, the base URL "
        "clients call (e.g. https://cds.example.org): the JWT aud is checked against it"
    )


def test_caller_fhir_allow_list_reaches_the_fhir_fetch(
    auth_client: FlaskClient, es384: SigningKey
) -> None:
    # A valid caller whose call needs a fallback fetch from a server outside its issuer's list.
    body = call_body()
    del body["prefetch"]["observations"]
    body["fhirServer"] = "https://fhir.attacker.example/r4"
    token = es384.token(aud=BASE_URL + CALL)
    response = auth_client.post(CALL, json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 412
    (issue,) = response.get_json()["issue"]
    assert "allow-list of the calling issuer" in issue["diagnostics"]
