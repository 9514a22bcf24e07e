"""GET /tasks/{id}: the stored brief (the CRM's snapshot) and the brief rendered from current data."""

from datetime import timedelta

from orchestrator.db import unit_of_work
from orchestrator.models import Signal, Task
from tests.conftest import T0


def test_the_task_detail_carries_the_live_brief_with_signals_since_the_task_marked_new(world):
    approval = world.ids["approval"]
    with unit_of_work(world.runtime.sessions) as session:
        task = session.get(Task, approval)
        task.created_at = T0
        task.brief_text = "Why you got this\n- as created"
        session.add(Signal(type="support.escalation", dedupe_key="esc-1", source="zendesk",
                           account_id=world.ids["own"], occurred_at=T0 + timedelta(minutes=30),
                           received_at=T0 + timedelta(minutes=30),
                           payload={"ticket_id": "ZD-7", "severity": "urgent", "subject": "Checkout is down"}))

    response = world.call("GET", f"/tasks/{approval}", "mia")

    assert response.status_code == 200, response.json
    body = response.json
    assert body["brief_text"] == "Why you got this\n- as created"  # the snapshot is untouched
    live = body["brief_live"]
    assert live.startswith("Why you got this\n- Signal: discount.requested (discount.requested)")
    assert "- Made by: playbook discount version 1" in live
    assert "1 new signal(s) since the task was created (2026-11-23 14:00 UTC), marked [new]" in live
    assert '- Open high-severity ticket ZD-7 (urgent), 2026-11-23 (today): "Checkout is down"' in live
    assert "- Requested by: Sam Rep <sam@acme.example>" in live  # a person by name, not an email
