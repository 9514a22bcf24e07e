"""The engine: signals in, journeys advanced, automated steps run, human tasks out.

This module is the entry point. Read top to bottom: `process_pending` takes stored
signals; each one may end journeys (`exit_on`), wake waiting ones, and enroll the account
in playbooks whose trigger it matches; `steps.advance` then runs steps until the journey
waits for a person, a signal or a deadline, or ends. `sweep_timeouts` is how time moves
journeys on; what people do (`decide_task`, `override_step`, `retry_journey`,
`end_journey`) lives in `decisions` and is re-exported here. Nothing commits: callers own
the transaction, so a decision, its audit event and its outbox rows land together or not
at all.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import bindparam, or_, select, tuple_
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, joinedload

from orchestrator import audit, exception_queue
from orchestrator.audit import AuditAction
from orchestrator.config import Settings
from orchestrator.db import connection_lost, describe_error, is_transient
from orchestrator.delivery import outbox
from orchestrator.errors import EngineError
from orchestrator.exception_queue import Category
from orchestrator.intake import signals
from orchestrator.journeys import health, monitors
from orchestrator.journeys.decisions import OUTCOMES, decide, decide_task, end_journey, override_step, retry_journey
from orchestrator.journeys.steps import (
    Next,
    ProcessReport,
    Run,
    StepBudgetExceeded,
    advance,
    after,
    context_for,
    end,
    finish,
    flag,
    lock_accounts,
    park,
    playbook_of,
    record,
    time_out,
    version_of,
    waiting_run,
)
from orchestrator.models import (
    OPEN_STATUSES,
    Account,
    Deal,
    Journey,
    JourneyStatus,
    Signal,
    StepRun,
    StepStatus,
    Task,
    TaskKind,
    assign_id,
)
from orchestrator.playbook.context import build_context
from orchestrator.playbook.expressions import Expression, ExpressionError
from orchestrator.playbook.model import (
    Playbook,
    WaitStep,
)

log = logging.getLogger(__name__)

__all__ = [
    "EngineError", "ProcessReport", "decide_task", "end_journey", "override_step", "process_pending",
    "retry_journey", "sweep_timeouts",
]

# --- signals ---------------------------------------------------------------------------------

def process_pending(*, session: Session, settings: Settings, now: datetime,
                    limit: int = 500, batched: bool = True) -> ProcessReport:
    """Evaluate pending signals of whole accounts, each account's in arrival order.

    A transient failure (deadlock, lock timeout, a busy row) leaves the signal pending with
    a backoff, and holds that account's later signals back with it; only a failure that
    belongs to the signal itself takes it off the queue, as an `engine_error` item. A lost
    connection loses the whole batch: it is raised, and nothing of it was committed.

    The work is per batch, the outcome per signal: the batch's accounts (with their owners)
    and open journeys are read once, the signals run in one savepoint, and their audit
    events and `processed_at` are written with one statement each. When a signal fails, the
    savepoint is rolled back, the signals before it run again, and the failure is handled
    as the one-by-one path would (`_process_one`); the rest of the batch goes on after it.
    With `batched=False` every signal is that one-by-one path: its own savepoint, its
    journeys read from the database (the reference the batched path is tested against).
    """
    run = Run(session, settings, now)
    claimed = signals.pending_signals(session, limit=limit, now=now)
    if not claimed:
        return run.report
    _hold_batch(run, claimed, journeys=batched)
    held_back: set[int | None] = set()
    processed: list[Signal] = []
    with audit.batched(session), outbox.deferred(session):
        if batched:
            remaining = claimed
            while remaining:
                remaining = _run_segment(run, remaining, held_back, processed)
        else:
            for signal in claimed:
                if signal.account_id is None or signal.account_id not in held_back:
                    _process_one(run, signal, held_back, processed, exc=None)
        signals.mark_processed_many(session, processed, now)
    return run.report


def _hold_batch(run: Run, claimed: list[Signal], *, journeys: bool) -> None:
    """Read the batch's accounts, owners and deals once, and keep them referenced for the pass.

    The session's identity map holds objects weakly: without these references a locked
    account fell out of it and was read again for every signal.
    """
    account_ids = sorted({signal.account_id for signal in claimed if signal.account_id is not None})
    if account_ids:
        run.held.extend(run.session.scalars(_BATCH_ACCOUNTS, {"ids": account_ids}).unique())
    deal_ids = sorted({signal.deal_id for signal in claimed if signal.deal_id is not None})
    if deal_ids:
        run.held.extend(run.session.scalars(_BATCH_DEALS, {"ids": deal_ids}).unique())
    if journeys:
        types: dict[int, set[str]] = {}
        for signal in claimed:
            if signal.account_id is not None:
                types.setdefault(signal.account_id, set()).add(signal.type)
        run.batch_types = {account_id: frozenset(found) for account_id, found in types.items()}
        run.open_journeys = _open_journeys(run, account_ids)
        run.memo = {}
        monitors.preload(run, claimed, windows=health.windows_to_preload(run, claimed))


# Built once (a pass asks each of them once): the accounts with the people and health the engine reads,
# joined in (each is one row per account), and the deals with their owners.
_BATCH_ACCOUNTS = select(Account).where(Account.id.in_(bindparam("ids", expanding=True))).options(
    joinedload(Account.owner), joinedload(Account.csm), joinedload(Account.health_state))
_BATCH_DEALS = select(Deal).where(Deal.id.in_(bindparam("ids", expanding=True))).options(joinedload(Deal.owner))


def _open_journeys(run: Run, account_ids: list[int]) -> dict[int, list[Journey]]:
    """The unfinished journeys of these accounts that the batch's signals can move, or collide with, oldest first.

    For each account, the journeys whose playbook version exits or waits on one of the types of
    that account's signals in the batch (`_reacting`), and those of the playbooks that enroll on
    one of them with once_per account or deal (once_per is checked against them; a per-signal key
    cannot collide with an open journey). An account's other open journeys cannot change in this
    pass, however many there are, so they are not read: first the versions open on these
    accounts, then the journeys that matter, as the database has them now.
    """
    found: dict[int, list[Journey]] = {account_id: [] for account_id in account_ids}
    if not account_ids:
        return found
    session = run.session
    open_here = (Journey.account_id.in_(account_ids), Journey.ended_at.is_(None))
    types = {account_id: run.batch_types.get(account_id, frozenset()) for account_id in account_ids}
    # The active versions first: read once for the pass, they are what most open journeys run on.
    enrolling = sorted({(account_id, playbook.id) for account_id in account_ids for signal_type in types[account_id]
                        for _, playbook in run.enrolling(signal_type) if playbook.enroll.once_per != "signal"})
    open_versions = session.execute(
        select(Journey.account_id, Journey.playbook_version_id).where(*open_here).distinct()).tuples().all()
    moving = sorted((account_id, version_id) for account_id, version_id in open_versions
                    if any(_reacts(run, version_id, signal_type) for signal_type in types[account_id]))
    if not moving and not enrolling:
        return found
    for journey in session.scalars(
            select(Journey).where(*open_here, or_(tuple_(Journey.account_id, Journey.playbook_version_id).in_(moving),
                                                  tuple_(Journey.account_id, Journey.playbook_id).in_(enrolling)))
            .order_by(Journey.id).execution_options(populate_existing=True)):
        found[journey.account_id].append(journey)
    return found


def _run_segment(run: Run, batch: list[Signal], held_back: set[int | None],
                 processed: list[Signal]) -> list[Signal]:
    """Evaluate `batch` in one savepoint; returns what is left to do after a failed signal.

    On a failure the savepoint is rolled back, the signals before the failed one run again
    (they succeeded once and the database is as it was), the failed one is handled on its
    own, and the signals after it are returned for the next segment.
    """
    counts = run.report.counts.copy()
    savepoint = run.session.begin_nested()
    done: list[Signal] = []
    failed: Signal | None = None
    try:
        run.in_batch = True
        for signal in batch:
            if signal.account_id is not None and signal.account_id in held_back:
                continue
            failed = signal
            _process_signal(run, signal)
            done.append(signal)
            failed = None
        run.in_batch = False
        run.session.flush()
        savepoint.commit()
    except Exception as exc:
        run.in_batch = False
        if connection_lost(exc):
            raise
        savepoint.rollback()
        run.report.counts = counts
        # New journeys of the rolled-back work are gone, ended ones open again: read afresh.
        run.open_journeys = _open_journeys(run, sorted(run.open_journeys or {}))
        run.memo = {}
        if failed is None:  # the flush or the release failed: take the batch one by one
            for signal in batch:
                if signal.account_id is None or signal.account_id not in held_back:
                    _process_one(run, signal, held_back, processed, exc=None)
            return []
        index = batch.index(failed)
        leftover = _run_segment(run, done, held_back, processed) if done else []
        if leftover:
            # A signal that had just succeeded failed on its second run (and was handled):
            # the failed one and those after it are tried again in the next segment.
            return leftover + batch[index:]
        _process_one(run, failed, held_back, processed, exc=exc)
        return batch[index + 1:]
    processed.extend(done)
    run.report.signals += len(done)
    return []


def _process_one(run: Run, signal: Signal, held_back: set[int | None], processed: list[Signal], *,
                 exc: BaseException | None) -> None:
    """One signal in its own savepoint, with the batch's failure `exc` if it already failed.

    An enrollment that collided with another worker's (the unique key, not once_per as loaded)
    runs again here, where the collision is a `not_enrolled`, and so does a journey caught looping
    (here the loop guard parks it); any other failure is the signal's.
    """
    if exc is None or isinstance(exc, IntegrityError | StepBudgetExceeded):
        exc = _isolated(run, signal)
    if exc is not None:
        now = run.now
        error = describe_error(exc)
        if is_transient(exc) and signals.defer(signal, now=now, error=error):
            log.warning("signal %s deferred after a transient error: %s", signal.id, error)
            held_back.add(signal.account_id)
            run.count("deferred")
            return
        log.error("signal %s failed in the engine: %s", signal.id, error)
        log.debug("signal %s failure", signal.id, exc_info=exc)
        exception_queue.raise_item(
            run.session, settings=run.settings, category=Category.ENGINE_ERROR, at=now,
            message=f"signal {signal.type} could not be processed: {_failure_text(exc)}",
            account_id=signal.account_id, signal_id=signal.id, detail={"error": error})
        run.count("errors")
    processed.append(signal)
    run.report.signals += 1


def _isolated(run: Run, signal: Signal) -> BaseException | None:
    """Evaluate one signal in its own savepoint, its journeys read from the database; what it raised."""
    cached, run.open_journeys, memo, run.memo = run.open_journeys, None, run.memo, None
    try:
        with run.session.begin_nested():
            _process_signal(run, signal)
        return None
    except Exception as exc:
        if connection_lost(exc):
            raise
        return exc
    finally:
        if cached is not None:  # what the savepoint did (or undid) is read back for the batch
            run.open_journeys = _open_journeys(run, sorted(cached))
        if memo is not None:
            run.memo = {}


def _failure_text(exc: BaseException) -> str:
    # A database error's text quotes rows (customer data); the item says its kind instead.
    if isinstance(exc, DBAPIError):
        return describe_error(exc)
    return f"{type(exc).__name__}: {exc}"[:500]


def _process_signal(run: Run, signal: Signal) -> None:
    if signal.account_id is None:
        return  # intake already put it in the exception queue as unknown_account
    account = run.session.get(Account, signal.account_id)  # held by the pass, read fresh under its lock
    assert account is not None
    journeys = _unfinished_journeys(run, account, signal.type)
    # A signal wakes only waits that were already waiting when it arrived, not one a
    # journey reaches because of this very signal (a CRM task completion, say).
    waits = {j.id: j.current_step_id for j in journeys if j.status == JourneyStatus.WAITING}
    if signal.type == "task.completed":
        _complete_from_signal(run, signal)
    elif signal.type == "account.churned" and account.churned_at is None:
        account.churned_at = signal.occurred_at
    _exit_journeys(run, journeys, signal)
    _wake_journeys(run, account, journeys, signal, waits)
    _enroll(run, account, signal)
    monitors.observe(run, account, signal)  # a firing is a new signal, evaluated in a later pass
    health.observe(run, account, signal)  # so is health.dropped


def _complete_from_signal(run: Run, signal: Signal) -> None:
    """A CRM reports a task done: close ours, if the signal names one of this account's tasks."""
    payload = signal.payload
    query = select(Task).where(Task.account_id == signal.account_id)
    if "task_id" in payload:
        try:
            query = query.where(Task.id == int(payload["task_id"]))
        except (TypeError, ValueError):
            flag(run, Category.INVALID_SIGNAL, f"task.completed names task {payload['task_id']!r}, not a task id",
                 account_id=signal.account_id, signal_id=signal.id)
            return
    elif "crm_id" in payload:
        query = query.where(Task.crm_id == str(payload["crm_id"]))
    else:
        return  # a CRM-side task Handoff did not create; wait steps may still read it
    task = run.session.scalar(query.execution_options(populate_existing=True))
    if task is None or task.status not in OPEN_STATUSES:
        return
    allowed = OUTCOMES[TaskKind(task.kind)]
    outcome = payload.get("outcome")
    if outcome not in allowed:
        if task.kind != TaskKind.ACTION:
            # Ticking "completed" on an approval says neither approve nor reject: never guess.
            flag(run, Category.INVALID_SIGNAL,
                 f"{task.kind} task {task.id} was completed in the CRM without saying "
                 f"{' or '.join(allowed)}; decide it with `handoff tasks decide {task.id}`",
                 account_id=signal.account_id, signal_id=signal.id)
            return
        outcome = "done"  # a rep's own word (e.g. "renewing") stays in the payload for waits to read
    decide(run, task, outcome, str(payload.get("actor") or "crm"),
           sync_crm=False)  # the CRM already knows: do not echo the completion back


