"""The same report rows through `handoff report ... --format` and `GET /reports/<name>?format=`."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import URL

from orchestrator.api import create_app
from orchestrator.apikeys import create_key
from orchestrator.cli import main
from orchestrator.clock import FrozenClock
from orchestrator.config import Settings
from orchestrator.db import unit_of_work
from orchestrator.models import Owner
from orchestrator.reports.catalog import run_report
from orchestrator.runtime import Runtime
from tests.conftest import T0
from tests.reports.fixture import SINCE, UNTIL


@pytest.fixture
def world(fresh_database: URL, engine: Any, sessions: Any) -> Any:
    with unit_of_work(sessions) as session:
        rep = session.query(Owner).one()
        keys = {role: create_key(session, name=role, role=role, now=T0) for role in ("admin", "leader", "ingest")}
        keys["rep"] = create_key(session, name="rep", role="rep", owner=rep, now=T0)
    return fresh_database, engine, sessions, keys


def _cli(url: URL, *args: str) -> Any:
    env = {"HANDOFF_DATABASE_URL": url.render_as_string(hide_password=False), "HANDOFF_CONFIG": None}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_cli_prints_the_catalog_rows_as_json_csv_and_a_table(world: Any) -> None:
    url, _engine, sessions, _keys = world
    # The command's period ends now (the wall clock): ten years back holds every run, the early one too.
    expected = run_report("oversight", sessions=sessions, since=SINCE - timedelta(days=365), until=UNTIL)
    assert [row["runs"] for row in expected if row["step"] == "notify"] == [7]
    as_json = json.loads(_cli(url, "report", "oversight", "--since", "3650d", "--format", "json").output)
    assert as_json["rows"] == expected
    as_csv = list(csv.DictReader(io.StringIO(_cli(url, "report", "noise", "--since", "3650d",
                                                  "--format", "csv").output)))
    assert [row["step"] for row in as_csv] == ["empty", "approve", "notify", "stamp"]
    assert (as_csv[0]["rated"], as_csv[0]["not_useful"]) == ("0", "0")
    lines = _cli(url, "report", "oversight", "--since", "3650d").output.splitlines()
    assert lines[0].split()[:3] == ["playbook", "step", "oversight"]
    assert any("rubber stamp: consider on the loop" in line and "stamp" in line for line in lines)
    trend = json.loads(_cli(url, "report", "sla", "--since", "3650d", "--by", "team,week", "--format", "json").output)
    assert [(row["group"], row["week"], row["tasks"]) for row in trend["rows"]] == [("red", "2026-W48", 11)]
    assert "nothing recorded" in _cli(url, "report", "sla", "--since", "3650d", "--team", "blue").output
    wrong = _cli(url, "report", "sla", "--by", "colour")
    assert wrong.exit_code == 2 and "--by" in wrong.output and "Traceback" not in wrong.output
    bad = _cli(url, "report", "noise", "--since", "3 business days")
    assert bad.exit_code != 0 and "--since" in bad.output and "Traceback" not in bad.output


def test_api_exports_json_and_csv_to_leaders_and_admins_only(world: Any) -> None:
    url, engine, sessions, keys = world
    runtime = Runtime(settings=Settings(database_url=engine.url, exception_owner="ops@acme.example"),
                      engine=engine, sessions=sessions, clock=FrozenClock(UNTIL))
    client = create_app(runtime=runtime).test_client()

    def get(path: str, key: str) -> Any:
        return client.get(path, headers={"Authorization": f"Bearer {keys[key]}"})

    answer = get(f"/reports/oversight?since={SINCE.isoformat().replace('+00:00', 'Z')}", "leader")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["rows"] == run_report("oversight", sessions=sessions, since=SINCE, until=UNTIL)
    exported = get("/reports/noise?format=csv&since=2026-11-01T00:00:00Z", "admin")
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    assert list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))[0]["step"] == "empty"
    sla = get("/reports/sla?by=team", "leader").get_json()["rows"]
    assert [(row["group"], row["tasks"]) for row in sla] == [("red", 11)]  # 6 approve + 5 stamp tasks
    assert get("/reports/noise", "rep").status_code == 403
    assert get("/reports/noise", "ingest").status_code == 403
    assert client.get("/reports/noise").status_code == 401
    assert get("/reports/nope", "leader").status_code == 404
    assert get("/reports/oversight?by=colour", "leader").get_json()["field"] == "by"
    assert get("/reports/oversight?by=team", "leader").get_json()["rows"] == run_report(
        "oversight", sessions=sessions, since=UNTIL - timedelta(days=30), until=UNTIL, by="team")
    late = (UNTIL + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert get(f"/reports/noise?since={late}", "leader").get_json()["field"] == "since"
