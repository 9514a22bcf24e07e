"""The weekly leadership digest: once per recipient per ISO week, HTML with the week's figures."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from connectors.registry import load_registry
from connectors.smtp.message import build_email
from orchestrator.clock import FrozenClock
from orchestrator.config import Settings
from orchestrator.db import unit_of_work
from orchestrator.delivery.deliver import deliver_due
from orchestrator.delivery.routing import install_routing
from orchestrator.models import OutboxMessage
from orchestrator.reports.digest import send_leadership_digest
from orchestrator.runtime import Runtime
from orchestrator.worker.jobs import all_jobs
from tests.channels.smtp_server import SmtpServer
from tests.conftest import T0
from tests.reports.fixture import seed_sla


@pytest.fixture
def runtime(engine: Any, sessions: Any) -> Any:
    settings = Settings(database_url=engine.url, exception_owner="ops@acme.example",
                        report_digest_to=("vp@acme.example", "cro@acme.example"))
    return Runtime(settings=settings, engine=engine, sessions=sessions, clock=FrozenClock(T0))


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


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:  # aiosmtpd on 127.0.0.1
        yield server


def test_the_digest_reaches_a_real_smtp_server_through_the_outbox(runtime: Any, smtp: SmtpServer) -> None:
    settings = dataclasses.replace(runtime.settings, connectors={"smtp": {
        "host": "127.0.0.1", "port": smtp.port, "security": "none", "from_address": "handoff@acme.example"}})
    runtime = dataclasses.replace(runtime, settings=settings)
    install_routing(runtime.sessions, settings.connectors)
    job = {j.id: j for j in all_jobs(runtime)}["digests.leadership"]
    monday = T0 + timedelta(hours=1)
    assert job.run(runtime=runtime, now=monday).items == 2
    assert smtp.handler.received == []  # enqueued, not sent: the outbox delivers
    for at in (monday, monday + timedelta(minutes=5)):  # a second delivery run sends nothing again
        deliver_due(sessions=runtime.sessions, settings=settings, registry=load_registry(), now=at, worker_id="w1")
        assert job.run(runtime=runtime, now=at + timedelta(minutes=1)).items == 0
    assert sorted(r.recipients[0] for r in smtp.handler.received) == ["cro@acme.example", "vp@acme.example"]
    [mail] = smtp.handler.mailbox("vp@acme.example")
    assert mail["Subject"] == "Handoff leadership digest, week to 2026-11-23"
    assert mail.get_content_type() == "multipart/alternative"
    plain, html = (part.get_content() for part in mail.iter_parts())
    assert "oversight flags" in plain and "SLA breaches" in plain
    # The week's figures, as the reports compute them: stamp is a rubber stamp, notify is overridden
    # too often, team red had the 11 tasks, and no lead was touched.
    assert "<td>pb</td><td>stamp</td><td>5</td>" in html and "rubber stamp: consider on the loop" in html
    assert "<td>pb</td><td>notify</td>" in html and "consider in the loop" in html
    assert "<td>red</td><td>11</td>" in html
    assert "No lead touched by a person this week." in html
    with unit_of_work(runtime.sessions, read_only=True) as session:
        statuses = [m.status for m in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))]
    assert statuses == ["delivered", "delivered"]


def test_the_digest_reports_speed_to_lead_and_time_saved(runtime: Any) -> None:
    with unit_of_work(runtime.sessions) as session:
        seed_sla(session)  # four acq leads in the week: touched after 40, 40 and 55 minutes, one not at all
    runtime = dataclasses.replace(runtime, settings=dataclasses.replace(runtime.settings,
                                                                        report_digest_to=("vp@acme.example",)))
    assert send_leadership_digest(runtime=runtime, now=T0 + timedelta(hours=1)) == 1
    with unit_of_work(runtime.sessions, read_only=True) as session:
        html = session.scalars(select(OutboxMessage)).one().payload["html"]
    assert "3 of\n4 new leads touched by a person; median 40.0 min,\np90 55.0 min from the signal." in html
    assert "0 minutes of routine work automated against 0\nestimated human minutes." in html