def _unfinished_journeys(run: Run, account: Account, signal_type: str) -> list[Journey]:
    """The account's journeys that have not ended (active, waiting, or parked) and can react to this signal type.

    A journey whose playbook neither exits on the type nor has a wait that could take it
    cannot move on this signal, so it is not looked at (an account can have dozens open).
    """
    if run.open_journeys is not None:
        # Loaded for the batch under the account lock; every change since went through these objects.
        # Ended ones stay in the list (it lasts one pass); once_per skips them too.
        return [journey for journey in _reacting(run, run.open_journeys.setdefault(account.id, []), signal_type)
                if journey.ended_at is None]
    return _reacting(run, list(run.session.scalars(
        select(Journey).where(Journey.account_id == account.id, Journey.ended_at.is_(None))
        .order_by(Journey.id).execution_options(populate_existing=True))), signal_type)


def _reacting(run: Run, journeys: list[Journey], signal_type: str) -> list[Journey]:
    """The journeys whose playbook version can exit or wake on this signal type (the others cannot move)."""
    reacts = _reactions(run, signal_type)
    found = []
    for journey in journeys:
        version_id = journey.playbook_version_id
        known = reacts.get(version_id)
        if known is None:
            known = _reacts(run, version_id, signal_type)
        if known:
            found.append(journey)
    return found


