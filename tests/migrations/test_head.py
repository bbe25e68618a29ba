"""A served process whose feedback database is at head never loads Alembic (issue 14: ~10 MB of
each worker's memory); ``migrations.HEAD`` is the head Alembic reads from the scripts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from cds_service import migrations
from cds_service.commands.migrate import migrate_database
from cds_service.commands.serve import in_child

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_head_constant_is_alembics_head_of_the_shipped_scripts():
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(Path(migrations.__file__).parent))
    assert migrations.HEAD == scripts.get_current_head() == migrations.head()


def test_a_call_on_a_database_at_head_does_not_load_alembic(tmp_path):
    url = f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
    assert "migrated from empty" in migrate_database(url)
    script = textwrap.dedent(
        f"""
        import json, sys
        from cds_service import create_app
        from cds_service.settings import Settings
        app = create_app(Settings().with_overrides(auth="off", database_url={url!r}))
        client = app.test_client()
        body = {{"hook": "patient-view", "hookInstance": "7b7b4c4e-1f0e-4a8e-9d3c-2c1a6f1b2c3d",
                "context": {{"patientId": "p1", "userId": "Practitioner/1"}},
                "prefetch": {{"patient": {{"resourceType": "Patient", "id": "p1"}},
                             "observations": None, "medicationRequests": None,
                             "medicationAdministrations": None,
                             "medicationStatements": None, "conditions": None}}}}
        ready = client.get("/readyz")  # the store's first use: its schema checked at head
        answer = client.post("/cds-services/myopathy-review", json=body)
        print(json.dumps([ready.status_code, answer.status_code, "alembic" in sys.modules]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ready, status, alembic_loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert (ready, status) == (200, 200)
    assert alembic_loaded is False


def test_a_database_behind_head_is_still_migrated_on_first_use(tmp_path):
    from sqlalchemy import create_engine, text

    from tests.support.databases import upgrade_to

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        upgrade_to(connection, "0002")
    assert migrations.needs_upgrade(engine)
    assert migrations.upgrade(engine) == ("0002", migrations.HEAD)
    assert not migrations.needs_upgrade(engine)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
            migrations.HEAD
        )
    engine.dispose()


def _import_json_tool_and_answer(answer: str) -> bool:
    import json.tool  # noqa: F401 - imported in the child only

    return answer == "yes"


def test_in_child_keeps_the_childs_imports_and_returns_its_answer():
    sys.modules.pop("json.tool", None)
    assert in_child(_import_json_tool_and_answer, "yes") is True
    assert "json.tool" not in sys.modules
    assert in_child(_import_json_tool_and_answer, "no") is False


def _fail(_: str) -> bool:
    raise RuntimeError("boom")


def test_in_child_reports_a_failure_as_false(capfd):
    assert in_child(_fail, "x") is False
    assert "RuntimeError: boom" in capfd.readouterr().err
