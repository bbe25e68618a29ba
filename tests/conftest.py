"""Shared fixtures: settings, the app and its test client, and the patient scenarios.

A test that takes a ``scenario`` argument runs once per scenario file: the project's own set in
``tests/scenarios`` always, and the reference set in ``../shared/scenarios`` whenever that folder
exists (``MYOCDS_SCENARIOS_DIR`` points elsewhere). The test id is the set and the file name,
``own/<name>`` or ``shared/<name>``, so each scenario is its own test and ``-k own`` picks a set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.settings import Settings

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
