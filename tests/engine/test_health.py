"""Health scores end to end, on SQLite and PostgreSQL: the shipped account-health model scored by
hand, its history and contributions, one health.dropped per fall (enrolling the CSM's review), the
brief's top reasons, `account.health` in a condition, an imported CRM score, a malformed model's
located errors, and the scheduler's recompute job."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from orchestrator import schema
from orchestrator.config import load_settings
from orchestrator.db import unit_of_work
from orchestrator.models import Account, AccountHealth, HealthScore, Journey, Owner, PlaybookVersion, Signal, Task
from orchestrator.playbook import check_text
from orchestrator.resources import shipped_playbooks_dir
from orchestrator.runtime import Runtime, build_runtime
from orchestrator.worker.jobs import all_jobs, run_at
from tests.conftest import T0
from tests.engine.conftest import HEADER, install_playbook
from tests.factories import AccountFactory, OwnerFactory

SHIPPED = shipped_playbooks_dir() / "adopt" / "account-health.yaml"
# T0 is Monday 2026-11-23 14:00 UTC: 7d windows are ISO weeks, 30d windows run 2026-11-16 to 12-16.
WEEK = timedelta(days=7)


@pytest.fixture
def model(session):
    return install_playbook(session, SHIPPED.read_text(), "adopt/account-health.yaml")


@pytest.fixture
def account():
    csm = OwnerFactory(name="Cleo CSM", email="cleo@acme.example", role="csm")
    return AccountFactory(name="Initech", stage="adopt", csm=csm, health=None, renewal_date=T0 + timedelta(days=60))


def _history(session, account):
    return session.scalars(select(HealthScore).where(HealthScore.account_id == account.id)
                           .order_by(HealthScore.id)).all()


def _dropped(session, account):
    return session.scalars(select(Signal).where(Signal.account_id == account.id, Signal.type == "health.dropped")
                           .order_by(Signal.id)).all()


def _contributions(row):
    return {c["id"]: (c["value"], c["max_points"], c["points"]) for c in row.contributions}


def test_scores_and_contributions_match_the_hand_computed_ones(session, feed, clock, model, account):
    # Last week's usage alone: no week before it, so the usage trend has no value and the three
    # other measures share the weights (25+15+20 = 60): tickets 0 -> 41.67 of 41.67, sentiment
    # 0 -> 25 of 25, 60 days to renewal -> half of 33.33 = 16.67; 83.33 rounds to 83.
    feed("product.usage", account, {"active_users": 50}, at=clock.now() - WEEK)
    # One high-severity ticket of the 3 that score nothing: 2/3 of 41.67 = 27.78; 69.44 -> 69.
    feed("support.ticket_opened", account, {"ticket_id": "T-1", "severity": "high"})
    feed("support.ticket_opened", account, {"ticket_id": "T-2", "severity": "low"})  # not counted
    # This week 40 against 50: -20%, half way to -40; all four weigh in (100):
    # 20 + 25 * 2/3 + 15 + 10 = 61.67 -> 62.
    feed("product.usage", account, {"active_users": 40})

    assert [(row.score, row.previous) for row in _history(session, account)] == [(83, None), (69, 83), (62, 69)]
    last = _history(session, account)[-1]
    assert _contributions(last) == {
        "usage_trend": (-20.0, 40.0, 20.0),
        "high_severity_tickets": (1.0, 25.0, pytest.approx(16.67)),
        "negative_sentiment": (0.0, 15.0, 15.0),
        "renewal_runway": (60.0, 20.0, 10.0),
    }
    assert last.trigger.startswith("signal:") and last.source == "computed"
    first = _history(session, account)[0]
    assert _contributions(first)["usage_trend"] == (None, None, None)
    assert _contributions(first)["high_severity_tickets"] == (0.0, pytest.approx(41.67), pytest.approx(41.67))
    state = session.get(AccountHealth, account.id)
    assert (state.score, state.playbook_id) == (62, "account-health")


def test_a_fall_sends_one_health_dropped_and_the_csm_gets_the_top_reasons(
        session, feed, clock, settings, model, account):
    feed("product.usage", account, {"active_users": 50}, at=clock.now() - WEEK)  # 83
    feed("support.ticket_opened", account, {"ticket_id": "T-1", "severity": "high"})  # 69: 14 down, not 15
    assert _dropped(session, account) == []
    feed("product.usage", account, {"active_users": 40})  # 62: 21 below the peak of 83
    feed.process()  # the health.dropped signal is evaluated in the next pass

    (dropped,) = _dropped(session, account)
    assert dropped.source == "health"
    assert (dropped.payload["score"], dropped.payload["previous"], dropped.payload["peak"]) == (62, 69, 83)
    assert dropped.payload["rule"] == "by 21 from 83"
    reasons = ("Usage trend (active users, week on week): -20% (20 of 40 points); Days to renewal: 60 (10 of 20 "
               "points); High-severity tickets (30 days): 1 (16.7 of 25 points)")
    assert dropped.payload["reasons"] == reasons
    assert _history(session, account)[-1].dropped_signal_id == dropped.id

    (task,) = session.scalars(select(Task).where(Task.account_id == account.id)).all()
    assert task.owner.email == "cleo@acme.example"
    assert task.title == "Health of Initech fell to 62 (from 69)"
    assert task.recommendation.startswith(f"Top reasons: {reasons}.")

    # The same score again, by signal and by the scheduler's rescoring: no row, no second signal.
    feed("support.ticket_opened", account, {"ticket_id": "T-3", "severity": "low"})
    from orchestrator.journeys.health import active_model, rescore
    from orchestrator.journeys.steps import Run
    run = Run(session, settings, clock.now())
    playbook_id, health_model = active_model(run.playbooks())
    for _ in range(2):
        assert rescore(run, account, playbook_id=playbook_id, model=health_model, at=clock.now(),
                       trigger="scheduler") is None
    feed.process()
    assert len(_dropped(session, account)) == 1 and len(_history(session, account)) == 3

    # Crossing below 60 is a fall of its own: negative sentiment takes 7.5 points (62 -> 54).
    feed("sentiment.negative", account, {"channel": "email", "score": -0.8})
    feed.process()
    assert [s.payload["rule"] for s in _dropped(session, account)] == ["by 21 from 83", "below 60"]


def test_the_brief_shows_the_score_and_what_costs_it_most(session, feed, clock, model, account):
    feed("product.usage", account, {"active_users": 50}, at=clock.now() - WEEK)
    feed("support.ticket_opened", account, {"ticket_id": "T-1", "severity": "high"})
    feed("product.usage", account, {"active_users": 40})
    feed.process()
    (task,) = session.scalars(select(Task).where(Task.account_id == account.id)).all()
    assert task.brief["health"]["score"] == 62
    assert task.brief["health"]["reasons"][0] == "Usage trend (active users, week on week): -20% (20 of 40 points)"
    text = task.brief_text
    assert "Health\n- Score: 62/100 (health model account-health, 2026-11-23 14:00 UTC)\n" \
           "- Costs most: Usage trend (active users, week on week): -20% (20 of 40 points)\n" \
           "- Costs most: Days to renewal: 60 (10 of 20 points)\n" in text
    assert text.index("Health\n") < text.index("Recommendation\n")
    assert "Health: 62" in text  # the account section shows the model's score, not the CRM field


LOW_HEALTH = """
    id: low-health-expansion
    name: Low-health expansion check
    stage: expand
