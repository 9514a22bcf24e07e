"""Journey migration: a journey parked by a playbook bug moves to the fixed version and completes.

On SQLite and PostgreSQL; the CLI (`journeys migrate`, `journeys retry --latest`) on a database of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from orchestrator.errors import Conflict
from orchestrator.journeys import engine
from orchestrator.journeys.migration import migrate_journeys
from orchestrator.models import AuditEvent, ExceptionItem, Journey
from tests.engine.conftest import HEADER, install_playbook
from tests.engine.test_operator_cli import Operator
from tests.factories import AccountFactory

# Version 1 has a bug: the branch has no rule for a small drop and no otherwise, so such an
# account's journey parks at "triage" (unmatched_branch).
BROKEN = """
    id: usage-triage
    name: Usage triage
    stage: adopt
""" + HEADER + """
    enroll: {on: product.usage}
    steps:
      - id: triage
        kind: branch
        rules:
          - when: "signal.usage_change_pct <= -50"
            goto: big-drop
      - id: big-drop
        kind: automated
        oversight: out_of_loop
        risk: {error_cost: low, correction: fast}
        do: crm.create_note
        with: {body: "Big usage drop"}
      - id: wait-recovery
        kind: wait
        for: product.usage
        timeout: 7d
        on_timeout: {exit: true}
      - id: done
        kind: exit
        reason: triaged
