"""The smtp connector against a real SMTP server (aiosmtpd) on 127.0.0.1: mail sent and read back."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime

import pytest
import trustme

from connectors.base import ConnectorContext
from connectors.smtp import SmtpConfig, SmtpConnector
from connectors.smtp.message import message_id
from orchestrator.config import Settings
from orchestrator.db import parse_database_url
from tests.channels.conftest import CREATED, outbound
from tests.channels.smtp_server import PASSWORD, USER, SmtpServer

SETTINGS = Settings(database_url=parse_database_url("sqlite://"))


def connector(server: SmtpServer, **overrides) -> SmtpConnector:
    raw = {"host": "127.0.0.1", "port": server.port, "security": "none",
           "from_address": "handoff@acme.example", **overrides}
    config = SmtpConfig().load(raw)
    return SmtpConnector(config=config, context=ConnectorContext(
        name="smtp", settings=SETTINGS, clock=lambda: datetime(2026, 11, 23, 14, 5, tzinfo=UTC), timeout=5))


def email(to="ana@acme.example", **args):
    return outbound("notify.email", {"to": to, "subject": "Usage dropped at Globex",
                                     "body": "Active users: 3 (-60% over 30 days).", **args})


def test_a_notification_arrives_with_a_message_id_derived_from_the_idempotency_key(smtp):
    message = email()
    [result] = connector(smtp).push([message])
    assert result.outcome == "delivered", result
    [received] = smtp.handler.received
    mail = received.message
    expected_id = message_id(idempotency_key=message.idempotency_key, domain="acme.example")
    assert result.remote_id == expected_id == mail["Message-ID"]
    assert (received.sender, received.recipients) == ("handoff@acme.example", ["ana@acme.example"])
    assert (mail["To"], mail["Subject"], mail["Auto-Submitted"]) == (
        "ana@acme.example", "Usage dropped at Globex", "auto-generated")
    assert "handoff@acme.example" in mail["From"]
    assert mail.get_content().strip() == "Active users: 3 (-60% over 30 days)."
    assert mail["Date"].datetime == CREATED


def test_person_references_are_resolved_from_the_account(smtp):
    results = connector(smtp).push([email(to="owner.manager"), email(to="account.csm")])
    assert [r.outcome for r in results] == ["delivered", "delivered"]
    assert [r.recipients for r in smtp.handler.received] == [["bo@acme.example"], ["cy@acme.example"]]


def test_a_customer_email_replies_to_the_account_owner_and_offers_unsubscribing(smtp):
    message = outbound("customer.email", {"to": "champion@globex.example", "subject": "Welcome",
                                          "body": "Your kickoff is booked."})
    results = connector(smtp, unsubscribe="mailto:unsubscribe@acme.example").push([message, email()])
    assert [r.outcome for r in results] == ["delivered", "delivered"]
    customer, internal = (r.message for r in smtp.handler.received)
    assert customer["Reply-To"] == "ana@acme.example"
    assert customer["List-Unsubscribe"] == "<mailto:unsubscribe@acme.example>"
    assert internal["Reply-To"] is None and internal["List-Unsubscribe"] is None


def test_a_batch_goes_over_one_connection_and_each_message_gets_its_own_result(smtp):
    messages = [email(to=f"person{n}@acme.example") for n in range(5)]
    results = connector(smtp).push(messages)
    assert [r.message_id for r in results] == [m.id for m in messages]
    assert {r.outcome for r in results} == {"delivered"}
    assert len({r.remote_id for r in results}) == 5
    assert sorted(r.recipients[0] for r in smtp.handler.received) == sorted(f"person{n}@acme.example" for n in range(5))


def test_temporary_refusals_are_retried_and_the_mail_arrives_once(smtp):
    smtp.handler.faults.extend(["data:4xx", "rcpt:4xx"])
    message = email()
    smtp_connector = connector(smtp)
    first, second, third = (smtp_connector.push([message])[0] for _ in range(3))
    assert (first.outcome, second.outcome, third.outcome) == ("retry", "retry", "delivered")
    assert "451" in (first.error or "") and "450" in (second.error or "")
    assert len(smtp.handler.received) == 1
    assert len(smtp.handler.mailbox("ana@acme.example")) == 1


def test_a_connection_dropped_after_the_server_accepted_is_retried_with_the_same_message_id(smtp):
    """SMTP's limit, written down: the server stored the first copy, so the receiving side gets
    two copies; both carry one Message-ID (and Date), so the mail store shows one message."""
    smtp.handler.faults.append("drop_after")
    message = email()
    smtp_connector = connector(smtp)
    first = smtp_connector.push([message])[0]
    assert first.outcome == "retry" and "connection lost" in (first.error or "")
    second = smtp_connector.push([message])[0]
    assert second.outcome == "delivered"
    copies = [r.message for r in smtp.handler.received]
    assert len(copies) == 2  # what the wire saw
    assert copies[0]["Message-ID"] == copies[1]["Message-ID"] == second.remote_id
    assert copies[0]["Date"] == copies[1]["Date"]
    assert copies[0].get_content() == copies[1].get_content()
    assert len(smtp.handler.mailbox("ana@acme.example")) == 1  # what the reader sees


def test_a_permanent_refusal_is_dead_without_retry(smtp):
    smtp.handler.faults.append("data:5xx")
    [result] = connector(smtp).push([email()])
    assert result.outcome == "dead" and "554" in (result.error or "")


def test_a_recipient_on_the_configured_suppression_list_is_dead_and_nothing_is_sent(smtp):
    results = connector(smtp, suppressed=["Ana@Acme.example"]).push([email(), email(to="bo@acme.example")])
    assert results[0].outcome == "dead"
    assert "suppression list" in (results[0].error or "") and "ana@" not in (results[0].error or "")
    assert results[1].outcome == "delivered"
    assert [r.recipients for r in smtp.handler.received] == [["bo@acme.example"]]


@pytest.mark.parametrize(("args", "error"), [
    ({"to": ""}, "no recipient"),
    ({"to": "not-an-address"}, "must be account.owner"),
    ({"subject": "Hi\r\nBcc: everyone@acme.example"}, "cannot be built"),
    ({"subject": ""}, "no subject"),
])
def test_a_message_that_cannot_be_an_email_is_dead_with_a_clear_error(smtp, args, error):
    [result] = connector(smtp).push([email(**args)])
    assert result.outcome == "dead" and error in (result.error or "")
    assert smtp.handler.received == []


def test_no_server_listening_is_a_retry(smtp):
    dead_port = connector(smtp, port=1)
    [result] = dead_port.push([email()])
    assert result.outcome == "retry" and "cannot reach" in (result.error or "")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_server(ca: trustme.CA, *, require_auth: bool) -> SmtpServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return SmtpServer(tls_context=context, require_auth=require_auth)


def test_starttls_and_login_then_send(ca, tmp_path):
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with tls_server(ca, require_auth=True) as server:
        smtp_connector = connector(server, security="starttls", username=USER, password=PASSWORD,
                                   ca_file=str(ca_file))
        assert smtp_connector.check() == []
        [result] = smtp_connector.push([email()])
        assert result.outcome == "delivered"
        [received] = server.handler.received
        assert received.tls and received.authenticated


def test_a_certificate_the_connector_does_not_trust_is_not_used(ca):
    with tls_server(ca, require_auth=False) as server:
        [result] = connector(server, security="starttls").push([email()])
    assert result.outcome == "retry" and server.handler.received == []


def test_wrong_credentials_keep_the_mail_for_later(ca, tmp_path):
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with tls_server(ca, require_auth=True) as server:
        smtp_connector = connector(server, security="starttls", username=USER, password="wrong",
                                   ca_file=str(ca_file))
        [result] = smtp_connector.push([email()])
        assert result.outcome == "retry" and "login refused (535)" in (result.error or "")
        assert result.retry_after and result.retry_after >= 60
        assert smtp_connector.check() == ["SMTP login refused (535)"]
        assert "wrong" not in repr(smtp_connector)


def test_starttls_not_offered_is_not_a_downgrade(smtp):
    [result] = connector(smtp, security="starttls").push([email()])
    assert result.outcome == "retry" and "STARTTLS" in (result.error or "")
    assert smtp.handler.received == []


@pytest.mark.parametrize(("raw", "message"), [
    ({"username": "u", "password": "p", "security": "none"}, "security"),
    ({"from_address": "handoff"}, "from_address"),
    ({"suppressed": ["nobody"]}, "suppressed"),
    ({"unsubscribe": "http://acme.example/u"}, "unsubscribe"),
])
def test_config_mistakes_are_named(raw, message):
    from marshmallow import ValidationError
    with pytest.raises(ValidationError) as caught:
        SmtpConfig().load({"host": "127.0.0.1", "from_address": "handoff@acme.example", **raw})
    assert message in caught.value.messages
