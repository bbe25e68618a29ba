"""Shared fixtures: settings, the app and its test client, and the patient scenarios.

A test that takes a ``scenario`` argument runs once per scenario file: the project's own set in
``tests/scenarios`` always, and the reference set in ``../shared/scenarios`` whenever that folder
exists (``MYOCDS_SCENARIOS_DIR`` points elsewhere). The test id is the set and the file name,
``own/<name>`` or ``shared/<name>``, so each scenario is its own test and ``-k own`` picks a set.

Fixtures more than one folder uses are here too: signing keys and an issuers file for tests that
turn authentication on, the production JSON log handler on a buffer, and a minimal valid call.
"""

from __future__ import annotations

import io
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.logs import JsonFormatter, ScrubFilter
from cds_service.settings import Settings
from tests.support.signing import FHIR_SERVER, ISS, JKU, SigningKey

REPO_ROOT = Path(__file__).resolve().parent.parent
# The project's own scenarios, written here (tests/scenarios/README.md gives the format).
OWN_SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
# The reference set beside the repository, read in place (never copied) when it is there.
SHARED_SCENARIO_DIR = Path(
    os.environ.get("MYOCDS_SCENARIOS_DIR", REPO_ROOT.parent / "shared" / "scenarios")
)
SCENARIO_SETS: tuple[tuple[str, Path], ...] = (
    ("own", OWN_SCENARIO_DIR),
    ("shared", SHARED_SCENARIO_DIR),
)


def scenario_paths() -> dict[str, Path]:
    """Every scenario file by test id (``own/<stem>``, ``shared/<stem>``), set by set, in name
    order; a set whose folder does not exist contributes nothing."""
    return {
        f"{name}/{path.stem}": path
        for name, directory in SCENARIO_SETS
        if directory.is_dir()
        for path in sorted(directory.glob("*.json"))
    }


def load_scenarios() -> dict[str, dict[str, Any]]:
    """Every scenario by test id (see ``scenario_paths``)."""
    return {
        key: json.loads(path.read_text(encoding="utf-8")) for key, path in scenario_paths().items()
    }


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "scenario" in metafunc.fixturenames:
        scenarios = load_scenarios()
        # The own set ships with the repository: none found is a broken checkout, not a skip.
        own = [key for key in scenarios if key.startswith("own/")]
        assert own, f"no scenarios in {OWN_SCENARIO_DIR}"
        metafunc.parametrize("scenario", list(scenarios.values()), ids=list(scenarios))


@pytest.fixture(scope="session")
def scenarios() -> dict[str, dict[str, Any]]:
    return load_scenarios()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Test settings: authentication off, a fresh SQLite store, the real clock (tests pin today
    with ``settings.with_overrides(today=...)`` where the date matters). The FHIR deadline is
    generous so that tests about data and cards do not fail on a loaded CI machine; the tests
    about deadlines and timeouts set their own. The public base URL is the test client's (with
    authentication required the service does not start without one)."""
    return Settings().with_overrides(
        auth="off",
        # The test client's root URL: the JWT aud of tests that turn authentication on.
        public_base_url="http://localhost",
        database_url=f"sqlite:///{tmp_path / 'myocds.sqlite3'}",
        fhir_timeout_seconds=10.0,
        hook_deadline_seconds=20.0,
    )


@pytest.fixture
def redis_url() -> str:
    """Database 15 of the Redis at 127.0.0.1:6379 (the test is skipped when it is unreachable)."""
    import redis

    url = "redis://127.0.0.1:6379/15"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at 127.0.0.1:6379 is unreachable ({type(exc).__name__})")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A feedback database URL, once on SQLite and once on a fresh PostgreSQL schema."""
    from tests.support.databases import postgres_schema_url, postgres_unreachable_reason

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite3'}"
        return
    reason = postgres_unreachable_reason()
    if reason is not None:
        pytest.skip(reason)
    with postgres_schema_url() as url:
        yield url


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    application = create_app(settings)
    yield application
    application.extensions["myocds"].store.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def make_app() -> Iterator[Callable[[Settings], Flask]]:
    """An app factory for tests that need other settings; disposes every store it opened."""
    made: list[Flask] = []

    def make(settings: Settings) -> Flask:
        application = create_app(settings)
        made.append(application)
        return application

    yield make
    for application in made:
        application.extensions["myocds"].store.dispose()


# Made once per session: RSA key generation is the slow part of the authentication tests.
@pytest.fixture(scope="session")
def rs384() -> SigningKey:
    return SigningKey.generate("RS384", "rs384-key")


@pytest.fixture(scope="session")
def es384() -> SigningKey:
    return SigningKey.generate("ES384", "es384-key")


@pytest.fixture
def issuers_file(tmp_path: Path) -> Callable[..., str]:
    """Writes an issuers file with one entry for ``ISS`` (fields overridable); returns its path."""

    def write(**entry: Any) -> str:
        document = {"issuers": [{"iss": ISS, "jku": [JKU], "fhirServers": [FHIR_SERVER], **entry}]}
        path = tmp_path / f"issuers-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(document))
        return str(path)

    return write


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """A JSON handler like the production one, on the root logger, writing to a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ScrubFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


@pytest.fixture
def pv_body() -> dict[str, Any]:
    """A minimal valid patient-view call with a complete (empty) prefetch: no FHIR fetch. Each
    empty Bundle is its own object, so a test may change one."""
    searches = ("observations", "medicationRequests", "medicationAdministrations",
                "medicationStatements", "conditions")
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/example", "patientId": "pat-1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "pat-1", "gender": "female",
                        "birthDate": "1960-04-02"},
            **{name: {"resourceType": "Bundle", "type": "searchset", "total": 0}
               for name in searches},
        },
    }
