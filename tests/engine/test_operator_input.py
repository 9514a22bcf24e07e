"""Operator input at the CLI: who acts must be named, and ids must be ids (one line each, nothing changes)."""

from __future__ import annotations

import pytest

from orchestrator.models import AuditEvent, Task
from tests.engine.test_operator_cli import _kickoff, operator  # noqa: F401 - the fixture

HUGE = "9" * 25
BEYOND_INT32 = str(2**31)


@pytest.mark.parametrize("by", ["", "   ", "\t"])
def test_a_blank_actor_is_refused_and_nothing_is_decided(operator, by):  # noqa: F811
    _kickoff(operator)
    task = operator.one(Task)
    events = operator.count(AuditEvent)

    result = operator("tasks", "decide", str(task.id), "done", "--by", by)

    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["handoff: error: --by: must name who acts (an email), not be empty"]
    assert operator.one(Task).status == task.status
    assert operator.count(AuditEvent) == events


def test_an_actor_is_recorded_without_surrounding_spaces(operator):  # noqa: F811
    _kickoff(operator)
    task = operator.one(Task)
    result = operator("tasks", "decide", str(task.id), "done", "--by", "  gavin@acme.example ")
    assert result.exit_code == 0, result.output
    assert operator.one(Task).completed_by == "gavin@acme.example"


@pytest.mark.parametrize("command", [
    ["tasks", "show", "{id}"],
    ["tasks", "decide", "{id}", "done", "--by", "gavin@acme.example"],
    ["tasks", "ack", "{id}", "--by", "gavin@acme.example"],
    ["journeys", "show", "{id}"],
    ["journeys", "retry", "{id}", "--by", "gavin@acme.example"],
    ["journeys", "end", "{id}", "--by", "gavin@acme.example"],
    ["journeys", "override", "{id}", "--by", "gavin@acme.example"],
    ["exceptions", "resolve", "{id}", "--by", "gavin@acme.example"],
])
@pytest.mark.parametrize("bad", [HUGE, BEYOND_INT32, "0", "12abc"])
def test_an_id_outside_the_database_range_is_one_line(operator, command, bad):  # noqa: F811
    result = operator(*[part.format(id=bad) for part in command])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("handoff: error: ") and "_ID: " in lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)
