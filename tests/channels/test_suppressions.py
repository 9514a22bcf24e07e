"""The email suppression list: the table, the CLI, and the smtp connector checking it before sending."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from connectors.base import ConnectorContext
from connectors.smtp import SmtpConfig, SmtpConnector
from orchestrator import schema
from orchestrator.cli import main
from orchestrator.config import Settings, load_settings
from orchestrator.db import make_engine, parse_database_url
from orchestrator.delivery import suppressions
from orchestrator.errors import Invalid
from orchestrator.models import AuditEvent, EmailSuppression
from tests.channels.conftest import outbound

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def test_addresses_are_stored_once_lower_cased(session):
    assert suppressions.add(session, address=" Ana@Globex.example ", reason="bounce", at=NOW)
    assert not suppressions.add(session, address="ana@globex.example", reason="unsubscribe", at=NOW)
    found = suppressions.suppressed(session, addresses=["ANA@globex.example", "bo@globex.example", "junk"])
    assert list(found) == ["ana@globex.example"] and found["ana@globex.example"].reason == "bounce"
    assert suppressions.remove(session, address="ana@GLOBEX.example")
    assert not suppressions.remove(session, address="ana@globex.example")
    assert suppressions.suppressed(session, addresses=["ana@globex.example"]) == {}


def test_bad_input_names_the_field(session):
    with pytest.raises(Invalid, match="not an email address"):
        suppressions.add(session, address="ana", reason="bounce", at=NOW)
    with pytest.raises(Invalid, match='"bounced" is not a suppression reason'):
        suppressions.add(session, address="ana@globex.example", reason="bounced", at=NOW)


@pytest.fixture
def database(fresh_database):
    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    yield fresh_database, sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def test_the_cli_adds_lists_and_removes_entries_and_audits_them(database):
    url, sessions = database
    env = {"HANDOFF_DATABASE_URL": url.render_as_string(hide_password=False)}
    runner = CliRunner()
    added = runner.invoke(main, ["email", "suppress", "Ana@Globex.example", "--reason", "unsubscribe",
                                 "--note", "asked on the phone"], env=env)
    assert added.exit_code == 0 and added.output.strip() == "ana@globex.example suppressed (unsubscribe)"
    again = runner.invoke(main, ["email", "suppress", "ana@globex.example"], env=env)
    assert again.output.strip() == "ana@globex.example was already suppressed"
    listed = runner.invoke(main, ["email", "suppressions"], env=env)
    assert "ana@globex.example  unsubscribe" in listed.output and "asked on the phone" in listed.output
    removed = runner.invoke(main, ["email", "unsuppress", "ana@globex.example"], env=env)
    assert removed.output.strip() == "ana@globex.example no longer suppressed"
    assert runner.invoke(main, ["email", "suppressions"], env=env).output.strip() == "no suppressed addresses"
    bad = runner.invoke(main, ["email", "suppress", "not an address"], env=env)
    assert bad.exit_code == 2 and bad.output.strip() == 'handoff: error: "not an address" is not an email address'
    with sessions() as session:
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions == ["email_suppressed", "email_unsuppressed"]
    assert load_settings(env).database_url == url


def smtp_connector(server, sessions) -> SmtpConnector:
    config = SmtpConfig().load({"host": "127.0.0.1", "port": server.port, "security": "none",
                                "from_address": "handoff@acme.example"})
    # The connector never opens this database; load_settings refuses an in-memory URL, so it is given directly.
    settings = Settings(database_url=parse_database_url("sqlite://"))
    return SmtpConnector(config=config, context=ConnectorContext(name="smtp", settings=settings,
                                                                 clock=lambda: NOW, sessions=sessions))


def test_a_suppressed_recipient_gets_nothing_and_the_message_is_dead_with_the_reason(database, smtp):
    _, sessions = database
    with sessions.begin() as session:
        suppressions.add(session, address="champion@globex.example", reason="unsubscribe", at=NOW)
    mails = [outbound("customer.email", {"to": "Champion@globex.example", "subject": "Welcome", "body": "Hi"}),
             outbound("customer.email", {"to": "other@globex.example", "subject": "Welcome", "body": "Hi"})]
    results = smtp_connector(smtp, sessions).push(mails)
    assert [r.outcome for r in results] == ["dead", "delivered"]
    assert results[0].error == "recipient is on the suppression list (unsubscribe); not sent"
    assert [r.recipients for r in smtp.handler.received] == [["other@globex.example"]]


def test_a_hard_bounce_is_dead_and_suppresses_the_address_from_then_on(database, smtp):
    _, sessions = database
    smtp.handler.faults.append("rcpt:5xx")
    connector = smtp_connector(smtp, sessions)
    [first] = connector.push([outbound("customer.email", {"to": "gone@globex.example", "subject": "S", "body": "B"})])
    assert first.outcome == "dead" and "550" in (first.error or "")
    with sessions() as session:
        entry = session.scalars(select(EmailSuppression)).one()
    assert (entry.address, entry.reason, entry.created_by) == ("gone@globex.example", "bounce", "smtp")
    [second] = connector.push([outbound("customer.email", {"to": "gone@globex.example", "subject": "S", "body": "B"})])
    assert second.outcome == "dead" and "suppression list (bounce)" in (second.error or "")
    assert smtp.handler.received == []
