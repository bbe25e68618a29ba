"""GET /readyz: readiness follows the feedback database; /healthz (liveness) does not."""

from __future__ import annotations

from sqlalchemy import create_engine


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
