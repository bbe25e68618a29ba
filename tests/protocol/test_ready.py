"""GET /readyz: readiness follows the feedback database; /healthz (liveness) does not. The
service starts with the database down (unready, feedback 503) and recovers when it is back."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine

from tests.protocol.conftest import patient_view
from tests.support.databases import (
    Forwarder,
    free_port,
    postgres_schema_url,
    postgres_unreachable_reason,
)


def test_ready_when_the_database_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready"}


def test_not_ready_503_when_the_database_is_gone_but_still_alive(app, client):
    store = app.extensions["myocds"].store
    working = store.engine
    # The database goes away under the running service: nothing listens on port 1.
    store.engine = create_engine(
        "postgresql+psycopg://myocds@127.0.0.1:1/gone", connect_args={"connect_timeout": 2}
    )
    try:
        response = client.get("/readyz")
        alive = client.get("/healthz")
    finally:
        store.engine.dispose()
        store.engine = working
    assert response.status_code == 503
    issue = response.get_json()["issue"][0]
    assert issue["code"] == "transient"
    assert "feedback database" in issue["diagnostics"]
    assert "127.0.0.1" not in response.get_data(as_text=True)  # no connection details leak
    assert alive.status_code == 200  # liveness does not follow the database
    assert client.get("/readyz").status_code == 200  # and readiness comes back with it


def test_readiness_and_liveness_need_no_token(make_app, settings):
    client = make_app(settings.with_overrides(auth="required")).test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/cds-services").status_code == 401  # while the services do


def test_readyz_is_in_the_openapi_document(client):
    document = client.get("/openapi.json").get_json()
    responses = document["paths"]["/readyz"]["get"]["responses"]
    assert {"200", "503"} <= set(responses)


# --- the database down at start-up, then back: no restart -----------------------------------

FEEDBACK_URL = "/cds-services/myopathy-review/feedback"


def _feedback_body() -> dict:
    return {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden",
                          "outcomeTimestamp": "2025-07-01T10:00:00Z"}]}


def _assert_store_unavailable(response) -> None:
    assert response.status_code == 503
    [issue] = response.get_json()["issue"]
    assert issue["code"] == "transient"
    assert "feedback database cannot be reached" in issue["diagnostics"]
    assert "127.0.0.1" not in response.get_data(as_text=True)


def _down_then_up(app, bring_up) -> None:
    client = app.test_client()
    assert client.get("/readyz").status_code == 503
    _assert_store_unavailable(client.post(FEEDBACK_URL, json=_feedback_body()))
    assert client.get("/healthz").status_code == 200
    # Advice does not need the store: the call is answered, only its cards are not recorded.
    call = client.post("/cds-services/myopathy-review", json=patient_view())
    assert call.status_code == 200, call.get_data(as_text=True)
    bring_up()
    assert client.get("/readyz").status_code == 200
    body = _feedback_body()
    assert client.post(FEEDBACK_URL, json=body).status_code == 200
    store = app.extensions["myocds"].store
    assert [row["card_uuid"] for row in store.feedback_rows()] == [body["feedback"][0]["card"]]


def test_starts_with_an_unusable_sqlite_path_and_recovers_when_it_is_usable(
    make_app, settings, tmp_path
):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the database directory should be")
    app = make_app(settings.with_overrides(database_url=f"sqlite:///{blocker / 'db.sqlite3'}"))

    def bring_up() -> None:
        blocker.unlink()
        blocker.mkdir()

    _down_then_up(app, bring_up)


@pytest.mark.postgres
def test_starts_with_postgresql_down_and_recovers_when_it_answers(make_app, settings):
    reason = postgres_unreachable_reason()
    if reason is not None:
        pytest.skip(reason)
    port = free_port()
    forwarder = Forwarder(port)
    with postgres_schema_url() as url:
        down = url.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
        try:
            _down_then_up(make_app(settings.with_overrides(database_url=down)), forwarder.start)
        finally:
            forwarder.stop()
