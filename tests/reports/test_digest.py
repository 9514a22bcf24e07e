"""The weekly leadership digest: once per recipient per ISO week, HTML with the week's figures."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from connectors.smtp.message import build_email
from orchestrator import schema
from orchestrator.clock import FrozenClock
from orchestrator.config import Settings
from orchestrator.db import make_engine, make_session_factory, unit_of_work
from orchestrator.models import OutboxMessage
from orchestrator.runtime import Runtime
from orchestrator.worker.jobs import all_jobs
from tests.conftest import T0
from tests.reports.fixture import seed


@pytest.fixture
def runtime(fresh_database: URL) -> Any:
    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    sessions = make_session_factory(engine)
    with unit_of_work(sessions) as session:
        seed(session)
    settings = Settings(database_url=engine.url, exception_owner="ops@acme.example",
                        report_digest_to=("vp@acme.example", "cro@acme.example"))
    yield Runtime(settings=settings, engine=engine, sessions=sessions, clock=FrozenClock(T0))
    engine.dispose()


def test_the_job_sends_each_leader_one_html_digest_a_week(runtime: Any) -> None:
    job = {j.id: j for j in all_jobs(runtime)}["digests.leadership"]
    monday = T0 + timedelta(hours=1)  # Monday 15:00 UTC, inside the default calendar's day
    assert job.run(runtime=runtime, now=monday - timedelta(days=1)).items == 0  # Sunday: nothing
    assert job.run(runtime=runtime, now=monday).items == 2
    assert job.run(runtime=runtime, now=monday + timedelta(hours=1)).items == 0  # same week: nothing doubles
    with unit_of_work(runtime.sessions, read_only=True) as session:
        messages = list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    assert sorted(m.payload["to"] for m in messages) == ["cro@acme.example", "vp@acme.example"]
    html = messages[0].payload["html"]
    assert "rubber stamp: consider on the loop" in html and "consider in the loop" in html
    assert "<td>red</td><td>11</td>" in html  # SLA by team: the 11 tasks of the week
    assert job.run(runtime=dataclasses.replace(runtime, settings=dataclasses.replace(
        runtime.settings, report_digest_to=())), now=monday + timedelta(days=7)).items == 0


def test_the_email_carries_the_html_as_an_alternative_part() -> None:
    email = build_email(sender="h@acme.example", sender_name=None, to="vp@acme.example", subject="digest",
                        body="plain", idempotency_key="k", domain="acme.example", created_at=T0,
                        kind="notify.email", html="<p>figures &amp; flags</p>")
    assert email.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in email.iter_parts()] == ["text/plain", "text/html"]
