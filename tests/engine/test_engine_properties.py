"""Property tests: random event sequences through the real engine and the shipped playbooks.

Hypothesis draws two or three accounts (segment, owner, CSM or none, a known or missing
size) and a sequence of events: signals the shipped playbooks listen to, the clock moving
(then a timeout sweep), people deciding tasks, CRM completions, overrides, operators
ending or retrying journeys, and exact re-deliveries of a signal. After every event the
invariants below are checked, each by a named helper so a failure says which one broke.

Every example runs inside a SAVEPOINT that is rolled back, so examples never see each
other's rows; the playbooks and the team are set up once per test (per database).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.clock import FrozenClock
from orchestrator.config import Settings
from orchestrator.exception_queue import Category
from orchestrator.intake import signals
from orchestrator.journeys import engine
from orchestrator.journeys.decisions import OUTCOMES
from orchestrator.models import (
    OPEN_STATUSES,
    Account,
    AuditEvent,
    CustomerTouch,
    Deal,
    ExceptionItem,
    Journey,
    JourneyStatus,
    OutboxMessage,
    Owner,
    PlaybookVersion,
    StepRun,
    StepStatus,
    Task,
    TaskKind,
)
from orchestrator.playbook.actions import get_action
from orchestrator.playbook.model import AutomatedStep, HybridStep, Playbook
from orchestrator.playbook.store import active_playbooks, apply_playbooks, compiled
from orchestrator.resources import shipped_playbooks_dir
from tests.conftest import T0
from tests.factories import AccountFactory, ContactFactory, DealFactory, OwnerFactory

# --- the world: a team, the shipped playbooks, a few accounts --------------------------------


@pytest.fixture
def team(session: Session) -> dict[str, Owner]:
    report = apply_playbooks(session=session, paths=[shipped_playbooks_dir()], now=T0, actor="test")
    assert report.applied, report.findings
    manager = OwnerFactory(name="Maya Manager", email="maya@acme.example", role="manager")
    return {
        "manager": manager,
        "ae": OwnerFactory(name="Ari AE", email="ari@acme.example", role="ae", manager=manager),
        "sdr": OwnerFactory(name="Sam SDR", email="sam@acme.example", role="sdr", manager=manager),
        "csm": OwnerFactory(name="Cleo CSM", email="cleo@acme.example", role="csm", manager=manager),
        "lead": OwnerFactory(name="Lee Lead", email="lee@acme.example", role="cs-lead"),
        # An AE with no manager: `owner.manager` assignments have nobody to go to.
        "loner": OwnerFactory(name="Lone AE", email="lone@acme.example", role="ae"),
    }


ACCOUNT_SPECS = st.fixed_dictionaries({
    "segment": st.sampled_from(["smb", "mid", "enterprise"]),
    "owner": st.sampled_from(["ae", "sdr", "csm", "loner"]),
    "csm": st.booleans(),
    "employees": st.one_of(st.none(), st.integers(1, 2000)),  # None: the CRM field is missing
    "deal_amount": st.sampled_from([4000, 25000, 120000]),
})
WORLDS = st.lists(ACCOUNT_SPECS, min_size=2, max_size=3)


@dataclass
class World:
    accounts: list[Account]
    deals: list[dict[str, Deal]]  # per account: "new", "renewal", "renewal2"


def build_world(specs: list[dict[str, Any]], team: dict[str, Owner]) -> World:
    accounts, deals = [], []
    for index, spec in enumerate(specs):
        attributes = {} if spec["employees"] is None else {"employees": spec["employees"]}
        account = AccountFactory(name=f"Prop Co {index}", segment=spec["segment"], owner=team[spec["owner"]],
                                 csm=team["csm"] if spec["csm"] else None, arr=Decimal("60000"),
                                 attributes=attributes)
        champion = f"champion{index}@prop.example"
        ContactFactory(account=account, role="champion", is_primary=True, email=champion)
        deals.append({
            "new": DealFactory(account=account, amount=Decimal(spec["deal_amount"]),
                               attributes={"champion_email": champion}),
            "renewal": DealFactory(account=account, kind="renewal", is_closed=False, is_won=False,
                                   attributes={"champion_email": champion}),
            "renewal2": DealFactory(account=account, kind="renewal", is_closed=False, is_won=False,
                                    attributes={"champion_email": champion}),
        })
        accounts.append(account)
    return World(accounts, deals)


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    type: str
    account: int  # index into the world's accounts (modulo their number)
    payload: dict[str, Any]
    deal: str | None = None


@dataclass(frozen=True)
class Resend:
    """The last signal sent, delivered again byte for byte."""


@dataclass(frozen=True)
class Tick:
    minutes: int


@dataclass(frozen=True)
class Decide:
    pick: int  # index into the open tasks (modulo their number)
    outcome: int  # index into the task kind's allowed outcomes


@dataclass(frozen=True)
class CrmCompleted:
    pick: int
    outcome: str | None  # the rep's own word, if any ("renewing")


@dataclass(frozen=True)
class Override:
    pick: int


@dataclass(frozen=True)
class EndJourney:
    pick: int


@dataclass(frozen=True)
class Retry:
    pick: int


ACCT = st.integers(0, 2)


NO_DEAL: st.SearchStrategy[str | None] = st.none()


def _send(type_: str, payload: st.SearchStrategy[dict[str, Any]], deal: st.SearchStrategy[str | None] = NO_DEAL,
          ) -> st.SearchStrategy[Send]:
    return st.builds(Send, type=st.just(type_), account=ACCT, payload=payload, deal=deal)


SIGNALS = st.one_of(
    _send("lead.created", st.fixed_dictionaries({"email": st.sampled_from(["a@lead.example", "b@lead.example"])},
                                                optional={"source_detail": st.just("pricing page")})),
    _send("deal.closed_won", st.builds(lambda a: {"amount": a}, st.sampled_from([4000, 25000, 120000])),
          st.just("new")),
    _send("product.usage", st.fixed_dictionaries({"active_users": st.integers(0, 20),
                                                  "usage_change_pct": st.integers(-100, 50)})),
    _send("product.seat_limit_reached", st.integers(1, 60).map(
        lambda n: {"seats_used": n, "seats_purchased": n})),
    _send("renewal.upcoming", st.fixed_dictionaries({"days_to_renewal": st.integers(60, 150)}),
          st.sampled_from(["renewal", "renewal2"])),
    _send("support.ticket_opened", st.fixed_dictionaries({"severity": st.sampled_from(["low", "high"]),
                                                          "subject": st.just("Exports broken")})),
    _send("sentiment.negative", st.sampled_from([{}, {"score": -0.8}])),
    _send("account.churned", st.just({})),
)
EVENTS = st.one_of(
    SIGNALS,
    st.just(Resend()),
    st.builds(Tick, minutes=st.one_of(st.integers(1, 600), st.integers(1, 20).map(lambda d: d * 24 * 60))),
    st.builds(Decide, pick=st.integers(0, 10), outcome=st.integers(0, 1)),
    st.builds(CrmCompleted, pick=st.integers(0, 10), outcome=st.sampled_from([None, "renewing", "done"])),
    st.builds(Override, pick=st.integers(0, 5)),
    st.builds(EndJourney, pick=st.integers(0, 5)),
    st.builds(Retry, pick=st.integers(0, 5)),
)


class Driver:
    """Applies events to the real intake and engine, as the CLI, API and scheduler do."""

    def __init__(self, session: Session, settings: Settings, world: World) -> None:
        self.session, self.settings, self.world = session, settings, world
        self.clock = FrozenClock(T0)
        self.last_raw: dict[str, Any] | None = None
        self.seen: set[str] = set()

    def now(self) -> datetime:
        return self.clock.now()

    def apply(self, event: Any) -> None:
        if isinstance(event, Send):
            account = self.world.accounts[event.account % len(self.world.accounts)]
            deal = self.world.deals[event.account % len(self.world.accounts)][event.deal] if event.deal else None
            self._ingest(self._raw(event.type, account, event.payload, deal))
        elif isinstance(event, Resend):
            if self.last_raw is not None:
                self._ingest(self.last_raw)
        elif isinstance(event, Tick):
            self.clock.advance(timedelta(minutes=event.minutes))
            engine.sweep_timeouts(session=self.session, settings=self.settings, now=self.now())
        elif isinstance(event, Decide):
            task = _pick(self._open_tasks(), event.pick)
            if task is not None:
                allowed = OUTCOMES[TaskKind(task.kind)]
                engine.decide_task(session=self.session, settings=self.settings, task_id=task.id,
                                   outcome=allowed[event.outcome % len(allowed)], actor="rep@acme.example",
                                   now=self.now())
        elif isinstance(event, CrmCompleted):
            task = _pick(self._open_tasks(), event.pick)
            if task is not None:
                payload: dict[str, Any] = {"task_id": task.id, "actor": "ari@acme.example"}
                if event.outcome is not None:
                    payload["outcome"] = event.outcome
                self._ingest(self._raw("task.completed", self.session.get_one(Account, task.account_id), payload))
            else:  # nobody's task: a bare completion to the first account (wakes a task.completed wait)
                self._ingest(self._raw("task.completed", self.world.accounts[0],
                                       {"outcome": event.outcome or "done"}))
        elif isinstance(event, Override):
            windows = self.session.scalars(select(StepRun).where(StepRun.override_until >= self.now())
                                           .order_by(StepRun.id)).all()
            step_run = _pick(windows, event.pick)
            if step_run is not None:
                engine.override_step(session=self.session, settings=self.settings, step_run_id=step_run.id,
                                     actor="ari@acme.example", now=self.now(), reason="property test")
        elif isinstance(event, EndJourney):
            journey = _pick(self._journeys(Journey.ended_at.is_(None)), event.pick)
            if journey is not None:
                engine.end_journey(session=self.session, settings=self.settings, journey_id=journey.id,
                                   actor="ops@acme.example", now=self.now(), reason="property test")
        elif isinstance(event, Retry):
            journey = _pick(self._journeys(Journey.status == JourneyStatus.STALLED,
                                           Journey.current_step_id.is_not(None)), event.pick)
            if journey is not None:
                engine.retry_journey(session=self.session, settings=self.settings, journey_id=journey.id,
                                     actor="ops@acme.example", now=self.now())
        else:  # pragma: no cover - a strategy this driver does not know
            raise AssertionError(f"unknown event {event!r}")
        self.session.flush()

    def _raw(self, type_: str, account: Account, payload: dict[str, Any], deal: Deal | None = None,
             ) -> dict[str, Any]:
        raw: dict[str, Any] = {"type": type_, "account": {"id": account.id}, "payload": dict(payload),
                               "occurred_at": self.now().isoformat()}
        if deal is not None:
            raw["deal"] = {"id": deal.id}
        return raw

    def _ingest(self, raw: dict[str, Any]) -> None:
        key = json.dumps(raw, sort_keys=True)
        result = signals.ingest(session=self.session, raw=raw, source="property-test", now=self.now(),
                                settings=self.settings)
        # The same fact delivered twice is stored once; anything new is stored.
        expected = signals.IntakeStatus.DUPLICATE if key in self.seen else signals.IntakeStatus.ACCEPTED
        assert result.status == expected, f"intake said {result} for {raw}; expected {expected}"
        self.seen.add(key)
        self.last_raw = raw
        engine.process_pending(session=self.session, settings=self.settings, now=self.now())

    def _open_tasks(self) -> list[Task]:
        return list(self.session.scalars(select(Task).where(Task.status.in_([str(s) for s in OPEN_STATUSES]))
                                         .order_by(Task.id)))

    def _journeys(self, *where: Any) -> list[Journey]:
        return list(self.session.scalars(select(Journey).where(*where).order_by(Journey.id)))


def _pick(rows: list[Any] | Any, index: int) -> Any:
    rows = list(rows)
    return rows[index % len(rows)] if rows else None


# --- invariants ------------------------------------------------------------------------------


def every_task_has_a_person_and_sane_deadlines(session: Session, now: datetime) -> None:
    for task in session.scalars(select(Task)):
        assert task.owner_id is not None, f"task {task.id} has no owner"
        owner = session.get(Owner, task.owner_id)
        assert owner is not None and owner.email, f"task {task.id} owner {task.owner_id} is not a person"
        assert task.due_at >= task.created_at, f"task {task.id} is due {task.due_at} before {task.created_at}"
        assert task.ack_by is None or task.ack_by <= task.due_at, \
            f"task {task.id} ack_by {task.ack_by} is after due_at {task.due_at}"


def one_unfinished_journey_per_enrollment_key(session: Session, now: datetime) -> None:
    keys = Counter(session.scalars(select(Journey.enrollment_key).where(Journey.ended_at.is_(None))))
    doubled = {key: count for key, count in keys.items() if count > 1}
    assert not doubled, f"several unfinished journeys share an enrollment key: {doubled}"


def waiting_and_ended_journeys_are_consistent(session: Session, now: datetime) -> None:
    for journey in session.scalars(select(Journey)):
        waiting = session.scalars(select(StepRun).where(StepRun.journey_id == journey.id,
                                                        StepRun.status == StepStatus.WAITING)).all()
        if journey.status == JourneyStatus.WAITING:
            assert len(waiting) == 1, \
                f"waiting journey {journey.id} ({journey.playbook_id}) has {len(waiting)} waiting step runs: " \
                f"{[(r.id, r.step_id) for r in waiting]}"
            assert waiting[0].step_id == journey.current_step_id, \
                f"journey {journey.id} waits at {journey.current_step_id} but its waiting run is {waiting[0].step_id}"
        if journey.ended_at is not None:
            assert journey.status in (JourneyStatus.COMPLETED, JourneyStatus.EXITED), \
                f"ended journey {journey.id} has status {journey.status}"
            open_tasks = session.scalars(select(Task.id).where(
                Task.journey_id == journey.id, Task.status.in_([str(s) for s in OPEN_STATUSES]))).all()
            assert not open_tasks, f"ended journey {journey.id} ({journey.status}) has open tasks {open_tasks}"
            # Found by this test once: end() left the step run the journey waited on "waiting".
            assert not waiting, \
                f"ended journey {journey.id} ({journey.playbook_id}, {journey.status}: {journey.end_reason}) " \
                f"still has waiting step runs {[(r.id, r.step_id) for r in waiting]}"


def outbox_keys_are_unique_and_tasks_exist(session: Session, now: datetime) -> None:
    rows = session.scalars(select(OutboxMessage)).all()
    keys = Counter(row.idempotency_key for row in rows)
    assert all(count == 1 for count in keys.values()), f"repeated outbox keys: {keys.most_common(3)}"
    for row in rows:
        if row.kind == "crm.create_task":
            assert row.task_id is not None and session.get(Task, row.task_id) is not None, \
                f"outbox {row.id} creates task {row.task_id}, which does not exist"


def _playbook_of(session: Session, journey_id: int | None) -> tuple[Journey, Playbook]:
    journey = session.get_one(Journey, journey_id)
    return journey, compiled(session.get_one(PlaybookVersion, journey.playbook_version_id))


def customer_touches_are_automated_and_capped(session: Session, now: datetime) -> None:
    touches = session.scalars(select(CustomerTouch).order_by(CustomerTouch.at, CustomerTouch.id)).all()
    by_playbook: dict[tuple[int, str], list[CustomerTouch]] = {}
    for touch in touches:
        assert touch.journey_id is not None, f"customer touch {touch.id} belongs to no journey"
        journey, playbook = _playbook_of(session, touch.journey_id)
        step = playbook.step(touch.step_id)
        # A hybrid step's `publish` is the system sending what a person reviewed: it is an
        # automated customer-facing action too, and the caps count it.
        calls = [step.call] if isinstance(step, AutomatedStep) else \
            [step.publish] if isinstance(step, HybridStep) and step.publish is not None else []
        assert any(call.action == touch.action and get_action(call.action).customer_facing for call in calls), \
            f"customer touch {touch.id} ({touch.action}) comes from {playbook.id} step {step.id} ({step.kind}), " \
            "which has no customer-facing automated action"
        by_playbook.setdefault((touch.account_id, playbook.id), []).append(touch)
    limits = {playbook.id: playbook.touch_limit for _, playbook in active_playbooks(session=session)}
    for (account_id, playbook_id), mine in by_playbook.items():
        limit = limits.get(playbook_id)
        if limit is None:
            continue
        period = limit.period.calendar
        for touch in mine:
            window = [t for t in mine if touch.at - period < t.at <= touch.at]
            assert len(window) <= limit.count, \
                f"{playbook_id} touched account {account_id} {len(window)} times in the {limit.period} " \
                f"up to {touch.at} (limit {limit.count}): {[(t.step_id, t.action, t.at.isoformat()) for t in window]}"


def exception_items_have_an_owner_and_a_window(session: Session, now: datetime) -> None:
    for item in session.scalars(select(ExceptionItem)):
        assert item.owner and item.owner.strip(), f"exception item {item.id} ({item.category}) has no owner"
        assert item.respond_by > item.created_at, \
            f"exception item {item.id} must be answered by {item.respond_by}, not after {item.created_at}"


def the_engine_never_swallowed_a_crash(session: Session, now: datetime) -> None:
    # process_pending and sweep_timeouts isolate a failure and file it as engine_error:
    # on valid input there must be none.
    crashes = session.scalars(select(ExceptionItem.message)
                              .where(ExceptionItem.category == Category.ENGINE_ERROR)).all()
    assert not crashes, f"the engine failed and filed it as engine_error: {crashes}"


def journey_audit_events_name_their_playbook(session: Session, now: datetime) -> None:
    anonymous = session.execute(
        select(AuditEvent.id, AuditEvent.action, AuditEvent.journey_id, AuditEvent.rule)
        .where(AuditEvent.journey_id.is_not(None),
               AuditEvent.playbook_id.is_(None) | AuditEvent.playbook_version.is_(None))).all()
    assert not anonymous, f"journey audit events without a playbook id and version: {anonymous}"


INVARIANTS = (
    every_task_has_a_person_and_sane_deadlines,
    one_unfinished_journey_per_enrollment_key,
    waiting_and_ended_journeys_are_consistent,
    outbox_keys_are_unique_and_tasks_exist,
    customer_touches_are_automated_and_capped,
    exception_items_have_an_owner_and_a_window,
    the_engine_never_swallowed_a_crash,
    journey_audit_events_name_their_playbook,
)


# --- the property ----------------------------------------------------------------------------

_UNSIZED = {"segment": "smb", "owner": "ae", "csm": False, "employees": None, "deal_amount": 4000}


@hyp_settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
              max_examples=40, deadline=None)
@given(specs=WORLDS, events=st.lists(EVENTS, min_size=1, max_size=12))
# The minimal sequences behind the three findings noted in the invariants above, always run.
@example(specs=[_UNSIZED, _UNSIZED], events=[Send("lead.created", 0, {"email": "a@lead.example"}),
                                             Send("account.churned", 0, {})])
@example(specs=[_UNSIZED, _UNSIZED], events=[Send("lead.created", 0, {"email": "a@lead.example"}),
                                             Decide(0, 0), EndJourney(0)])
@example(specs=[_UNSIZED, _UNSIZED], events=[Send("lead.created", 0, {"email": "a@lead.example"}),
                                             Decide(0, 0), Retry(0)])
@example(specs=[_UNSIZED, _UNSIZED], events=[Send("renewal.upcoming", 0, {"days_to_renewal": 100}, "renewal"),
                                             Decide(0, 0),
                                             Send("renewal.upcoming", 0, {"days_to_renewal": 100}, "renewal2"),
                                             CrmCompleted(0, None)])
def test_random_event_sequences_keep_the_engine_invariants(session, settings, team, specs, events):
    nested = session.begin_nested()
    try:
        driver = Driver(session, settings, build_world(specs, team))
        for index, event in enumerate(events):
            history = f"accounts {specs}\nevents {events[:index + 1]}"
            try:
                driver.apply(event)
            except Exception as exc:  # the engine must never crash on valid input (nor intake misjudge it)
                pytest.fail(f"{type(exc).__name__} raised by event {index} {event!r}: {exc}\n{history}")
            for invariant in INVARIANTS:
                try:
                    invariant(session, driver.now())
                except AssertionError as exc:
                    raise AssertionError(f"invariant {invariant.__name__} broke at event {index} {event!r}: "
                                         f"{exc}\n{history}") from None
    finally:
        nested.rollback()
        # SQLite hands rolled-back ids out again; drop this example's rows from the identity map
        # so the next example's new rows do not collide with them. The team and playbooks stay.
        for obj in list(session.identity_map.values()):
            if not isinstance(obj, (Owner, PlaybookVersion)):
                session.expunge(obj)
