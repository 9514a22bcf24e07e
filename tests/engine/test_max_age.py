"""A playbook's enroll.max_age refuses stale signals with a reason in the audit trail."""

from __future__ import annotations

import textwrap
from datetime import timedelta

from sqlalchemy import select

from orchestrator.models import AuditEvent, Journey
from orchestrator.playbook.loader import validate_paths
from tests.engine.conftest import HEADER, install_playbook
from tests.factories import AccountFactory

FRESH_ONLY = """
    id: fresh-only
    name: Fresh only
    stage: onboard
""" + HEADER + """
    enroll: {on: deal.closed_won, max_age: 14d}
    steps:
      - id: done
        kind: exit
        reason: enrolled
"""


def test_a_signal_older_than_max_age_enrolls_nobody_and_says_why(session, feed, clock):
    install_playbook(session, FRESH_ONLY)
    account = AccountFactory()
    feed("deal.closed_won", account, {"amount": 50000}, at=clock.now() - timedelta(days=27))
    assert session.scalars(select(Journey)).all() == []
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "not_enrolled")).one()
    assert event.rule == "enroll.on: deal.closed_won max_age: 14d"
    assert event.reason.startswith("the signal is 27 days old (occurred ")
    assert event.reason.endswith("older than max_age 14d")


def test_a_signal_younger_than_max_age_enrolls(session, feed, clock):
    install_playbook(session, FRESH_ONLY)
    account = AccountFactory()
    feed("deal.closed_won", account, {"amount": 50000}, at=clock.now() - timedelta(days=13))
    assert len(session.scalars(select(Journey)).all()) == 1


def test_max_age_in_business_time_is_refused_with_its_position(tmp_path):
    path = tmp_path / "stale.yaml"
    text = FRESH_ONLY.replace("max_age: 14d", "max_age: 10 business days")
    path.write_text(textwrap.dedent(text))
    lines = textwrap.dedent(text).splitlines()
    enroll_line = next(n for n, line in enumerate(lines, 1) if line.startswith("enroll:"))
    findings = validate_paths([path], last_changed=None)
    errors = [f for f in findings if f.severity == "error"]
    assert errors, findings
    assert "wall-clock time" in errors[0].message and errors[0].line == enroll_line
