"""Every JSON body: text that no column takes (NUL, a lone surrogate) is a 422 naming the field, nothing stored."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from orchestrator.db import unit_of_work
from orchestrator.models import AuditEvent, OutboxMessage, SlaEvent, TaskFeedback

# (path with {sams}/{journey}, body with BAD where the bad text goes, the field named; None: the key itself)
ROUTES = [
    ("/tasks/{sams}/wait", {"reason": "BAD"}, "reason"),
    ("/tasks/{sams}/feedback", {"useful": False, "note": "BAD"}, "note"),
    ("/tasks/{sams}/reassign", {"owner_email": "rita@acme.example", "reason": "BAD"}, "reason"),
    ("/tasks/{sams}/decision", {"outcome": "done", "text": "BAD"}, "text"),
    ("/journeys/{journey}/end", {"reason": "BAD"}, "reason"),
    ("/journeys/{journey}/retry", {"note": "BAD"}, "note"),
    ("/journeys/{journey}/steps/1/override", {"reason": "BAD"}, "reason"),
    ("/tasks/{sams}/feedback", {"useful": False, "BAD": 1}, None),  # a bad key: named JSON-style
]


def _stored(world) -> tuple[int, ...]:
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        return tuple(session.scalar(select(func.count()).select_from(model))
                     for model in (AuditEvent, OutboxMessage, SlaEvent, TaskFeedback))


@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"], ids=["nul", "surrogate"])
def test_unstorable_text_in_any_body_is_a_422_naming_the_field_and_nothing_is_stored(world, bad):
    before = _stored(world)
    for path, body, field in ROUTES:
        text = json.dumps(body).replace('"BAD"', json.dumps(bad))  # escapes, as a client would send them
        response = world.call("POST", path.format(sams=world.ids["sams_task"], journey=world.ids["journey"]),
                              "admin", data=text, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, (path, response.get_json())
        assert response.mimetype == "application/problem+json"
        expected = field or json.dumps(bad)
        assert response.get_json()["field"] == expected, (path, response.get_json())
    assert _stored(world) == before