""" + HEADER + """
    enroll: {on: expansion.signal, when: "account.health < 65"}
    steps:
      - {id: done, kind: exit, reason: checked}
"""


def test_a_condition_on_account_health_reads_the_models_score_else_the_crm_field(
        session, feed, clock, model, account):
    install_playbook(session, LOW_HEALTH, "expand/low.yaml")
    feed("product.usage", account, {"active_users": 50}, at=clock.now() - WEEK)
    feed("product.usage", account, {"active_users": 40})  # no tickets: 20 + 25 + 15 + 10 = 70
    assert session.get(AccountHealth, account.id).score == 70
    healthy_crm = AccountFactory(name="Globex", health=90)  # never scored: the CRM's 90 counts
    unhealthy_crm = AccountFactory(name="Umbrella", health=40)
    for who in (account, healthy_crm, unhealthy_crm):
        feed("expansion.signal", who, {"reason": "seats"})
    enrolled = set(session.scalars(select(Journey.account_id).where(Journey.playbook_id == "low-health-expansion")))
    assert enrolled == {unhealthy_crm.id}

    feed("support.ticket_opened", account, {"ticket_id": "T-9", "severity": "high"})  # 70 -> 62
    feed("expansion.signal", account, {"reason": "more seats"})
    enrolled = set(session.scalars(select(Journey.account_id).where(Journey.playbook_id == "low-health-expansion")))
    assert enrolled == {unhealthy_crm.id, account.id}


IMPORTED = """
    id: crm-health
    name: CRM health
    stage: adopt
""" + HEADER + """
    health:
      imported: account.health
      dropped: {below: 50}
      measures:
        - {id: tickets, on: support.ticket_opened, measure: count, over: 30d, weight: 1, worst: 2, best: 0}
    enroll: {on: health.dropped}
    steps:
      - {id: done, kind: exit, reason: seen}
