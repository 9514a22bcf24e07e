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

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from orchestrator import audit, exception_queue
from orchestrator.audit import AuditAction
from orchestrator.config import Settings
from orchestrator.db import connection_lost, describe_error, is_transient
from orchestrator.errors import EngineError
from orchestrator.exception_queue import Category
from orchestrator.intake import signals
from orchestrator.journeys.decisions import OUTCOMES, decide, decide_task, end_journey, override_step, retry_journey
from orchestrator.journeys.steps import (
    Next,
    ProcessReport,
    Run,
    advance,
    after,
    context_for,
    end,
    finish,
    flag,
    fresh,
    lock_accounts,
    park,
    playbook_of,
    record,
    time_out,
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
                    limit: int = 500) -> ProcessReport:
    """Evaluate pending signals of whole accounts, each account's in arrival order.

    A transient failure (deadlock, lock timeout, a busy row) leaves the signal pending with
    a backoff, and holds that account's later signals back with it; only a failure that
    belongs to the signal itself takes it off the queue, as an `engine_error` item. A lost
    connection loses the whole batch: it is raised, and nothing of it was committed.
    """
    run = Run(session, settings, now)
    held_back: set[int | None] = set()
    for signal in signals.pending_signals(session, limit=limit, now=now):
        if signal.account_id is not None and signal.account_id in held_back:
            continue
        try:
            with session.begin_nested():
                _process_signal(run, signal)
        except Exception as exc:  # isolate the failure to this signal, and say what kind it was
            if connection_lost(exc):
                raise
            error = describe_error(exc)
            if is_transient(exc) and signals.defer(signal, now=now, error=error):
                log.warning("signal %s deferred after a transient error: %s", signal.id, error)
                held_back.add(signal.account_id)
                run.count("deferred")
                continue
            log.error("signal %s failed in the engine: %s", signal.id, error)
            log.debug("signal %s failure", signal.id, exc_info=True)
            exception_queue.raise_item(
                session, settings=settings, category=Category.ENGINE_ERROR, at=now,
                message=f"signal {signal.type} could not be processed: {_failure_text(exc)}",
                account_id=signal.account_id, signal_id=signal.id, detail={"error": error})
            run.count("errors")
        signals.mark_processed(signal, now)
        run.report.signals += 1
    return run.report


def _failure_text(exc: BaseException) -> str:
    # A database error's text quotes rows (customer data); the item says its kind instead.
    if isinstance(exc, DBAPIError):
        return describe_error(exc)
    return f"{type(exc).__name__}: {exc}"[:500]


def _process_signal(run: Run, signal: Signal) -> None:
    if signal.account_id is None:
        return  # intake already put it in the exception queue as unknown_account
    account = run.session.get(Account, signal.account_id)  # read fresh when its lock was taken
    assert account is not None
    journeys = _unfinished_journeys(run, account)
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


def _unfinished_journeys(run: Run, account: Account) -> list[Journey]:
    """The account's journeys that have not ended: active, waiting, or parked."""
    return list(run.session.scalars(
        select(Journey).where(Journey.account_id == account.id, Journey.ended_at.is_(None))
        .order_by(Journey.id).execution_options(populate_existing=True)))


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
    for version, playbook in run.playbooks():
        if playbook.enroll.signal != signal.type:
            continue
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
                                    deal=deal)
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
        try:
            # The unique enrollment key is what makes once_per hold across workers.
            with run.session.begin_nested():
                run.session.add(journey)
                run.session.flush()
        except IntegrityError:
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
    """Move on journeys whose wait has expired; close expired override windows. Returns journeys moved."""
    run = Run(session, settings, now)
    due = session.execute(
        select(Journey.id, Journey.account_id)
        .where(Journey.status == JourneyStatus.WAITING, Journey.wait_until.is_not(None),
               Journey.wait_until <= now)
        .order_by(Journey.wait_until).limit(limit)).all()
    moved = 0
    for journey_id, account_id in due:
        # An account another worker is busy with is skipped, not waited for: the next
        # sweep takes it, and skipping cannot deadlock.
        if not lock_accounts(session, [account_id], skip_locked=True):
            continue
        journey = fresh(session, Journey, journey_id)
        if journey is None or journey.status != JourneyStatus.WAITING or journey.wait_until is None \
                or journey.wait_until > now:
            continue  # a signal moved it on since the query above
        try:
            with session.begin_nested():
                time_out(run, journey)
            moved += 1
        except Exception as exc:  # one bad journey never stops the sweep
            if connection_lost(exc):
                raise
            if is_transient(exc):
                # Still waiting and still due: the next sweep takes it again.
                log.warning("journey %s timeout deferred after a transient error: %s", journey.id,
                            describe_error(exc))
                continue
            log.error("journey %s failed in the timeout sweep: %s", journey.id, describe_error(exc))
            log.debug("journey %s failure", journey.id, exc_info=True)
            # Parked, it is no longer due: the next sweep does not fail (and report) it again.
            version, _ = playbook_of(run, journey)
            park(run, journey, version, Category.ENGINE_ERROR,
                 f"timeout of journey {journey.id} failed: {_failure_text(exc)}")
    for step_run in session.scalars(select(StepRun).where(StepRun.override_until.is_not(None),
                                                          StepRun.override_until <= now)):
        step_run.override_until = None
    return moved
