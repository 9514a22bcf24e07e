"""The dashboard over what the engine records (ticket triage, an experiment): the routing and experiments
sections, and every count under every grouping lists exactly what it counts (both databases)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from orchestrator.api import create_app
from orchestrator.apikeys import create_key
from orchestrator.clock import FrozenClock
from orchestrator.config import Settings
from orchestrator.db import unit_of_work
from orchestrator.runtime import Runtime
from tests.conftest import T0
from tests.reports.engine_world import world
from tests.reports.fixture import UNTIL
from tests.reports.test_dashboard import bars
from tests.reports.test_dashboard_drill import drills, links
from tests.reports.test_experiments_report import seed_experiment
from tests.reports.test_routing_report import seed_tickets


@pytest.fixture
def client(migrated: Any) -> Any:
    db, sessions = migrated
    with world(db, "adopt/ticket-triage", "expand/expansion-first-touch") as (session, feed, clock):
        seed_tickets(session, feed, clock)
        seed_experiment(session, feed, clock)
    with unit_of_work(sessions) as session:
        key = create_key(session, name="vp", role="leader", now=T0)
    runtime = Runtime(settings=Settings(database_url=db.url, exception_owner="ops@acme.example",
                                        action_estimates={"crm.update_field": 3}),
                      engine=db, sessions=sessions, clock=FrozenClock(UNTIL))
    app = create_app(runtime=runtime).test_client()
    app.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return app


def page(client: Any, query: str = "") -> str:
    answer = client.get(f"/dashboard?period=7d{query}")
    assert answer.status_code == 200
    return str(answer.get_data(as_text=True))


def listed(client: Any, url: str) -> str:
    answer = client.get(url)
    assert answer.status_code == 200, url
    return str(answer.get_data(as_text=True))


def test_routing_and_experiments_sections_drill_down(client: Any) -> None:
    html = page(client)
    assert bars(html, "routing-chart") == 1 and bars(html, "experiments-chart") == 2
    overturned = next(url for url, number in drills(html) if "which=route_overturned" in url)
    assert re.findall(r"<td>(Triage ticket T-\d)", listed(client, overturned)) == ["Triage ticket T-2"]
    undecided = next(url for url, number in drills(html) if "which=route_undecided" in url)
    assert re.findall(r"<td>(Triage ticket T-\d)", listed(client, undecided)) == ["Triage ticket T-5"]
    converted = [url for url in links(html) if "journeys?" in url and "which=converted" in url]
    assert {url.split("variant=")[1].split("&")[0] for url in converted} == {"automated", "human"}
    automated = next(url for url in converted if "variant=automated" in url)
    assert listed(client, automated).count('<tr class="item">') == 2  # x2 and x3; x8 converts after the period
    by_team = drills(page(client, "&by=team"))
    assert [number for url, number in by_team if "which=routed_decisions" in url and "group=red" in url] == [5]
    assert [number for url, number in by_team if "which=routed_decisions" in url and "group=blue" in url] == [1]


@pytest.mark.parametrize("query", ["", "&by=team", "&by=owner", "&by=week", "&by=stage", "&by=segment",
                                   "&by=playbook", "&by=team&team=blue"])
def test_every_count_under_every_grouping_lists_exactly_what_it_counts(client: Any, query: str) -> None:
    html = page(client, query)
    found = drills(html)
    reports = {"routed_", "route_", "automation_runs"} | (set() if "team=blue" in query else {"journeys?"})
    assert {marker for marker in reports if any(marker in url for url, _ in found)} == reports
    grouped = re.search(r"by=(\w+)", query)
    if grouped:  # the reports that have the grouping show it, and their numbers drill down by it
        assert any(f"group_by={grouped[1]}&" in url or url.endswith(f"group_by={grouped[1]}") for url, _ in found)
    for url, number in found:
        shown = listed(client, url)
        assert shown.count('<tr class="task">') + shown.count('<tr class="item">') == number, url