"""


def test_an_imported_crm_score_is_the_score_when_the_account_has_one(session, feed, settings, clock):
    install_playbook(session, IMPORTED, "adopt/crm-health.yaml")
    from_crm = AccountFactory(name="Hooli", health=55)
    without = AccountFactory(name="Pied Piper", health=None)
    for who in (from_crm, without):
        feed("support.ticket_opened", who, {"ticket_id": "T-1"})
    assert (session.get(AccountHealth, from_crm.id).score, session.get(AccountHealth, from_crm.id).source) \
        == (55, "imported")
    assert (session.get(AccountHealth, without.id).score, session.get(AccountHealth, without.id).source) \
        == (50, "computed")  # one ticket of two: half the only measure's points

    from_crm.health = 30  # the next CRM sync brings a lower score: rescored, it falls below 50
    from orchestrator.journeys.health import active_model, rescore
    from orchestrator.journeys.steps import Run
    run = Run(session, settings, clock.now())
    playbook_id, health_model = active_model(run.playbooks())
    row = rescore(run, from_crm, playbook_id=playbook_id, model=health_model, at=clock.now(), trigger="scheduler")
    assert (row.score, row.previous, row.source, row.contributions) == (30, 55, "imported", [])
    (dropped,) = _dropped(session, from_crm)
    assert dropped.payload["rule"] == "below 50" and dropped.payload["reasons"] == "the imported score fell"


MALFORMED = """\
id: bad-health
name: Bad health
stage: adopt
maintainer: revops@acme.example
health:
  dropped: {}
  measures:
    - id: usage
      on: product.usage
      over: 7d
      read: chnage
      weight: -5
      worst: 0
      best: 10
    - id: runway
      value: account.days_to_renewl
      weight: 1
      worst: 5
      best: 5
    - {id: both, on: product.usage, value: account.arr, weight: 1, worst: 0, best: 1}
    - {id: sev, on: support.ticket_opened, where: 'signal.severty == "high"', over: 30d, weight: 1, worst: 3, best: 0}
enroll: {on: health.dropped}
steps:
  - {id: done, kind: exit, reason: x}
