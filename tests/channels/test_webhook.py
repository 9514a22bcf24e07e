"""The webhook connector against a local HTTP server: signed, deduplicated by key, SSRF-guarded."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime

import pytest
import trustme
from marshmallow import ValidationError

from connectors.base import ConnectorContext
from connectors.webhook import WebhookConfig, WebhookConnector
from connectors.webhook.signing import verify
from orchestrator.config import Settings
from orchestrator.db import parse_database_url
from tests.channels.conftest import outbound
from tests.channels.webhook_server import WebhookReceiver

SECRET = "whsec-test-0123456789"
NOW = datetime(2026, 11, 23, 14, 5, tzinfo=UTC)
SETTINGS = Settings(database_url=parse_database_url("sqlite://"))


def connector(**overrides) -> WebhookConnector:
    config = WebhookConfig().load({"signing_secret": SECRET, "allow_hosts": ["127.0.0.1"],
                                   "read_timeout": 2, **overrides})
    return WebhookConnector(config=config, context=ConnectorContext(name="webhook", settings=SETTINGS,
                                                                    clock=lambda: NOW))


def hook(url: str, **args):
    return outbound("notify.webhook", {"url": url, **args})


def test_a_signed_json_post_arrives_with_the_idempotency_key(receiver):
    message = hook(receiver.url(), payload={"text": "Usage dropped at Globex"})
    [result] = connector().push([message])
    assert result.outcome == "delivered", result
    [request] = receiver.state.requests
    assert request.json() == {"text": "Usage dropped at Globex"}
    assert request.key == message.idempotency_key
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-handoff-timestamp"] == str(int(NOW.timestamp()))
    assert verify(secret=SECRET, headers=request.headers, body=request.body, now=int(NOW.timestamp()))


def test_without_a_payload_the_body_is_an_envelope_naming_the_account(receiver):
    message = hook(receiver.url())
    connector().push([message])
    body = receiver.state.requests[0].json()
    assert body["kind"] == "notify.webhook" and body["idempotency_key"] == message.idempotency_key
    assert body["account"]["domain"] == "globex.example" and body["step_id"] == "tell"


def test_an_in_app_message_goes_to_the_configured_endpoint(receiver):
    message = outbound("customer.in_app_message", {"body": "Try saved views", "audience": "admins"})
    [result] = connector(in_app_url=receiver.url("/in-app")).push([message])
    assert result.outcome == "delivered"
    [request] = receiver.state.requests
    assert request.path == "/in-app"
    assert (request.json()["body"], request.json()["audience"]) == ("Try saved views", "admins")


def test_an_in_app_message_without_an_endpoint_is_dead_with_the_setting_named():
    [result] = connector().push([outbound("customer.in_app_message", {"body": "hi"})])
    assert result.outcome == "dead" and "in_app_url" in (result.error or "")


def test_failed_first_attempts_then_success_count_one_delivery(receiver):
    receiver.state.faults.extend(["http:503", "http:429:7"])
    message = hook(receiver.url())
    webhook = connector()
    first, second, third = (webhook.push([message])[0] for _ in range(3))
    assert (first.outcome, second.outcome, third.outcome) == ("retry", "retry", "delivered")
    assert second.retry_after == 7.0
    assert len(receiver.state.requests) == 1
    assert list(receiver.state.deliveries()) == [message.idempotency_key]


def test_a_connection_dropped_after_the_request_was_read_is_retried_and_the_receiver_keeps_one(receiver):
    receiver.state.faults.append("drop_after")
    message = hook(receiver.url(), payload={"n": 1})
    webhook = connector()
    first = webhook.push([message])[0]
    assert first.outcome == "retry" and "no answer" in (first.error or "")
    assert webhook.push([message])[0].outcome == "delivered"
    requests = receiver.state.requests
    assert len(requests) == 2                       # what the wire saw
    assert requests[0].key == requests[1].key       # the retry is recognisable
    assert requests[0].body == requests[1].body     # and the same
    assert len(receiver.state.deliveries()) == 1    # what a receiver deduplicating by key keeps


def test_a_slow_endpoint_times_out_and_is_retried(receiver):
    receiver.state.faults.append("slow:3")
    [result] = connector(read_timeout=0.5).push([hook(receiver.url())])
    assert result.outcome == "retry"


def test_redirects_are_not_followed(receiver):
    receiver.state.faults.append("redirect")
    [result] = connector().push([hook(receiver.url())])
    assert result.outcome == "dead" and "redirects are not followed" in (result.error or "")
    assert len(receiver.state.requests) == 0 and len(receiver.state.faults) == 0  # asked once, not followed


def test_a_client_error_is_dead(receiver):
    receiver.state.faults.append("http:404")
    [result] = connector().push([hook(receiver.url())])
    assert result.outcome == "dead" and "404" in (result.error or "")


def test_loopback_and_cloud_metadata_are_refused_unless_allowed(receiver):
    strict = connector(allow_hosts=[])
    loopback, metadata = strict.push([hook(receiver.url()), hook("http://169.254.169.254/latest/meta-data/")])
    assert loopback.outcome == metadata.outcome == "dead"
    assert "loopback address 127.0.0.1" in (loopback.error or "")
    assert "link-local address 169.254.169.254" in (metadata.error or "")
    assert receiver.state.requests == []
    # Allowing 127.0.0.1 by name lets the same message through, and only that host.
    allowed = connector(allow_hosts=["127.0.0.1"])
    assert allowed.push([hook(receiver.url())])[0].outcome == "delivered"
    assert allowed.push([hook("http://169.254.169.254/")])[0].outcome == "dead"


def test_the_signing_secret_is_required_and_long_enough():
    with pytest.raises(ValidationError) as caught:
        WebhookConfig().load({"signing_secret": "short"})
    assert "signing_secret" in caught.value.messages


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_receiver(ca: trustme.CA, name: str) -> WebhookReceiver:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return WebhookReceiver(tls=context)


def test_https_connects_to_the_vetted_address_and_checks_the_certificate_for_the_name(ca, tmp_path):
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with tls_receiver(ca, "localhost") as receiver:
        webhook = connector(allow_hosts=["localhost"], ca_file=str(ca_file))
        [result] = webhook.push([hook(receiver.url(host="localhost"))])
        assert result.outcome == "delivered", result
        assert receiver.state.requests[0].headers["host"].startswith("localhost:")


def test_a_certificate_for_another_name_is_not_accepted(ca, tmp_path):
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with tls_receiver(ca, "elsewhere.test") as receiver:
        [result] = connector(allow_hosts=["localhost"], ca_file=str(ca_file)).push(
            [hook(receiver.url(host="localhost"))])
    assert result.outcome == "retry" and receiver.state.requests == []