def _reactions(run: Run, signal_type: str) -> dict[int, bool]:
    """`_reacts` for this signal type, by playbook version id, as worked out so far in the pass."""
    return run.derived(("reacts", signal_type), dict)


def _reacts(run: Run, version_id: int, signal_type: str) -> bool:
    """Whether a journey of this playbook version can exit or wake on this signal type, worked out once a pass."""
    reacts = _reactions(run, signal_type)
    known = reacts.get(version_id)
    if known is None:
        _, playbook = version_of(run, version_id)
        known = reacts[version_id] = signal_type in playbook.exit_on or any(
            isinstance(step, WaitStep) and step.signal in (None, signal_type) for step in playbook.steps)
    return known


def _exit_journeys(run: Run, journeys: list[Journey], signal: Signal) -> None:
    # A journey parked in the exception queue still leaves when its exit signal comes.
    for journey in journeys:
        if journey.ended_at is not None:
            continue  # ended a moment ago, by this same signal
        version, playbook = playbook_of(run, journey)
        if signal.type in playbook.exit_on:
            end(run, journey, version, JourneyStatus.EXITED,
                f"{signal.type} received (exit_on)", rule=f"exit_on: {signal.type}")


def _wake_journeys(run: Run, account: Account, journeys: list[Journey], signal: Signal,
                   waits: dict[int, str | None]) -> None:
    for journey in journeys:
        if journey.status != JourneyStatus.WAITING or journey.current_step_id is None \
                or waits.get(journey.id) != journey.current_step_id:
            continue
        version, playbook = playbook_of(run, journey)
        step = playbook.step(journey.current_step_id)
        if not isinstance(step, WaitStep):
            continue
        if step.signal is not None and step.signal != signal.type:
            continue
        if step.until is not None and step.signal == signal.type:
            missing = _missing_signal_fields(step.until, signal)
            if missing:
                flag(run, Category.MISSING_FIELD, f"{playbook.id} step {step.id} expects {', '.join(missing)} "
                     f"on {signal.type}; the signal has none; still waiting",
                     account_id=account.id, signal_id=signal.id, journey_id=journey.id,
                     playbook_id=playbook.id, playbook_version=version.version, step_id=step.id,
                     field=", ".join(missing))
                continue
        try:
            satisfied = step.until is None or bool(step.until.evaluate(context_for(run, journey, account, signal)))
        except ExpressionError as exc:
            # This journey's condition cannot read this signal; the account's other
            # journeys and enrollments still get it.
            park(run, journey, version, Category.EXPRESSION_ERROR, f"step {step.id}: {exc}")
            continue
        if not satisfied:
            continue
        step_run = waiting_run(run, journey)
        finish(step_run, StepStatus.DONE, run.now, f"{signal.type} arrived", signal_id=signal.id)
        journey.context = {**journey.context, "signal_id": signal.id}
        journey.wait_signal = journey.wait_until = None
        record(run, journey, version, AuditAction.STEP_RAN, step.id, f"wait:{step.id}",
               f"waited for {step.signal or 'a condition'}; {signal.type} satisfied it")
        advance(run, journey, version, playbook, after(playbook, step))