"""


def test_a_malformed_health_model_is_refused_with_located_errors():
    playbook, findings = check_text(MALFORMED, "adopt/bad-health.yaml")
    assert playbook is None
    located = {(f.line, f.column, f.rule): f.message for f in findings}
    assert located[(6, 12, "schema")].startswith('"dropped" needs "by"')
    assert "did you mean \"change\"" in located[(11, 13, "schema")]
    assert located[(12, 15, "schema")] == "must be more than 0, got -5"
    assert located[(16, 14, "unknown-field")].startswith('"account.days_to_renewl" is not a field of the account '
                                                         '(did you mean "account.days_to_renewal"?)')
    assert "are the same number" in located[(15, 7, "schema")]
    assert "one of the three" in located[(20, 7, "schema")]
    # A filter is checked against the fields of the signals it counts, not those the playbook enrolls on.
    assert located[(21, 52, "unknown-field")].startswith('"signal.severty" is not a field of support.ticket_opened '
                                                         'signals (did you mean "signal.severity"?)')
    assert all(str(f).startswith(f"adopt/bad-health.yaml:{f.line}:{f.column}: error") for f in findings)


# -- the scheduler -----------------------------------------------------------------------------


@pytest.fixture
def runtime(fresh_database: URL) -> Iterator[Runtime]:
    settings = load_settings({"HANDOFF_DATABASE_URL": fresh_database.render_as_string(hide_password=False),
                              "HANDOFF_EXCEPTION_OWNER": "ops@acme.example"})
    runtime = build_runtime(settings)
    schema.upgrade(runtime.engine)
    yield runtime
    runtime.close()


def test_the_recompute_job_rescores_as_time_passes_and_sends_one_drop(runtime: Runtime) -> None:
    with unit_of_work(runtime.sessions) as session:
        install_playbook(session, SHIPPED.read_text(), "adopt/account-health.yaml")
        csm = Owner(email="cleo@acme.example", name="Cleo", role="csm")
        session.add(Account(name="Initech", stage="adopt", csm=csm, renewal_date=T0 + timedelta(days=120)))
        session.add(Account(name="Gone", stage="renew", renewal_date=T0, churned_at=T0 - WEEK))
    (recompute,) = [job for job in all_jobs(runtime) if job.id == "health.recompute"]

    # No signals: tickets and sentiment score in full, 120 days to renewal too: 100.
    assert run_at(recompute, runtime=runtime, now=T0).items == 1
    assert run_at(recompute, runtime=runtime, now=T0 + timedelta(hours=1)).items == 0  # nothing changed
    # 90 days later, 30 to renewal: a quarter of 33.33 -> 41.67 + 25 + 8.33 = 75, 25 below the peak.
    later = datetime(2027, 2, 21, 14, 0, tzinfo=UTC)
    result = run_at(recompute, runtime=runtime, now=later)
    assert (result.items, result.detail) == (1, "1 accounts scored, 1 health.dropped sent")
    assert run_at(recompute, runtime=runtime, now=later).items == 0

    with unit_of_work(runtime.sessions) as session:
        (account_id,) = session.scalars(select(Account.id).where(Account.name == "Initech"))
        rows = session.scalars(select(HealthScore).order_by(HealthScore.id)).all()
        assert [(r.account_id, r.score, r.trigger) for r in rows] == [(account_id, 100, "scheduler"),
                                                                      (account_id, 75, "scheduler")]
        (dropped,) = session.scalars(select(Signal).where(Signal.type == "health.dropped")).all()
        assert dropped.payload["rule"] == "by 25 from 100" and rows[-1].dropped_signal_id == dropped.id
        assert session.get(AccountHealth, account_id).computed_at == later
        session.get(Account, account_id).health = 58  # the CRM's own field
        for version in session.scalars(select(PlaybookVersion).where(PlaybookVersion.playbook_id == "account-health")):
            version.active = False
        session.commit()

    # The model is gone: its current scores go with it and account.health reads the CRM's 58 again.
    run_at(recompute, runtime=runtime, now=later + timedelta(hours=1))
    with unit_of_work(runtime.sessions) as session:
        account = session.get(Account, account_id)
        assert session.get(AccountHealth, account_id) is None and account.health_score == 58
        assert len(session.scalars(select(HealthScore)).all()) == 2  # the history stays


def test_an_account_whose_score_row_is_locked_is_left_for_the_next_run_not_counted_failed(runtime: Runtime) -> None:
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("a second writer holding a row lock: PostgreSQL (SQLite has one writer)")
    with unit_of_work(runtime.sessions) as session:
        install_playbook(session, SHIPPED.read_text(), "adopt/account-health.yaml")
        session.add(Account(name="Initech", stage="adopt", renewal_date=T0 + timedelta(days=120)))
    (recompute,) = [job for job in all_jobs(runtime) if job.id == "health.recompute"]
    assert run_at(recompute, runtime=runtime, now=T0).items == 1  # 100: its score row exists now

    later = T0 + timedelta(days=90)  # 30 days to renewal: the score moves
    with runtime.engine.connect() as other:  # another writer holds the score row until the lock timeout
        other.execute(select(AccountHealth).with_for_update())
        result = run_at(recompute, runtime=runtime, now=later)
        other.rollback()
    assert (result.items, result.errors) == (0, 0)
    assert run_at(recompute, runtime=runtime, now=later).items == 1  # the next run scores it


def test_a_second_health_model_in_the_same_folder_is_a_located_error(tmp_path):
    from orchestrator.playbook import validate_paths

    (tmp_path / "a.yaml").write_text(SHIPPED.read_text())
    second = SHIPPED.read_text().replace("id: account-health", "id: other-health")
    (tmp_path / "b.yaml").write_text(second)
    (finding,) = [f for f in validate_paths([tmp_path], last_changed=None) if f.is_error]
    line = second.splitlines().index("health:") + 1
    assert (finding.path, finding.line, finding.column, finding.rule) == (str(tmp_path / "b.yaml"), line, 1,
                                                                          "duplicate-health-model")
    assert finding.message.startswith(f"{tmp_path / 'a.yaml'} already declares the health model")


ENGAGEMENT = """
    id: engagement-health
    name: Engagement health
    stage: adopt
""" + HEADER + """
    health:
      measures:
        - {id: champion, label: Champion engagement, since: meeting.held, weight: 1, worst: 30, best: 0}
    enroll: {on: health.dropped}
    steps:
      - {id: done, kind: exit, reason: seen}
"""


def test_days_since_the_champions_last_meeting_is_a_measure_the_engine_and_the_scheduler_move(
        session, feed, settings, clock, account):
    install_playbook(session, ENGAGEMENT, "adopt/engagement.yaml", lint=False)
    feed("meeting.held", account, {"with": "champion"}, at=clock.now() - timedelta(days=12))
    # 12 of the 30 days that score nothing: 60.
    assert _contributions(_history(session, account)[-1]) == {"champion": (12.0, 100.0, 60.0)}

    from orchestrator.journeys.health import active_model, rescore
    from orchestrator.journeys.steps import Run
    clock.advance(timedelta(days=6))  # no meeting since: 18 days, 40
    run = Run(session, settings, clock.now())
    playbook_id, health_model = active_model(run.playbooks())
    row = rescore(run, account, playbook_id=playbook_id, model=health_model, at=clock.now(), trigger="scheduler")
    assert (row.score, row.previous) == (40, 60)
    feed("meeting.held", account, {"with": "champion", "note": "quarterly review"})
    assert [r.score for r in _history(session, account)] == [60, 40, 100]
