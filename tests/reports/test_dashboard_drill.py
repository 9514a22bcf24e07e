"""Every chart follows the dashboard's filters, and every count on the page lists what it counts (both databases)."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from typing import Any

import pytest

from orchestrator.api import create_app
from orchestrator.apikeys import create_key
from orchestrator.clock import FrozenClock
from orchestrator.config import Settings
from orchestrator.db import unit_of_work
from orchestrator.models import Account, ExceptionItem, Journey, StageChange
from orchestrator.runtime import Runtime
from tests.conftest import T0
from tests.reports.fixture import UNTIL, seed_sla
from tests.reports.test_dashboard import bars

CHARTS = ("approval-chart", "noise-chart", "sla-chart", "loop-chart", "automation-chart", "exceptions-chart",
          "time-saved-chart")


@pytest.fixture
def client(engine: Any, sessions: Any) -> Any:
    with unit_of_work(sessions) as session:
        seed_sla(session)
        beta = session.query(Account).filter_by(name="Beta").one()
        acme = session.query(Account).filter_by(name="Acme").one()
        acq = session.query(Journey).filter_by(playbook_id="acq").order_by(Journey.id).first()
        session.add_all([
            # Beta (ana's, team blue) came in and moved on from acquire through acq's journey; Acme jumped
            # from acquire straight to adopt, by hand.
            StageChange(account_id=beta.id, from_stage=None, to_stage="acquire", at=T0 - timedelta(days=2),
                        journey_id=acq.id),
            StageChange(account_id=beta.id, from_stage="acquire", to_stage="onboard", at=T0 - timedelta(days=1),
                        seconds_in_previous=86400, journey_id=acq.id),
            StageChange(account_id=acme.id, from_stage="acquire", to_stage="adopt", at=T0 - timedelta(days=1),
                        seconds_in_previous=3 * 86400),
            # Beta came back to acquire: it entered acquire twice, one account (and moved on from onboard).
            StageChange(account_id=beta.id, from_stage="onboard", to_stage="acquire", at=T0 - timedelta(hours=12),
                        seconds_in_previous=43200),
            ExceptionItem(category="missing_field", owner="ana@acme.example", message="m", journey_id=acq.id,
                          created_at=T0 - timedelta(hours=10), respond_by=T0 - timedelta(hours=2)),
            ExceptionItem(category="missing_field", owner="ana@acme.example", message="m", journey_id=acq.id,
                          created_at=T0 - timedelta(hours=1), respond_by=T0 + timedelta(hours=7)),
            ExceptionItem(category="unknown_account", owner="ops@acme.example", message="m",
                          created_at=T0 - timedelta(hours=3), respond_by=T0 + timedelta(hours=5)),
        ])
        key = create_key(session, name="vp", role="leader", now=T0)
    runtime = Runtime(settings=Settings(database_url=engine.url, exception_owner="ops@acme.example",
                                        action_estimates={"crm.update_field": 3}),
                      engine=engine, sessions=sessions, clock=FrozenClock(UNTIL))
    app = create_app(runtime=runtime).test_client()
    app.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return app


def page(client: Any, query: str = "") -> str:
    answer = client.get(f"/dashboard?period=30d{query}")
    assert answer.status_code == 200
    return str(answer.get_data(as_text=True))


def counts(html: str) -> dict[str, int]:
    return {chart: bars(html, chart) for chart in CHARTS}


def test_every_chart_follows_each_filter(client: Any) -> None:
    everything = counts(page(client))
    # approve, stamp, sign-less: pb's two in-the-loop steps; noise: pb's four steps and acq/call;
    # SLA due adherence: blue and (no team) have due verdicts, red none; five stages; automation per
    # stage (onboard: pb, acquire: acq); open items in two categories; time saved for pb and acq.
    assert everything == {"approval-chart": 2, "noise-chart": 5, "sla-chart": 2, "loop-chart": 5,
                          "automation-chart": 2, "exceptions-chart": 2, "time-saved-chart": 2}
    assert counts(page(client, "&team=blue")) == {  # ana's tasks; Beta's runs and changes; ana's items
        "approval-chart": 0, "noise-chart": 1, "sla-chart": 1, "loop-chart": 5, "automation-chart": 1,
        "exceptions-chart": 1, "time-saved-chart": 1}
    assert counts(page(client, "&stage=acquire")) == {
        "approval-chart": 0, "noise-chart": 1, "sla-chart": 1, "loop-chart": 1, "automation-chart": 1,
        "exceptions-chart": 1, "time-saved-chart": 1}
    assert counts(page(client, "&playbook=pb")) == {
        "approval-chart": 2, "noise-chart": 4, "sla-chart": 0, "loop-chart": 5, "automation-chart": 1,
        "exceptions-chart": 0, "time-saved-chart": 1}
    html = page(client, "&team=blue")
    assert 'selected>blue' in html


def drills(html: str) -> list[tuple[str, int]]:
    """The links of the numbers that count what their drill-down lists."""
    return [(unescape(url), int(text)) for url, text in
            re.findall(r'<a class="drill count" href="([^"]+)">(\d+)</a>', html)]


def links(html: str) -> list[str]:
    return [unescape(url) for url in re.findall(r'<a class="drill[^"]*" href="([^"]+)">', html)]


@pytest.mark.parametrize("query", ["", "&team=blue", "&stage=acquire", "&playbook=pb", "&period=7d", "&by=team",
                                   "&by=owner", "&by=week", "&by=segment&team=blue"])
def test_every_count_lists_exactly_what_it_counts(client: Any, query: str) -> None:
    links = drills(page(client, query))
    pages = {url.split("?")[0] for url, _ in links}
    assert pages == ({"/dashboard/tasks", "/dashboard/runs", "/dashboard/changes", "/dashboard/items"}
                     if query != "&playbook=pb" else {"/dashboard/tasks", "/dashboard/runs", "/dashboard/changes"})
    for url, number in links:
        answer = client.get(url)
        assert answer.status_code == 200, url
        listed = answer.get_data(as_text=True)
        assert listed.count('<tr class="task">') + listed.count('<tr class="item">') == number, url


def test_a_breach_and_a_rung_drill_down_to_the_right_tasks(client: Any, sessions: Any) -> None:
    html = page(client)
    breaches = next(url for url in links(html) if "which=breaches" in url and "group=blue" in url)
    listed = client.get(breaches).get_data(as_text=True)
    assert re.findall(r'<tr class="task"><td>\d+</td><td>(\w+)</td>', listed) == ["a2", "a4"]
    rung2 = next(url for url, _ in drills(html) if "rung=2" in url and "group=blue" in url)
    assert re.findall(r'<tr class="task"><td>\d+</td><td>(\w+)</td>', client.get(rung2).get_data(as_text=True)) \
        == ["a2"]
    assert client.get("/dashboard/tasks?which=nope").status_code == 422
    assert client.get("/dashboard/changes?which=entered&stage=nowhere").status_code == 422


def test_an_account_entering_a_stage_twice_is_listed_once(client: Any) -> None:
    found = {(url.split("which=")[1].split("&")[0], re.search(r"stage=(\w+)", url)[1]): number  # type: ignore[index]
             for url, number in drills(page(client)) if url.startswith("/dashboard/changes")
             and re.search(r"which=(entered|moved_on)", url)}
    assert found[("entered", "acquire")] == 1 and found[("moved_on", "acquire")] == 1  # Beta, twice in
    url = next(url for url, _ in drills(page(client)) if "which=entered" in url and "stage=acquire" in url)
    listed = client.get(url).get_data(as_text=True)
    assert listed.count('<tr class="item">') == 1
    assert "<td>onboard</td><td>acquire</td>" in listed  # its latest entry: back from onboard