def _enroll(run: Run, account: Account, signal: Signal) -> None:
    for version, playbook in run.enrolling(signal.type):
        rule = f"enroll.on: {signal.type}"
        max_age = playbook.enroll.max_age
        if max_age is not None and run.now - signal.occurred_at > max_age.calendar:
            audit.record(run.session, at=run.now, action=AuditAction.NOT_ENROLLED,
                         rule=f"{rule} max_age: {max_age}", account_id=account.id,
                         reason=f"the signal is {(run.now - signal.occurred_at).days} days old "
                                f"(occurred {signal.occurred_at:%Y-%m-%d}), older than max_age {max_age}",
                         playbook_id=playbook.id, playbook_version=version.version)
            continue
        deal = run.session.get(Deal, signal.deal_id) if signal.deal_id else None
        condition = playbook.enroll.when
        if condition is not None:
            missing = _missing_signal_fields(condition, signal)
            if missing:
                flag(run, Category.MISSING_FIELD,
                     f"{playbook.id} expects {', '.join(missing)} on {signal.type}; the signal has none",
                     account_id=account.id, signal_id=signal.id, playbook_id=playbook.id,
                     playbook_version=version.version, step_id="enroll", field=", ".join(missing))
                continue
            context = build_context(run.session, account=account, now=run.now, signal=signal,
                                    deal=deal, reads=condition.references())
            rule += f" when: {condition.source}"
            try:
                matched = bool(condition.evaluate(context))
            except ExpressionError as exc:
                flag(run, Category.EXPRESSION_ERROR, f"{playbook.id}: enroll.when failed: {exc}",
                     account_id=account.id, signal_id=signal.id)
                continue
            if not matched:
                audit.record(run.session, at=run.now, action=AuditAction.NOT_ENROLLED, rule=rule,
                             reason="the enrollment condition is false", account_id=account.id,
                             playbook_id=playbook.id, playbook_version=version.version)
                continue
        journey = Journey(account_id=account.id, playbook_id=playbook.id,
                          playbook_version_id=version.id, trigger_signal_id=signal.id,
                          deal_id=signal.deal_id, enrolled_at=run.now,
                          enrollment_key=_enrollment_key(playbook, account, signal),
                          context={"signal_id": signal.id}, status=JourneyStatus.ACTIVE)
        if not _enrolled(run, journey):
            audit.record(run.session, at=run.now, action=AuditAction.NOT_ENROLLED, rule=rule,
                         reason=f"already in an open {playbook.id} journey "
                                f"(once_per {playbook.enroll.once_per})",
                         account_id=account.id, playbook_id=playbook.id,
                         playbook_version=version.version)
            continue
        run.count("enrolled")
        record(run, journey, version, AuditAction.ENROLLED, None, rule,
               f"{signal.type} at {signal.occurred_at:%Y-%m-%d %H:%M}Z enrolled {account.name}")
        advance(run, journey, version, playbook, Next(step_id=playbook.steps[0].id))


