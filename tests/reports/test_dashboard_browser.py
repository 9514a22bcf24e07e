"""The dashboard in a real headless Chromium (Debian's, through Playwright): charts, a filter, a drill-down."""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from orchestrator.api import create_app
from orchestrator.apikeys import create_key
from orchestrator.clock import FrozenClock
from orchestrator.config import Settings
from orchestrator.db import unit_of_work
from orchestrator.models import Account, Journey, Owner, PlaybookVersion, StepRun, Task
from orchestrator.runtime import Runtime
from tests.conftest import T0, create_database
from tests.reports.conftest import migrated_database
from tests.reports.fixture import UNTIL, seed

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (.ci/run installs it)")


def _second_playbook(session: Any) -> None:
    """A renewal playbook with one approved in-the-loop step, so filtering by playbook changes the charts."""
    owner = session.query(Owner).one()
    account = Account(name="Beta", domain="beta.example", owner=owner, stage="renew", stage_entered_at=T0)
    version = PlaybookVersion(playbook_id="renewal", version=1, name="Renewal", stage="renew",
                              checksum=hashlib.sha256(b"r").hexdigest(), source_text="", source_path="r.yaml")
    session.add_all([account, version])
    session.flush()
    journey = Journey(account_id=account.id, playbook_id="renewal", playbook_version_id=version.id,
                      enrollment_key="renewal:1", status="waiting", enrolled_at=T0)
    session.add(journey)
    session.flush()
    run = StepRun(journey_id=journey.id, step_id="sign", kind="automated", oversight="in_the_loop", status="done",
                  started_at=T0)
    session.add(run)
    session.flush()
    session.add(Task(account_id=account.id, journey_id=journey.id, step_run_id=run.id, owner_id=owner.id,
                     kind="approval", title="sign renewal", created_at=T0, due_at=UNTIL, status="done",
                     outcome="approved", completed_at=T0))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], dict[str, Any]]]:
    # One browser run on SQLite is enough: the figures are tested on both databases in test_reports.py.
    with migrated_database(create_database("sqlite", tmp_path)) as (engine, sessions):
        with unit_of_work(sessions) as session:
            seeded = seed(session)
            _second_playbook(session)
            keys = {"leader": create_key(session, name="vp", role="leader", now=T0),
                    "rep": create_key(session, name="rep", role="rep", owner=session.query(Owner).first(), now=T0)}
        runtime = Runtime(settings=Settings(database_url=engine.url, exception_owner="ops@acme.example"),
                          engine=engine, sessions=sessions, clock=FrozenClock(UNTIL))
        app = create_app(runtime=runtime)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}", keys, seeded
        finally:
            server.shutdown()
            thread.join(timeout=5)


def test_dashboard_draws_charts_filters_and_drills_down(served: Any, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    base, keys, seeded = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{base}/dashboard")
            assert page.url.endswith("/dashboard/login")  # no session yet
            page.fill("input[name=key]", keys["rep"])
            page.click("button[type=submit]")
            assert page.locator(".flag").count() == 1  # a rep key is refused at the door
            page.fill("input[name=key]", keys["leader"])
            page.click("button[type=submit]")
            page.wait_for_selector("#approval-chart")
            # approve, stamp, sign have an approval rate; noise has a bar for every step that ran.
            assert page.locator("#approval-chart rect.bar").count() == 3
            assert page.locator("#noise-chart rect.bar").count() == 5
            assert "rubber stamp: consider on the loop" in page.inner_text("#oversight")
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

            page.select_option("select[name=playbook]", "pb")
            page.click("form.filters button")
            page.wait_for_url("**playbook=pb**")
            assert page.locator("#approval-chart rect.bar").count() == 2
            assert page.locator("#noise-chart rect.bar").count() == 4

            assert page.locator("#loop-chart rect.bar").count() == 5 and page.locator("#sla-chart").count() == 1
            page.locator("#noise tr", has_text="approve").locator("td:nth-child(5) a").click()  # its tasks
            page.wait_for_selector("#tasks")
            shown = [int(cell) for cell in page.locator("#tasks tr.task td:first-child").all_inner_texts()]
            assert shown == sorted(seeded["tasks"]["approve"])

            page.go_back()
            page.select_option("select[name=by]", "team")  # every report that has a team grouping takes it
            page.click("form.filters button")
            page.wait_for_url("**by=team**")
            assert page.locator("#approval-chart rect.bar").count() == 1  # pb's in-the-loop decisions: red's
            tasks = page.locator("#noise tr", has_text="red").locator("td:nth-child(4) a")
            count = int(tasks.inner_text())
            tasks.click()
            page.wait_for_selector("#tasks")
            assert page.locator("#tasks tr.task").count() == count == 11  # pb's tasks, all of red's accounts
        finally:
            browser.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
