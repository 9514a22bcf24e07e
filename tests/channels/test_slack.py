"""The slack connector: the real slack_sdk WebClient against a fake Slack Web API on 127.0.0.1."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from marshmallow import ValidationError

from connectors.base import ConnectorContext
from connectors.slack import SlackConfig, SlackConnector
from orchestrator.config import Settings
from orchestrator.db import parse_database_url
from tests.channels.conftest import outbound
from tests.channels.fake_slack import TOKEN

SETTINGS = Settings(database_url=parse_database_url("sqlite://"))


def connector(slack=None, **overrides) -> SlackConnector:
    raw = {"timeout": 5, **({"token": TOKEN, "base_url": slack.base_url} if slack else {}), **overrides}
    return SlackConnector(config=SlackConfig().load(raw), context=ConnectorContext(
        name="slack", settings=SETTINGS, clock=lambda: datetime(2026, 11, 23, 14, 5, tzinfo=UTC)))


def chat(to="account.owner", text="Usage dropped at Globex: 3 active users.", **kwargs):
    return outbound("notify.chat", {"to": to, "text": text}, **kwargs)


@pytest.fixture
def people(slack):
    slack.state.add_user("ana@acme.example", "U0ANA")
    slack.state.add_user("bo@acme.example", "U0BO")
    return slack


def test_the_owner_gets_a_direct_message_with_the_key_in_its_metadata(people):
    message = chat()
    [result] = connector(people).push([message])
    assert result.outcome == "delivered", result
    [posted] = people.state.messages
    assert (posted.channel, posted.text) == ("D0ANA", "Usage dropped at Globex: 3 active users.")
    assert posted.metadata == {"event_type": "handoff_notification",
                               "event_payload": {"idempotency_key": message.idempotency_key}}
    assert result.remote_id == f"D0ANA/{posted.ts}"
    assert people.state.calls == ["users.lookupByEmail", "conversations.open", "conversations.history",
                                  "chat.postMessage"]


def test_the_manager_or_a_named_person(people):
    results = connector(people).push([chat(to="owner.manager"), chat(to="ana@acme.example")])
    assert [r.outcome for r in results] == ["delivered", "delivered"]
    assert [m.channel for m in people.state.messages] == ["D0BO", "D0ANA"]


def test_a_rate_limit_is_a_retry_after_slacks_retry_after(people):
    people.state.fail("chat.postMessage", "ratelimited:12")
    slack_connector = connector(people)
    message = chat()
    first = slack_connector.push([message])[0]
    assert (first.outcome, first.retry_after) == ("retry", 12.0)
    assert slack_connector.push([message])[0].outcome == "delivered"
    assert len(people.state.messages) == 1


def test_slack_failing_the_first_attempts_still_posts_once(people):
    people.state.fail("users.lookupByEmail", "http:503")
    people.state.fail("chat.postMessage", "error:internal_error", "drop_before")
    slack_connector = connector(people)
    message = chat()
    outcomes = [slack_connector.push([message])[0].outcome for _ in range(4)]
    assert outcomes == ["retry", "retry", "retry", "delivered"]
    assert len(people.state.messages) == 1


def test_a_lost_answer_after_slack_posted_is_not_posted_again(people):
    """chat.postMessage succeeded but the connection dropped before the answer: the retry
    finds the message by its metadata in the DM history and records its ts instead."""
    people.state.fail("chat.postMessage", "drop_after")
    slack_connector = connector(people)
    message = chat()
    first = slack_connector.push([message])[0]
    assert first.outcome == "retry" and "no answer from Slack" in (first.error or "")
    assert len(people.state.messages) == 1  # Slack did post it
    second = slack_connector.push([message])[0]
    assert second.outcome == "delivered"
    [posted] = people.state.messages  # still one: slack_sdk did not silently re-send either
    assert second.remote_id == f"D0ANA/{posted.ts}"
    assert people.state.calls.count("chat.postMessage") == 1


def test_without_the_history_check_a_lost_answer_means_a_duplicate(people):
    # The documented limit, shown: what the check buys.
    people.state.fail("chat.postMessage", "drop_after")
    slack_connector = connector(people, history_check=False)
    message = chat()
    assert slack_connector.push([message])[0].outcome == "retry"
    assert slack_connector.push([message])[0].outcome == "delivered"
    assert len(people.state.messages) == 2


def test_a_person_slack_does_not_know_is_dead_without_a_fallback(people):
    [result] = connector(people).push([chat(to="nobody@acme.example")])
    assert result.outcome == "dead" and "no Slack user" in (result.error or "")
    assert "nobody@" not in (result.error or "")


def test_a_bad_token_keeps_the_message_for_later_and_check_says_so(people):
    slack_connector = connector(people, token="xoxb-wrong")
    [result] = slack_connector.push([chat()])
    assert result.outcome == "retry" and "invalid_auth" in (result.error or "")
    assert slack_connector.check() == ["Slack auth.test failed: invalid_auth"]
    assert connector(people).check() == []


def test_check_names_missing_scopes(people):
    people.state.scopes = "users:read,chat:write"
    assert connector(people).check() == ["the Slack token lacks scope users:read.email, im:write, im:history"]
    assert connector(people, history_check=False).check() == ["the Slack token lacks scope users:read.email, im:write"]


def test_an_archived_channel_or_similar_refusal_is_dead(people):
    people.state.fail("chat.postMessage", "error:is_archived")
    [result] = connector(people).push([chat()])
    assert result.outcome == "dead" and "is_archived" in (result.error or "")


def test_no_recipient_or_no_text_is_dead(people):
    no_owner = chat(account=None)
    results = connector(people).push([no_owner, chat(text="  ")])
    assert [r.outcome for r in results] == ["dead", "dead"]
    assert "account owner has no email" in (results[0].error or "")
    assert people.state.calls == []


def test_people_slack_does_not_know_go_to_the_fallback_webhook(people, receiver):
    slack_connector = connector(people, fallback_url=receiver.url("/teams"), fallback_style="teams",
                                allow_hosts=["127.0.0.1"])
    message = chat(to="cy@acme.example")
    [result] = slack_connector.push([message])
    assert (result.outcome, result.remote_id) == ("delivered", "fallback")
    [request] = receiver.state.requests
    assert request.json()["@type"] == "MessageCard"
    assert "cy@acme.example" in request.json()["text"]
    assert request.key == message.idempotency_key
    assert people.state.messages == []


def test_only_a_webhook_configured_posts_every_message_there(receiver):
    slack_connector = connector(fallback_url=receiver.url("/hook"), fallback_style="plain",
                                allow_hosts=["127.0.0.1"])
    receiver.state.faults.append("http:500")
    message = chat()
    assert slack_connector.push([message])[0].outcome == "retry"
    assert slack_connector.push([message])[0].outcome == "delivered"
    [request] = receiver.state.requests
    assert request.json() == {"kind": "notify.chat", "to": "ana@acme.example",
                              "text": "Usage dropped at Globex: 3 active users.",
                              "idempotency_key": message.idempotency_key}


def test_the_fallback_url_passes_the_ssrf_guard(receiver):
    [result] = connector(fallback_url=receiver.url("/hook")).push([chat()])
    assert result.outcome == "dead" and "loopback" in (result.error or "")
    assert receiver.state.requests == []


def test_a_config_without_token_or_fallback_is_refused():
    with pytest.raises(ValidationError) as caught:
        SlackConfig().load({})
    assert "token" in caught.value.messages


def test_the_token_never_shows_in_repr(people):
    assert TOKEN not in repr(connector(people))
