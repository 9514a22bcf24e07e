from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from orchestrator import audit, schema
from orchestrator.audit import AuditAction
from orchestrator.cli import main
from orchestrator.db import make_engine
from orchestrator.models import Account, ExternalId
from tests.factories import AccountFactory


def test_timeline_is_in_time_order_with_ties_in_recording_order(session, clock):
    account = AccountFactory()
    other = AccountFactory()
    t0 = clock.now()
    audit.record(session, at=t0 + timedelta(hours=1), action=AuditAction.TASK_CREATED, reason="second",
                 account_id=account.id)
    audit.record(session, at=t0, action=AuditAction.ENROLLED, reason="first", account_id=account.id)
    audit.record(session, at=t0 + timedelta(hours=1), action=AuditAction.STEP_WAITING, reason="third",
                 account_id=account.id)
    audit.record(session, at=t0, action=AuditAction.ENROLLED, reason="someone else", account_id=other.id)

    events = audit.timeline(session, account_id=account.id)

    assert [e.reason for e in events] == ["first", "second", "third"]


def test_a_timeline_line_names_time_playbook_version_step_action_actor_rule_and_reason(session, clock):
    account = AccountFactory()
    audit.record(session, at=clock.now(), action=AuditAction.TASK_CREATED, reason="owner is the account owner",
                 rule="assign.to=account.owner", account_id=account.id, playbook_id="onboard-kickoff",
                 playbook_version=1, step_id="kickoff-call")
    audit.record(session, at=clock.now() + timedelta(minutes=5), action=AuditAction.APPROVED, reason="",
                 actor="csm@acme.example", account_id=account.id)

    lines = audit.render_timeline(audit.timeline(session, account_id=account.id))

    assert lines == [
        "2026-11-23 14:00Z  onboard-kickoff v1  kickoff-call  task_created  by system  "
        "[assign.to=account.owner] owner is the account owner",
        "2026-11-23 14:05Z  -  -  approved  by csm@acme.example",
    ]


def test_audit_command_prints_the_timeline_of_an_account_named_by_domain_id_or_external_id(fresh_database):
    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    with Session(engine) as session:
        account = Account(name="Acme", domain="acme.example")
        session.add(account)
        session.flush()
        session.add(ExternalId(kind="account", local_id=account.id, source="salesforce", external_id="001A"))
        from datetime import UTC, datetime
        audit.record(session, at=datetime(2026, 11, 23, 14, 0, tzinfo=UTC), action=AuditAction.ENROLLED,
                     reason="deal.amount >= 10000", rule="enroll.when", account_id=account.id,
                     playbook_id="onboard-kickoff", playbook_version=2)
        session.commit()
        account_id = account.id
    engine.dispose()
    env = {"HANDOFF_DATABASE_URL": fresh_database.render_as_string(hide_password=False)}
    runner = CliRunner()

    for ref in ("acme.example", "ACME.example", str(account_id), "salesforce:001A"):
        result = runner.invoke(main, ["audit", ref], env=env)
        assert result.exit_code == 0, result.output
        assert result.output.splitlines() == [
            f"Acme (account {account_id}, acme.example): 1 event",
            "2026-11-23 14:00Z  onboard-kickoff v2  -  enrolled  by system  [enroll.when] deal.amount >= 10000",
        ]

    missing = runner.invoke(main, ["audit", "nobody.example"], env=env)
    assert missing.exit_code == 2
    assert "no account matches 'nobody.example'" in missing.output


@pytest.mark.parametrize("action", list(AuditAction))
def test_every_action_name_fits_the_column(action):
    assert len(action.value) <= 40