def _enrolled(run: Run, journey: Journey) -> bool:
    """Store the new journey unless once_per says the account is already in an open one."""
    if run.open_journeys is not None:
        # The batch holds the account's open journeys, read under its lock: once_per is
        # checked there, and the unique key stays the guard against a race (an insert that
        # still collides fails the batch, and the signal runs again on its own).
        opened = run.open_journeys.setdefault(journey.account_id, [])
        if any(other.enrollment_key == journey.enrollment_key and other.ended_at is None for other in opened):
            return False
        run.session.add(journey)
        assign_id(run.session, journey)  # known now, written with the batch's next flush
        opened.append(journey)
        return True
    try:
        # The unique enrollment key is what makes once_per hold across workers.
        with run.session.begin_nested():
            run.session.add(journey)
            run.session.flush()
    except IntegrityError:
        return False
    return True


def _missing_signal_fields(condition: Expression, signal: Signal) -> list[str]:
    """The `signal.x` fields a condition reads that this signal does not carry.

    Evaluating would quietly read them as null and say "no"; a signal that does not
    meet a playbook's expectations goes to a person instead.
    """
    envelope = {"id", "type", "occurred_at", "source", "payload"}
    missing = []
    for reference in sorted(condition.references()):
        root, _, rest = reference.partition(".")
        field_name = rest.split(".", 1)[0]
        if root == "signal" and field_name and field_name not in envelope \
                and field_name not in (signal.payload or {}):
            missing.append(reference)
    return missing