"""

# Version 2 fixes it (an otherwise) and drops the wait step.
FIXED = BROKEN.replace('''            goto: big-drop
''', '''            goto: big-drop
        otherwise: {goto: done}
''').replace('''      - id: wait-recovery
        kind: wait
        for: product.usage
        timeout: 7d
        on_timeout: {exit: true}
''', "")


def _journey(session, account) -> Journey:
    return session.scalars(select(Journey).where(Journey.account_id == account.id)).one()


def test_a_parked_journey_is_migrated_to_the_fixed_version_and_completes(session, feed, settings, clock):
    broken = install_playbook(session, BROKEN)
    parked_account, waiting_account = AccountFactory(name="Initech"), AccountFactory(name="Globex")
    feed("product.usage", parked_account, {"usage_change_pct": -20})
    feed("product.usage", waiting_account, {"usage_change_pct": -70})
    parked, waiting = _journey(session, parked_account), _journey(session, waiting_account)
    assert (parked.status, parked.current_step_id) == ("stalled", "triage")
    assert (waiting.status, waiting.current_step_id) == ("waiting", "wait-recovery")
    fixed = install_playbook(session, FIXED)
    assert fixed.version == 2

    clock.advance(timedelta(hours=1))
    dry = migrate_journeys(session=session, playbook_id="usage-triage", to_version=2, actor="ops@acme.example",
                           now=clock.now(), dry_run=True)
    assert [(m.journey_id, m.moved) for m in dry.journeys] == [(parked.id, True), (waiting.id, False)]
    assert parked.playbook_version_id == broken.id  # a dry run changes nothing
    assert session.scalar(select(func.count()).select_from(AuditEvent)
                          .where(AuditEvent.action == "journey_migrated")) == 0

    report = migrate_journeys(session=session, playbook_id="usage-triage", to_version=2, actor="ops@acme.example",
                              now=clock.now())
    assert [m.journey_id for m in report.moved] == [parked.id]
    [blocked] = report.blocked
    assert blocked.journey_id == waiting.id
    assert blocked.reason == 'step "wait-recovery" does not exist in version 2'
    assert parked.playbook_version_id == fixed.id and parked.status == "stalled"
    assert waiting.playbook_version_id == broken.id and waiting.status == "waiting"  # left exactly as it was
    [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "journey_migrated")).all()
    assert (event.journey_id, event.playbook_version, event.detail) == (parked.id, 2, {"from_version": 1,
                                                                                      "to_version": 2})
    assert event.actor == "ops@acme.example"

    engine.retry_journey(session=session, settings=settings, journey_id=parked.id, actor="ops@acme.example",
                         now=clock.now(), note="branch fixed in v2")
    assert parked.status == "completed" and parked.end_reason == "exit step done: triaged"
    assert session.scalars(select(ExceptionItem).where(ExceptionItem.journey_id == parked.id)).one().status \
        == "resolved"


def test_retry_latest_moves_the_journey_to_the_active_version_first(session, feed, settings, clock):
    install_playbook(session, BROKEN)
    account = AccountFactory()
    feed("product.usage", account, {"usage_change_pct": -10})
    journey = _journey(session, account)
    # Retried on its own (broken) version it parks again.
    engine.retry_journey(session=session, settings=settings, journey_id=journey.id, actor="ops@acme.example",
                         now=clock.now())
    assert journey.status == "stalled"
    fixed = install_playbook(session, FIXED)
    engine.retry_journey(session=session, settings=settings, journey_id=journey.id, actor="ops@acme.example",
                         now=clock.now(), latest=True)
    assert journey.playbook_version_id == fixed.id and journey.status == "completed"


def test_retry_latest_refuses_a_journey_whose_step_the_active_version_lacks(session, feed, settings, clock):
    install_playbook(session, BROKEN)
    account = AccountFactory()
    feed("product.usage", account, {"usage_change_pct": -10})
    journey = _journey(session, account)
    install_playbook(session, FIXED.replace("id: triage", "id: sort").replace("steps:\n", "steps:\n", 1))
    with pytest.raises(Conflict, match='step "triage" does not exist in version 2'):
        engine.retry_journey(session=session, settings=settings, journey_id=journey.id, actor="ops@acme.example",
                             now=clock.now(), latest=True)


def test_a_step_whose_kind_changed_is_not_moved(session, feed, clock):
    install_playbook(session, BROKEN)
    account = AccountFactory()
    feed("product.usage", account, {"usage_change_pct": -70})  # waits at wait-recovery
    install_playbook(session, BROKEN.replace('''      - id: wait-recovery
        kind: wait
        for: product.usage
        timeout: 7d
        on_timeout: {exit: true}
''', '''      - id: wait-recovery
        kind: automated
        oversight: out_of_loop
        risk: {error_cost: low, correction: fast}
        do: crm.create_note
        with: {body: "no wait"}
'''))
    [blocked] = migrate_journeys(session=session, playbook_id="usage-triage", to_version=2, actor="ops@acme.example",
                                 now=clock.now()).blocked
    assert "changed kind from wait (version 1) to automated (version 2)" in blocked.reason


def test_migrating_to_a_version_that_was_never_stored_names_the_stored_ones(session, clock):
    install_playbook(session, BROKEN)
    with pytest.raises(engine.EngineError, match=r"no version 9 \(stored: 1\)"):
        migrate_journeys(session=session, playbook_id="usage-triage", to_version=9, actor="ops@acme.example",
                         now=clock.now())


def test_the_cli_migrates_with_a_dry_run_first_and_retry_offers_the_latest_version(fresh_database):
    operator = Operator(fresh_database)
    try:
        at = datetime.now(UTC)
        with operator.session() as session:
            install_playbook(session, BROKEN)
            account = AccountFactory(name="Initech")
            operator.signal(session, "product.usage", account, at=at, payload={"usage_change_pct": -20})
            journey_id = _journey(session, account).id
        with operator.session() as session:
            install_playbook(session, FIXED)

        retried = operator("journeys", "retry", str(journey_id), "--by", "ops@acme.example")
        assert retried.exit_code == 0, retried.output
        assert f"version 2 of usage-triage is active: if it fixes this, run handoff journeys retry {journey_id} " \
               "--latest" in retried.output

        dry = operator("journeys", "migrate", "--playbook", "usage-triage", "--to-version", "2",
                       "--by", "ops@acme.example", "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert "usage-triage: would move 1 journeys to version 2; 0 cannot move" in dry.output
        assert operator.count(AuditEvent, AuditEvent.action == "journey_migrated") == 0

        moved = operator("journeys", "migrate", "--playbook", "usage-triage", "--to-version", "2",
                         "--by", "ops@acme.example")
        assert "usage-triage: moved 1 journeys to version 2" in moved.output
        assert operator.count(AuditEvent, AuditEvent.action == "journey_migrated") == 1
        done = operator("journeys", "retry", str(journey_id), "--by", "ops@acme.example")
        assert done.exit_code == 0 and "on usage-triage v2: completed" in done.output, done.output
    finally:
        operator.engine.dispose()
