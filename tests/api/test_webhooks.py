"""Signed signal webhooks: accepted when signed and fresh; stale, tampered, unsigned or replayed: refused."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from orchestrator.api.routes.webhooks import signature
from orchestrator.db import unit_of_work
from orchestrator.models import Signal

SECRET = "whsec-test-only"
BODY = json.dumps({"type": "support.ticket", "account": {"domain": "sams.example"},
                   "occurred_at": "2026-11-23T14:00:00Z", "payload": {"severity": "high"}}).encode()


@pytest.fixture
def signed(world, monkeypatch):
    monkeypatch.setenv("HANDOFF_WEBHOOK_SECRET_ZENDESK", SECRET)
    now = int(world.runtime.clock.now().timestamp())

    def post(body=BODY, *, at=now, sig=None):
        stamp = str(at)
        headers = {"X-Handoff-Timestamp": stamp,
                   "X-Handoff-Signature": sig or signature(secret=SECRET.encode(), timestamp=stamp, body=body),
                   "Content-Type": "application/json"}
        return world.client.post("/webhooks/signals/zendesk", data=body, headers=headers)
    return post


def _stored(world) -> int:
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        return session.scalar(select(func.count()).select_from(Signal).where(Signal.source == "webhook:zendesk"))


def test_a_signed_fresh_webhook_is_ingested(world, signed):
    response = signed()
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["accepted"] == 1
    assert _stored(world) == 1


def test_a_replayed_webhook_is_refused_and_stores_nothing_more(world, signed):
    assert signed().status_code == 200
    again = signed()
    assert again.status_code == 409
    assert again.get_json()["type"] == "/problems/replay"
    assert _stored(world) == 1


@pytest.mark.parametrize("case", ["stale", "future", "tampered", "wrong-secret", "unsigned"])
def test_a_bad_webhook_is_401_and_stores_nothing(world, signed, case):
    now = int(world.runtime.clock.now().timestamp())
    if case == "stale":
        response = signed(at=now - 301)
    elif case == "future":
        response = signed(at=now + 301)
    elif case == "tampered":
        good = signature(secret=SECRET.encode(), timestamp=str(now), body=BODY)
        response = signed(body=BODY.replace(b"high", b"low!"), sig=good)
    elif case == "wrong-secret":
        response = signed(sig=signature(secret=b"other", timestamp=str(now), body=BODY))
    else:
        response = world.client.post("/webhooks/signals/zendesk", data=BODY)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert _stored(world) == 0


def test_an_unknown_source_is_404(world, signed):
    assert world.client.post("/webhooks/signals/nobody", data=BODY).status_code == 404


def test_a_signed_but_malformed_signal_is_422_naming_the_field_and_stores_nothing(world, signed):
    body = json.dumps({"type": "support.ticket", "account": {"domain": "sams.example"},
                       "occurred_at": "yesterday"}).encode()
    response = signed(body=body)
    assert response.status_code == 422
    assert response.get_json()["field"] == "occurred_at"
    assert _stored(world) == 0
    assert signed(body=body).status_code == 422  # the refused request left no receipt behind