def _enrollment_key(playbook: Playbook, account: Account, signal: Signal) -> str:
    # Held only while the journey is open (see end), so a finished play can run again later.
    scope = playbook.enroll.once_per
    subject = {"account": account.id, "deal": signal.deal_id or f"account-{account.id}",
               "signal": signal.id}[scope]
    return f"{playbook.id}:{scope}:{subject}"


# --- time moves: wait timeouts, deferrals, override windows ----------------------------------

def sweep_timeouts(*, session: Session, settings: Settings, now: datetime, limit: int = 500) -> int:
    """Move on journeys whose wait has expired; close expired override windows. Returns journeys moved.

    Per batch, like `process_pending`: the due journeys' accounts are locked and the journeys
    re-read with one query each, their timeouts run in one savepoint and their audit events
    are written with one statement. When one fails, the savepoint is rolled back and the
    batch is taken journey by journey, each in its own savepoint, as before.
    """
    run = Run(session, settings, now)
    due = session.execute(
        select(Journey.id, Journey.account_id)
        .where(Journey.status == JourneyStatus.WAITING, Journey.wait_until.is_not(None),
               Journey.wait_until <= now)
        .order_by(Journey.wait_until).limit(limit)).all()
    # An account another worker is busy with is skipped, not waited for: the next sweep
    # takes it, and skipping cannot deadlock (locks are taken in id order).
    locked = lock_accounts(session, [account_id for _, account_id in due], skip_locked=True)
    run.held.extend(locked)
    mine = {account.id for account in locked}
    ids = [journey_id for journey_id, account_id in due if account_id in mine]
    with audit.batched(session), outbox.deferred(session):
        moved = _time_out_batch(run, ids)
    for step_run in session.scalars(select(StepRun).where(StepRun.override_until.is_not(None),
                                                          StepRun.override_until <= now)):
        step_run.override_until = None
    return moved


