"""The playbook language knows notify.chat: registered, internal, its arguments checked."""

from __future__ import annotations

import textwrap

import pytest

from orchestrator.playbook import load_playbook_text
from orchestrator.playbook.actions import get_action
from orchestrator.playbook.loader import PlaybookInvalid

PLAYBOOK = """
id: chat-test
name: Chat test
stage: adopt
maintainer: revops@acme.example
review_every: 365d
enroll:
  on: product.usage
steps:
  - id: tell
    kind: automated
    oversight: out_of_loop
    risk: {{error_cost: low, correction: fast}}
    do: {action}
    with: {args}
"""


def _load(action: str, args: str):
    return load_playbook_text(textwrap.dedent(PLAYBOOK.format(action=action, args=args)), "chat.yaml")


def test_notify_chat_is_an_internal_chat_action():
    spec = get_action("notify.chat")
    assert (spec.customer_facing, spec.target, spec.required) == (False, "chat", ("to", "text"))
    # A customer email is an email: the smtp connector sends it (routing: email -> smtp).
    assert get_action("customer.email").target == "email"


@pytest.mark.parametrize("to", ["account.owner", "owner.manager", "account.csm", "ana@acme.example",
                                "'{{ owner.email }}'"])
def test_notify_chat_accepts_a_person_reference_an_email_or_a_template(to):
    playbook = _load("notify.chat", f"{{to: {to}, text: 'Usage dropped at {{{{ account.name }}}}'}}")
    assert playbook.steps[0].call.action == "notify.chat"


def _messages(action: str, args: str) -> str:
    with pytest.raises(PlaybookInvalid) as caught:
        _load(action, args)
    return str(caught.value)


def test_notify_chat_without_text_names_the_missing_argument():
    assert 'notify.chat needs text under "with"' in _messages("notify.chat", "{to: account.owner}")


def test_notify_chat_with_an_unknown_argument_is_refused():
    assert 'notify.chat has no argument "channel"' in _messages(
        "notify.chat", "{to: account.owner, text: hi, channel: general}")


def test_a_recipient_that_is_neither_a_reference_nor_an_email_is_refused_with_a_hint():
    text = _messages("notify.chat", "{to: owner.manger, text: hi}")
    assert '"owner.manger" is not a recipient' in text and "owner.manager" in text


def test_a_literal_webhook_url_must_be_http():
    assert "is not a webhook URL" in _messages("notify.webhook", "{url: 'ftp://hooks.example/x'}")
