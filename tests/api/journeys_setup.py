"""Real journeys in the API's world: a hybrid review and an on-the-loop step, run by the engine."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from orchestrator.db import unit_of_work
from orchestrator.intake import signals
from orchestrator.journeys import engine
from orchestrator.models import Account, StepRun, Task
from tests.engine.conftest import HEADER, install_playbook

REVIEW = """
    id: rescue
    name: Rescue
    stage: acquire
""" + HEADER + """
    enroll: {on: product.usage}
    steps:
      - id: rescue-email
        kind: hybrid
        draft: "Hi {{ account.name }}, shall we book 20 minutes?"
        publish:
          do: customer.email
          with: {to: "team@customer.example", subject: "Getting started", body: "{{ draft }}"}
        assign: {to: account.owner}
        task:
          title: "Review the rescue email for {{ account.name }}"
          recommend: "Edit the draft if needed, then publish."
          brief: [trigger, account]
        sla: {due: 1 business day}
      - id: done
        kind: exit
        reason: sent
"""

FLAG = """
    id: flag
    name: Flag
    stage: acquire
""" + HEADER + """
    enroll: {on: support.escalation}
    steps:
      - id: flag-health
        kind: automated
        oversight: on_the_loop
        risk: {error_cost: low, correction: fast}
        do: crm.update_field
        with: {field: health, value: "at risk"}
        override:
          window: 4h
          compensate: {do: crm.create_note, with: {body: "Health flag withdrawn."}}
      - id: flagged
        kind: exit
        reason: flagged
"""


WELCOME = """
    id: welcome
    name: Welcome
    stage: acquire
""" + HEADER + """
    enroll: {on: expansion.signal}
    steps:
      - id: welcome-email
        kind: automated
        oversight: on_the_loop
        risk: {error_cost: low, correction: fast}
        do: customer.email
        with: {to: buyer@customer.example, subject: "Hello {{ account.name }}", body: "Your kickoff is booked."}
        override:
          window: 2h
      - id: done
        kind: exit
        reason: welcomed
"""


def run_playbook(world: Any, text: str, signal_type: str, account_key: str = "own") -> None:
    """Install `text` and send one `signal_type` for the account, through intake and the engine."""
    rt = world.runtime
    with unit_of_work(rt.sessions) as session:
        install_playbook(session, text)
        account = session.get(Account, world.ids[account_key])
        result = signals.ingest(session=session, raw={
            "type": signal_type, "account": {"id": account.id}, "payload": {},
            "occurred_at": rt.clock.now().isoformat()}, source="test", now=rt.clock.now(), settings=rt.settings)
        assert result.status == "accepted", result
        engine.process_pending(session=session, settings=rt.settings, now=rt.clock.now())


def review_task(world: Any, account_key: str = "own") -> int:
    run_playbook(world, REVIEW, "product.usage", account_key)
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        return session.scalars(select(Task.id).where(Task.kind == "review")).one()


def override_run(world: Any, account_key: str = "own", *, text: str = FLAG,
                 signal_type: str = "support.escalation") -> tuple[int, int]:
    """(journey id, step run id) of an on-the-loop step whose override window is open."""
    run_playbook(world, text, signal_type, account_key)
    with unit_of_work(world.runtime.sessions, read_only=True) as session:
        step_run = session.scalars(select(StepRun).where(StepRun.override_until.is_not(None))).one()
        return step_run.journey_id, step_run.id