def _still_due(run: Run, ids: list[int]) -> list[Journey]:
    """These journeys read fresh, in the given order, leaving out those a signal moved on since."""
    if not ids:
        return []
    found = {journey.id: journey for journey in run.session.scalars(
        select(Journey).where(Journey.id.in_(ids)).execution_options(populate_existing=True))}
    run.held.extend(found.values())
    return [journey for journey_id in ids if (journey := found.get(journey_id)) is not None
            and journey.status == JourneyStatus.WAITING and journey.wait_until is not None
            and journey.wait_until <= run.now]


def _time_out_batch(run: Run, ids: list[int]) -> int:
    journeys = _still_due(run, ids)
    if not journeys:
        return 0
    counts = run.report.counts.copy()
    savepoint = run.session.begin_nested()
    try:
        run.in_batch = True  # a journey caught looping fails the batch; alone, the loop guard parks it
        for journey in journeys:
            time_out(run, journey)
        run.in_batch = False
        run.session.flush()
        savepoint.commit()
        return len(journeys)
    except Exception as exc:
        run.in_batch = False
        if connection_lost(exc):
            raise
        savepoint.rollback()
        run.report.counts = counts
    return sum(_time_out_one(run, journey) for journey in _still_due(run, ids))


def _time_out_one(run: Run, journey: Journey) -> int:
    """One journey's timeout in its own savepoint; 1 when it moved on."""
    try:
        with run.session.begin_nested():
            time_out(run, journey)
        return 1
    except Exception as exc:  # one bad journey never stops the sweep
        if connection_lost(exc):
            raise
        if is_transient(exc):
            # Still waiting and still due: the next sweep takes it again.
            log.warning("journey %s timeout deferred after a transient error: %s", journey.id,
                        describe_error(exc))
            return 0
        log.error("journey %s failed in the timeout sweep: %s", journey.id, describe_error(exc))
        log.debug("journey %s failure", journey.id, exc_info=True)
        # Parked, it is no longer due: the next sweep does not fail (and report) it again.
        version, _ = playbook_of(run, journey)
        park(run, journey, version, Category.ENGINE_ERROR,
             f"timeout of journey {journey.id} failed: {_failure_text(exc)}")
        return 0


