"""Sites for the policy and feedback tests: one issuer with two tenants and a second issuer, each
signing with its own key, in one issuers file; requests built from the shipped examples."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.services import find_service
from cds_service.settings import Settings
from cds_service.tryit.examples import View, load_examples, request_body
from tests.support.signing import SigningKey

BASE_URL = "https://cds.policy.example"
HOSPITALS = "https://ehr.hospitals.example"  # one issuer, two tenants (two hospitals)
CLINIC = "https://ehr.clinic.example"  # another issuer
TODAY = date(2025, 7, 1)  # the examples' own date: their cards as written


@dataclass(frozen=True)
class Site:
    iss: str
    tenant: str | None
    key: SigningKey

    @property
    def label(self) -> str:
        return f"{self.iss} tenant {self.tenant}" if self.tenant else self.iss  # as reported

    def token(self, path: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.iss, "aud": BASE_URL + path, "iat": now, "exp": now + 300,
            "jti": str(uuid.uuid4()),
        }
        if self.tenant:
            claims["tenant"] = self.tenant
        return jwt.encode(claims, self.key.private, algorithm=self.key.alg,
                          headers={"kid": self.key.kid, "typ": "JWT"})

    def headers(self, path: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(path)}"}


@pytest.fixture(scope="session")
def site_keys() -> dict[str, SigningKey]:
    names = ("north", "south", "clinic")
    return {name: SigningKey.generate("ES384", f"{name}-key") for name in names}


@pytest.fixture(scope="session")
def sites(site_keys: dict[str, SigningKey]) -> dict[str, Site]:
    return {
        "north": Site(HOSPITALS, "north", site_keys["north"]),
        "south": Site(HOSPITALS, "south", site_keys["south"]),
        "clinic": Site(CLINIC, None, site_keys["clinic"]),
    }


def issuer_entry(site: Site, **policy: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"iss": site.iss, "jwks": site.key.jwks(), **policy}
    if site.tenant:
        entry["tenant"] = site.tenant
    return entry


@pytest.fixture
def write_issuers(tmp_path: Path) -> Callable[..., str]:
    def write(*entries: dict[str, Any]) -> str:
        path = tmp_path / f"issuers-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps({"issuers": list(entries)}))
        return str(path)

    return write


@pytest.fixture
def policy_settings(write_issuers: Callable[..., str], sites: dict[str, Site],
                    tmp_path: Path) -> Settings:
    """North doses IVIG on adjusted weight, south on actual weight and has CONT-02 off; the
    clinic keeps the defaults (ideal weight, every rule on)."""
    issuers = write_issuers(
        issuer_entry(sites["north"], settings={"ivig_dosing_weight": "adjusted"}),
        issuer_entry(sites["south"], settings={"ivig_dosing_weight": "actual"},
                     disabledRules=["CONT-02"]),
        issuer_entry(sites["clinic"]),
    )
    return Settings(
        auth="required", public_base_url=BASE_URL, issuers_file=issuers, today=TODAY,
        database_url=f"sqlite:///{tmp_path / 'policy.sqlite3'}",
    )


@pytest.fixture
def policy_app(policy_settings: Settings) -> Flask:
    return create_app(policy_settings)


@pytest.fixture
def policy_client(policy_app: Flask) -> FlaskClient:
    return policy_app.test_client()


def example_call(name: str, service_id: str, hook: str | None = None) -> dict[str, Any]:
    """The request an EHR sends for a shipped example on its own date."""
    example = load_examples().get(name)
    view = View(example, hook or example.hook, example.draft)
    service = find_service(service_id, view.hook)
    assert service is not None
    return request_body(view, service, TODAY)


def call(client: FlaskClient, site: Site, service_id: str, body: dict[str, Any]) -> list[dict]:
    path = f"/cds-services/{service_id}"
    response = client.post(path, json=body, headers=site.headers(path))
    assert response.status_code == 200, response.get_json()
    cards: list[dict] = response.get_json()["cards"]
    return cards


def card_of(cards: list[dict], rule: str) -> dict | None:
    return next((c for c in cards if c["source"]["topic"]["code"] == rule), None)
