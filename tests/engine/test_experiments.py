"""Play experiments (`split` steps) end to end, on SQLite and PostgreSQL: the shipped expansion-first-touch
playbook sends each account down one variant, the same one every time, recorded on the journey."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from orchestrator.journeys import engine
from orchestrator.journeys.experiments import account_key, assign_variant
from orchestrator.models import AuditEvent, Journey, OutboxMessage, Task
from orchestrator.playbook import PlaybookInvalid, load_playbook, load_playbook_text
from orchestrator.playbook.model import SplitStep
from orchestrator.resources import shipped_playbooks_dir
from tests.engine.conftest import install_playbook
from tests.factories import AccountFactory, OwnerFactory

PATH = shipped_playbooks_dir() / "expand" / "expansion-first-touch.yaml"


@pytest.fixture
def play(session):
    return install_playbook(session, PATH.read_text(), "expand/expansion-first-touch.yaml")


def _journeys(session, account):
    return session.scalars(select(Journey).where(Journey.account_id == account.id).order_by(Journey.id)).all()


def test_each_account_goes_down_its_variant_and_the_journey_records_it(session, feed, play):
    csm = OwnerFactory(role="csm")
    accounts = [AccountFactory(stage="expand", csm=csm) for _ in range(20)]
    seen = Counter()
    for account in accounts:
        feed("expansion.signal", account, {"reason": "Asked about 40 more seats"})
        (journey,) = _journeys(session, account)
        variant = journey.context["variants"]["expansion-first-touch-q4"]
        seen[variant] += 1
        offers = session.scalars(select(OutboxMessage).where(OutboxMessage.account_id == account.id,
                                                             OutboxMessage.kind == "customer.in_app_message")).all()
        tasks = session.scalars(select(Task).where(Task.account_id == account.id)).all()
        if variant == "automated":
            assert len(offers) == 1 and tasks == [] and journey.status == "completed"
        else:
            assert offers == [] and len(tasks) == 1 and tasks[0].owner_id == csm.id
            assert tasks[0].recommendation.startswith("Asked about 40 more seats.")
        event = session.scalars(select(AuditEvent).where(AuditEvent.journey_id == journey.id,
                                                         AuditEvent.action == "variant_assigned")).one()
        assert event.detail["variant"] == variant and event.rule == "split:expansion-first-touch-q4"
        assert 0 <= event.detail["bucket"] < 10_000
    assert set(seen) == {"automated", "human"}  # 20 accounts: all on one side has odds of 2 in a million


def test_an_account_gets_the_same_variant_when_it_enrolls_again(session, feed, settings, clock, play):
    account = AccountFactory(stage="expand", csm=OwnerFactory(role="csm"))
    feed("expansion.signal", account, {"reason": "first"})
    first = _journeys(session, account)[0]
    first_variant = first.context["variants"]["expansion-first-touch-q4"]
    for task in session.scalars(select(Task).where(Task.account_id == account.id)):  # the human variant
        engine.decide_task(session=session, settings=settings, task_id=task.id, outcome="done",
                           actor="csm@acme.example", now=clock.now())
    session.flush()
    assert first.status == "completed"
    feed("expansion.signal", account, {"reason": "second"})
    second = _journeys(session, account)[-1]
    assert second.id != first.id
    assert second.context["variants"]["expansion-first-touch-q4"] == first_variant


def test_the_variant_follows_the_accounts_domain_not_the_row_id_it_got_in_this_database(session, feed, play):
    # A simulation on the sample data or a scratch copy gives rows other ids than production;
    # the variant must not move with them.
    step = next(s for s in load_playbook(PATH).steps if isinstance(s, SplitStep))
    account = AccountFactory(stage="expand", csm=OwnerFactory(role="csm"))
    feed("expansion.signal", account, {"reason": "seats"})
    (journey,) = _journeys(session, account)
    by_domain = assign_variant(step, playbook_id="expansion-first-touch", key=account.domain).variant.name
    assert journey.context["variants"]["expansion-first-touch-q4"] == by_domain
    assert account_key(domain=account.domain, account_id=account.id) == account.domain
    assert account_key(domain=None, account_id=7) == "id:7"  # no domain: the id is all there is


def test_the_split_follows_the_weights():
    step = next(s for s in load_playbook(PATH).steps if isinstance(s, SplitStep))
    counts = Counter(assign_variant(step, playbook_id="expansion-first-touch", key=f"acct{n}.example").variant.name
                     for n in range(1, 10_001))
    assert 4_800 <= counts["automated"] <= 5_200 and counts["automated"] + counts["human"] == 10_000
    uneven = SplitStep(id=step.id, position=step.position, estimate_minutes=None, experiment="x",
                       variants=(step.variants[0].__class__(name="a", weight=9, goto=step.variants[0].goto),
                                 step.variants[1].__class__(name="b", weight=1, goto=step.variants[1].goto)))
    shares = Counter(assign_variant(uneven, playbook_id="p", key=f"acct{n}.example").variant.name
                     for n in range(1, 10_001))
    assert 8_800 <= shares["a"] <= 9_200


SPLIT = """
    id: split-check
    name: Split check
    stage: expand
    maintainer: revops@acme.example
    review_every: 365d
    enroll: {on: expansion.signal}
    steps:
      - id: pick
        kind: split
        variants:
          - {name: a, weight: 50, goto: end-a}
          - {name: b, weight: 50, goto: end-b}
      - id: end-a
        kind: exit
      - id: end-b
        kind: exit
"""


@pytest.mark.parametrize(("change", "replacement", "message"), [
    ("          - {name: b, weight: 50, goto: end-b}\n", "", "at least two variants"),
    ("{name: b, weight: 50", "{name: a, weight: 50", "unique"),
    ("goto: end-b}", "goto: nowhere}", "nowhere"),
    ("weight: 50, goto: end-b", "weight: 0, goto: end-b", "whole number"),
])
def test_a_split_is_checked_before_it_runs(change, replacement, message):
    assert load_playbook_text(SPLIT, "ok.yaml", lint=False).steps[0].experiment == "pick"
    with pytest.raises(PlaybookInvalid) as raised:
        load_playbook_text(SPLIT.replace(change, replacement), "bad.yaml", lint=False)
    assert message in str(raised.value.findings)
