"""The engine: signals in, journeys advanced, automated steps run, human tasks out.

Read top to bottom: `process_pending` takes stored signals; each signal may end journeys
(`exit_on`), wake waiting ones, and enroll the account in playbooks whose trigger it
matches; `_advance` then runs steps until the journey waits for a person, a signal or a
deadline, or ends. `decide_task`, `override_step` and `sweep_timeouts` are the other ways
time and people move a journey on. Nothing here commits: callers own the transaction, so
a decision, its audit event and its outbox rows land together or not at all.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from orchestrator import audit, exception_queue, governance, outbox, signals
from orchestrator.actions import get_action
from orchestrator.assignment import resolve_assignee
from orchestrator.audit import AuditAction
from orchestrator.briefs import build_brief
from orchestrator.calendars import CalendarError
from orchestrator.config import Settings
from orchestrator.context import build_context
from orchestrator.db import skip_locked
from orchestrator.durations import Duration, parse_duration
from orchestrator.errors import HandoffError
from orchestrator.exception_queue import Category
from orchestrator.expressions import Expression, ExpressionError
from orchestrator.models import (
    OPEN_STATUSES,
    Account,
    Deal,
    Journey,
    JourneyStatus,
    PlaybookVersion,
    Signal,
    StepRun,
    StepStatus,
    Task,
    TaskKind,
)
from orchestrator.playbook.model import (
    ActionCall,
    Assignment,
    AutomatedStep,
    BranchStep,
    ExitStep,
    GotoStep,
    HumanStep,
    HybridStep,
    Jump,
    Oversight,
    Playbook,
    SetStageStep,
    Sla,
    Step,
    WaitStep,
)
from orchestrator.playbook.store import active_playbooks, compiled
from orchestrator.stages import change_stage
from orchestrator.tasks import complete_task, create_task
from orchestrator.templates import Template, TemplateError

log = logging.getLogger(__name__)

# A journey that runs this many steps without waiting is looping; park it for a person.
MAX_STEPS_PER_ADVANCE = 50
# A customer-facing automation is held back for this long after a sensitive signal.
SENSITIVE_LOOKBACK = timedelta(days=30)
_DEFAULT_APPROVAL_SLA = Sla(due=parse_duration("1 business day"))
_APPROVAL_BRIEF = ("trigger", "account", "automations", "journey")


class EngineError(HandoffError):
    """A request the engine refuses: a closed task, an expired override window, ..."""


@dataclass
class ProcessReport:
    """What one engine pass did, for CLIs, the demo and metrics."""

    signals: int = 0
    counts: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        parts = ", ".join(f"{name} {count}" for name, count in sorted(self.counts.items()))
        return f"{self.signals} signals processed" + (f": {parts}" if parts else "")


@dataclass
class _Run:
    """The state one engine call carries around: where, when, and what it counted."""

    session: Session
    settings: Settings
    now: datetime
    report: ProcessReport = field(default_factory=ProcessReport)
    _active: list[tuple[PlaybookVersion, Playbook]] | None = None

    def count(self, what: str) -> None:
        self.report.counts[what] += 1

    def playbooks(self) -> list[tuple[PlaybookVersion, Playbook]]:
        """The active playbooks, read once per engine call: a pass sees one consistent set."""
        if self._active is None:
            self._active = active_playbooks(session=self.session)
        return self._active


@dataclass(frozen=True)
class _Next:
    """Where a journey goes after a step: another step, a wait, or an end."""

    step_id: str | None = None
    wait: bool = False
    park: bool = False  # parked in the exception queue: leave the journey exactly as it is
    end: JourneyStatus | None = None
    reason: str = ""


# --- playbooks -------------------------------------------------------------------------------

def _playbook_of(run: _Run, journey: Journey) -> tuple[PlaybookVersion, Playbook]:
    # A journey keeps the version it enrolled under, even after a newer one is applied.
    version = run.session.get(PlaybookVersion, journey.playbook_version_id)
    assert version is not None
    return version, compiled(version)


# --- signals ---------------------------------------------------------------------------------

def process_pending(*, session: Session, settings: Settings, now: datetime,
                    limit: int = 500) -> ProcessReport:
    """Evaluate stored signals not yet processed, oldest first; one bad signal never stops the rest."""
    run = _Run(session, settings, now)
    for signal in signals.pending_signals(session, limit=limit):
        try:
            with session.begin_nested():
                _process_signal(run, signal)
        except Exception as exc:  # isolate the failure to this signal, and say so
            log.exception("signal %s failed in the engine", signal.id)
            exception_queue.raise_item(
                session, settings=settings, category=Category.ENGINE_ERROR, at=now,
                message=f"signal {signal.type} could not be processed: {exc}",
                account_id=signal.account_id, signal_id=signal.id)
            run.count("errors")
        signals.mark_processed(signal, now)
        run.report.signals += 1
    return run.report


def _process_signal(run: _Run, signal: Signal) -> None:
    if signal.account_id is None:
        return  # intake already put it in the exception queue as unknown_account
    account = run.session.get(Account, signal.account_id)
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


def _complete_from_signal(run: _Run, signal: Signal) -> None:
    # Connectors report CRM task completion as a signal; the payload names our task.
    payload = signal.payload
    task = None
    if "task_id" in payload:
        task = run.session.get(Task, int(payload["task_id"]))
    elif "crm_id" in payload:
        task = run.session.scalar(select(Task).where(Task.crm_id == str(payload["crm_id"])))
    if task is None or task.status not in OPEN_STATUSES:
        return
    # A CRM knows "completed", not our outcomes; a rep's own word (e.g. "renewing") stays
    # in the payload for wait conditions to read.
    allowed = _OUTCOMES[TaskKind(task.kind)]
    outcome = payload.get("outcome")
    _decide(run, task, outcome if outcome in allowed else allowed[0], str(payload.get("actor") or "crm"),
            sync_crm=False)  # the CRM already knows: do not echo the completion back


def _unfinished_journeys(run: _Run, account: Account) -> list[Journey]:
    """The account's journeys that have not ended: active, waiting, or parked."""
    return list(run.session.scalars(
        select(Journey).where(Journey.account_id == account.id, Journey.ended_at.is_(None))
        .order_by(Journey.id)))


def _exit_journeys(run: _Run, journeys: list[Journey], signal: Signal) -> None:
    # A journey parked in the exception queue still leaves when its exit signal comes.
    for journey in journeys:
        if journey.ended_at is not None:
            continue  # ended a moment ago, by this same signal
        version, playbook = _playbook_of(run, journey)
        if signal.type in playbook.exit_on:
            _end(run, journey, version, JourneyStatus.EXITED,
                 f"{signal.type} received (exit_on)", rule=f"exit_on: {signal.type}")


def _wake_journeys(run: _Run, account: Account, journeys: list[Journey], signal: Signal,
                   waits: dict[int, str | None]) -> None:
    for journey in journeys:
        if journey.status != JourneyStatus.WAITING or journey.current_step_id is None \
                or waits.get(journey.id) != journey.current_step_id:
            continue
        version, playbook = _playbook_of(run, journey)
        step = playbook.step(journey.current_step_id)
        if not isinstance(step, WaitStep):
            continue
        if step.signal is not None and step.signal != signal.type:
            continue
        if step.until is not None and step.signal == signal.type:
            missing = _missing_signal_fields(step.until, signal)
            if missing:
                _raise(run, Category.MISSING_FIELD, f"{playbook.id} step {step.id} expects {', '.join(missing)} "
                       f"on {signal.type}; the signal has none; still waiting",
                       account_id=account.id, signal_id=signal.id, journey_id=journey.id)
                continue
        context = _context(run, journey, account, signal)
        if step.until is not None and not step.until.evaluate(context):
            continue
        step_run = _waiting_run(run, journey)
        _finish(step_run, StepStatus.DONE, run.now, f"{signal.type} arrived", signal_id=signal.id)
        journey.context = {**journey.context, "signal_id": signal.id}
        journey.wait_signal = journey.wait_until = None
        _audit(run, journey, version, AuditAction.STEP_RAN, step.id, f"wait:{step.id}",
               f"waited for {step.signal or 'a condition'}; {signal.type} satisfied it")
        _advance(run, journey, version, playbook, _after(playbook, step))


def _enroll(run: _Run, account: Account, signal: Signal) -> None:
    for version, playbook in run.playbooks():
        if playbook.enroll.signal != signal.type:
            continue
        rule = f"enroll.on: {signal.type}"
        deal = run.session.get(Deal, signal.deal_id) if signal.deal_id else None
        condition = playbook.enroll.when
        if condition is not None:
            missing = _missing_signal_fields(condition, signal)
            if missing:
                _raise(run, Category.MISSING_FIELD,
                       f"{playbook.id} expects {', '.join(missing)} on {signal.type}; the signal has none",
                       account_id=account.id, signal_id=signal.id)
                continue
            context = build_context(run.session, account=account, now=run.now, signal=signal,
                                    deal=deal)
            rule += f" when: {condition.source}"
            try:
                matched = bool(condition.evaluate(context))
            except ExpressionError as exc:
                _raise(run, Category.EXPRESSION_ERROR, f"{playbook.id}: enroll.when failed: {exc}",
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
        _audit(run, journey, version, AuditAction.ENROLLED, None, rule,
               f"{signal.type} at {signal.occurred_at:%Y-%m-%d %H:%M}Z enrolled {account.name}")
        _advance(run, journey, version, playbook, _Next(step_id=playbook.steps[0].id))


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
    # Held only while the journey is open (see _end), so a finished play can run again later.
    scope = playbook.enroll.once_per
    subject = {"account": account.id, "deal": signal.deal_id or f"account-{account.id}",
               "signal": signal.id}[scope]
    return f"{playbook.id}:{scope}:{subject}"


# --- running steps ---------------------------------------------------------------------------

def _advance(run: _Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
             next_: _Next) -> None:
    for _ in range(MAX_STEPS_PER_ADVANCE):
        if next_.end is not None:
            _end(run, journey, version, next_.end, next_.reason)
            return
        if next_.park:
            return
        if next_.wait:
            journey.status = JourneyStatus.WAITING
            return
        if next_.step_id is None:
            _end(run, journey, version, JourneyStatus.COMPLETED, "reached the end of the playbook")
            return
        journey.status = JourneyStatus.ACTIVE
        journey.current_step_id = next_.step_id
        next_ = _execute(run, journey, version, playbook, playbook.step(next_.step_id))
    _park(run, journey, version, Category.LOOP_GUARD,
          f"ran {MAX_STEPS_PER_ADVANCE} steps without waiting; the playbook may loop")


def _execute(run: _Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
             step: Step) -> _Next:
    account = run.session.get(Account, journey.account_id)
    assert account is not None
    step_run = StepRun(journey_id=journey.id, step_id=step.id, kind=step.kind,
                       oversight=getattr(step, "oversight", None), started_at=run.now)
    run.session.add(step_run)
    run.session.flush()
    try:
        return _EXECUTORS[type(step)](run, journey, version, playbook, step, step_run, account)
    except (TemplateError, ExpressionError, CalendarError) as exc:
        # A template or condition that cannot be evaluated on this account's data, or a
        # calendar the playbook names but nobody configured, is for a person to fix.
        _finish(step_run, StepStatus.FAILED, run.now, str(exc))
        category = Category.CONFIGURATION if isinstance(exc, CalendarError) else Category.MISSING_FIELD
        return _park(run, journey, version, category, f"step {step.id}: {exc}")


def _run_automated(run: _Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
                   step: AutomatedStep, step_run: StepRun, account: Account) -> _Next:
    spec = get_action(step.call.action)
    if spec.customer_facing:
        blocked = _customer_facing_block(run, journey, playbook, account)
        if blocked:
            _finish(step_run, StepStatus.SKIPPED, run.now, blocked)
            run.count("caps_hit")
            _audit(run, journey, version, AuditAction.STEP_SKIPPED, step.id, "governance", blocked)
            return _after(playbook, step)
        if governance.in_quiet_hours(run.now, run.settings):
            resume_at = governance.quiet_hours_end(run.now, run.settings)
            reason = f"deferred: quiet hours until {resume_at:%Y-%m-%d %H:%M}Z"
            _finish(step_run, StepStatus.SKIPPED, run.now, reason, deferred_until=resume_at.isoformat())
            _audit(run, journey, version, AuditAction.STEP_SKIPPED, step.id, "governance.quiet_hours", reason)
            journey.wait_until, journey.wait_signal = resume_at, None
            return _Next(wait=True)
    context = _context(run, journey, account)
    if step.oversight == Oversight.IN_THE_LOOP:
        return _ask_approval(run, journey, version, step, step_run, account, context)
    args = _perform(run, journey, account, step.call, step_run, context, "run")
    _finish(step_run, StepStatus.DONE, run.now, f"{step.call.action} ran", args=args)
    run.count("automated_steps")
    if step.oversight == Oversight.ON_THE_LOOP:
        assert step.override_window is not None
        step_run.override_until = _deadline(run, step.override_window)
        _notify_owner_of_override(run, journey, account, step, step_run)
    _audit(run, journey, version, AuditAction.STEP_RAN, step.id, f"oversight.{step.oversight}",
           f"{step.call.action} ran" + (f"; override open until {step_run.override_until:%Y-%m-%d %H:%M}Z"
                                        if step_run.override_until else ""))
    return _after(playbook, step)


def _customer_facing_block(run: _Run, journey: Journey, playbook: Playbook,
                           account: Account) -> str | None:
    """Why a customer-facing automation must not run now, or None."""
    if playbook.sensitive_signals:
        sensitive = run.session.scalar(
            select(Signal).where(Signal.account_id == account.id,
                                 Signal.type.in_(playbook.sensitive_signals),
                                 Signal.occurred_at >= run.now - SENSITIVE_LOOKBACK,
                                 Signal.occurred_at <= run.now)
            .order_by(Signal.occurred_at.desc()).limit(1))
        if sensitive is not None:
            return (f"protected human zone: {sensitive.type} on {sensitive.occurred_at:%Y-%m-%d}; "
                    "a person handles this account's customer contact")
    return governance.touch_block_reason(run.session, account_id=account.id, now=run.now,
                                         settings=run.settings, playbook_limit=playbook.touch_limit,
                                         playbook_id=playbook.id)


def _ask_approval(run: _Run, journey: Journey, version: PlaybookVersion, step: AutomatedStep,
                  step_run: StepRun, account: Account, context: dict[str, Any]) -> _Next:
    spec = get_action(step.call.action)
    shown = "; ".join(f"{key}: {value}" for key, value in _render_args(step.call, context).items())
    action = spec.description.rstrip(".")
    return _create_task(
        run, journey, version, step, step_run, account, kind=TaskKind.APPROVAL,
        assignment=step.approval or Assignment(to="account.owner"),
        title=f"Approve: {action} ({account.name})",
        recommendation=(f"Approve to let Handoff {action[0].lower()}{action[1:]} ({shown}). "
                        "Reject if what you know of the account says otherwise."),
        sections=_APPROVAL_BRIEF, sla=step.approval_sla or _DEFAULT_APPROVAL_SLA, draft=None,
        estimate=None)


def _run_person_step(run: _Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
                     step: HumanStep | HybridStep, step_run: StepRun, account: Account) -> _Next:
    """A human step's task, or a hybrid step's draft handed to a person to review."""
    context = _context(run, journey, account)
    draft = step.draft.render(context) if isinstance(step, HybridStep) else None
    return _create_task(run, journey, version, step, step_run, account,
                        kind=TaskKind.ACTION if draft is None else TaskKind.REVIEW,
                        assignment=step.assign, title=step.task.title.render(context),
                        recommendation=step.task.recommend.render(context),
                        sections=step.task.brief, sla=step.sla,
                        draft=draft,
                        estimate=step.estimate_minutes)


def _create_task(run: _Run, journey: Journey, version: PlaybookVersion, step: Step,
                 step_run: StepRun, account: Account, *, kind: TaskKind, assignment: Assignment,
                 title: str, recommendation: str, sections: tuple[str, ...], sla: Sla,
                 draft: str | None, estimate: int | None) -> _Next:
    deal = run.session.get(Deal, journey.deal_id) if journey.deal_id else None
    assignee = resolve_assignee(run.session, assignment=assignment, account=account, deal=deal,
                                now=run.now)
    if assignee is None:
        reason = f"no available person for step {step.id} ({_describe(assignment)})"
        _finish(step_run, StepStatus.FAILED, run.now, reason)
        return _park(run, journey, version, Category.NO_ASSIGNEE, reason)
    signal = _signal_of(run, journey)
    brief = build_brief(run.session, account=account, trigger=signal, recommendation=recommendation,
                        sections=sections, journey=journey, deal=deal,
                        assignee_how=assignee.how, now=run.now)
    task = create_task(run.session, settings=run.settings, account=account, owner=assignee.owner,
                       kind=kind, title=title[:255],
                       recommendation=recommendation, brief=brief, sla=sla, now=run.now,
                       journey=journey, step_run=step_run, signal=signal, draft=draft,
                       calendar_name=sla.calendar)
    step_run.status = StepStatus.WAITING
    step_run.outcome = {"task_id": task.id, "owner": assignee.owner.email, "assigned": assignee.how,
                        "estimate_minutes": estimate}
    run.count("tasks_created")
    _audit(run, journey, version, AuditAction.STEP_WAITING, step.id, f"assign: {assignee.how}",
           f"{kind} task {task.id} for {assignee.owner.email}, due {task.due_at:%Y-%m-%d %H:%M}Z")
    return _Next(wait=True)


def _run_wait(run: _Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
              step: WaitStep, step_run: StepRun, account: Account) -> _Next:
    if step.signal is None and step.until is not None:
        if step.until.evaluate(_context(run, journey, account)):
            _finish(step_run, StepStatus.DONE, run.now, "condition already true")
            return _after(playbook, step)
    journey.wait_signal = step.signal
    journey.wait_until = _deadline(run, step.timeout)
    step_run.status = StepStatus.WAITING
    _audit(run, journey, version, AuditAction.STEP_WAITING, step.id, f"wait:{step.id}",
           f"waiting for {step.signal or step.until.source if step.until else '?'} "
           f"until {journey.wait_until:%Y-%m-%d %H:%M}Z")
    return _Next(wait=True)


def _run_branch(run: _Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
                step: BranchStep, step_run: StepRun, account: Account) -> _Next:
    context = _context(run, journey, account)
    for index, rule in enumerate(step.rules):
        if rule.when.evaluate(context):
            _finish(step_run, StepStatus.DONE, run.now, f"rule {index + 1} matched", rule=index)
            _audit(run, journey, version, AuditAction.STEP_RAN, step.id,
                   f"branch:{step.id}[{index}] {rule.when.source}", f"rule {index + 1} matched")
            return _jump(playbook, rule.goto)
    if step.otherwise is not None:
        _finish(step_run, StepStatus.DONE, run.now, "no rule matched; took otherwise")
        _audit(run, journey, version, AuditAction.STEP_RAN, step.id, f"branch:{step.id} otherwise",
               "no rule matched")
        return _jump(playbook, step.otherwise)
    reason = f"branch {step.id}: no rule matched this account's data"
    _finish(step_run, StepStatus.FAILED, run.now, reason)
    return _park(run, journey, version, Category.UNMATCHED_BRANCH, reason)


def _run_goto(run: _Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
              step: GotoStep, step_run: StepRun, account: Account) -> _Next:
    _finish(step_run, StepStatus.DONE, run.now, f"goto {step.to}")
    return _Next(step_id=step.to)


def _run_exit(run: _Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
              step: ExitStep, step_run: StepRun, account: Account) -> _Next:
    _finish(step_run, StepStatus.DONE, run.now, step.reason)
    return _Next(end=JourneyStatus.COMPLETED, reason=f"exit step {step.id}: {step.reason}")


def _run_set_stage(run: _Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
                   step: SetStageStep, step_run: StepRun, account: Account) -> _Next:
    change_stage(run.session, account=account, to=step.stage, at=run.now, journey=journey,
                 playbook_version=version.version, rule=f"set_stage:{step.id}",
                 reason=f"{playbook.id} step {step.id}")
    _finish(step_run, StepStatus.DONE, run.now, f"stage {step.stage}")
    return _after(playbook, step)


_EXECUTORS: dict[type, Any] = {
    AutomatedStep: _run_automated, HumanStep: _run_person_step, HybridStep: _run_person_step,
    WaitStep: _run_wait, BranchStep: _run_branch, GotoStep: _run_goto, ExitStep: _run_exit,
    SetStageStep: _run_set_stage,
}


# --- people act: tasks, approvals, overrides -------------------------------------------------

_OUTCOMES = {
    TaskKind.ACTION: ("done",),
    TaskKind.APPROVAL: ("approved", "rejected"),
    TaskKind.REVIEW: ("published", "rejected"),
}


def decide_task(*, session: Session, settings: Settings, task_id: int, outcome: str, actor: str,
                now: datetime) -> Task:
    """Close a task as a person did (done, approved, rejected, published) and move its journey on."""
    task = session.get(Task, task_id, with_for_update=True)
    if task is None:
        raise EngineError(f"no task {task_id}")
    if task.status not in OPEN_STATUSES:
        raise EngineError(f"task {task_id} is already {task.status}")
    run = _Run(session, settings, now)
    _decide(run, task, outcome, actor)
    return task


def _decide(run: _Run, task: Task, outcome: str, actor: str, sync_crm: bool = True) -> None:
    allowed = _OUTCOMES[TaskKind(task.kind)]
    if outcome not in allowed:
        raise EngineError(f"a {task.kind} task takes {' or '.join(allowed)}, not {outcome!r}")
    complete_task(run.session, task=task, actor=actor, outcome=outcome, now=run.now, sync_crm=sync_crm)
    journey = run.session.get(Journey, task.journey_id) if task.journey_id else None
    step_run = run.session.get(StepRun, task.step_run_id) if task.step_run_id else None
    if journey is None or step_run is None or journey.status != JourneyStatus.WAITING \
            or journey.current_step_id != step_run.step_id:
        return  # the journey moved on (exited, say); the task outcome is still recorded
    version, playbook = _playbook_of(run, journey)
    step = playbook.step(step_run.step_id)
    account = run.session.get(Account, journey.account_id)
    assert account is not None
    next_ = _after(playbook, step)
    if outcome == "rejected":
        _finish(step_run, StepStatus.REJECTED, run.now, f"rejected by {actor}")
        _audit(run, journey, version, AuditAction.REJECTED, step.id, f"oversight.{step_run.oversight}",
               f"task {task.id} rejected by {actor}", actor=actor)
        if isinstance(step, AutomatedStep) and step.on_reject is not None:
            next_ = _jump(playbook, step.on_reject)
    elif isinstance(step, AutomatedStep):  # approved
        args = _perform(run, journey, account, step.call, step_run, _context(run, journey, account), "run")
        _finish(step_run, StepStatus.DONE, run.now, f"approved by {actor}; {step.call.action} ran",
                args=args, task_id=task.id)
        run.count("automated_steps")
        _audit(run, journey, version, AuditAction.APPROVED, step.id, "oversight.in_the_loop",
               f"{actor} approved; {step.call.action} ran", actor=actor)
    elif isinstance(step, HybridStep):
        if step.publish is not None:
            context = {**_context(run, journey, account), "draft": task.draft or ""}
            _perform(run, journey, account, step.publish, step_run, context, "publish")
        _finish(step_run, StepStatus.DONE, run.now, f"published by {actor}", task_id=task.id)
        _audit(run, journey, version, AuditAction.PUBLISHED, step.id, "hybrid.review",
               f"{actor} reviewed the draft and published it", actor=actor)
    else:
        _finish(step_run, StepStatus.DONE, run.now, f"done by {actor}", task_id=task.id)
        _audit(run, journey, version, AuditAction.STEP_RAN, step.id, "human",
               f"{actor} finished task {task.id}; the journey moves on", actor=actor)
    _advance(run, journey, version, playbook, next_)


def override_step(*, session: Session, settings: Settings, step_run_id: int, actor: str,
                  now: datetime, reason: str = "") -> StepRun:
    """Undo an on_the_loop step inside its override window by running its compensation."""
    step_run = session.get(StepRun, step_run_id, with_for_update=True)
    if step_run is None:
        raise EngineError(f"no step run {step_run_id}")
    if step_run.override_until is None or now > step_run.override_until:
        raise EngineError(f"step run {step_run_id} has no open override window")
    run = _Run(session, settings, now)
    journey = step_run.journey
    version, playbook = _playbook_of(run, journey)
    step = playbook.step(step_run.step_id)
    assert isinstance(step, AutomatedStep) and step.compensate is not None
    account = session.get(Account, journey.account_id)
    assert account is not None
    _perform(run, journey, account, step.compensate, step_run, _context(run, journey, account),
             "compensate")
    step_run.status = StepStatus.OVERRIDDEN
    step_run.override_until = None
    step_run.outcome = {**step_run.outcome, "overridden_by": actor, "overridden_at": now.isoformat(),
                        "override_reason": reason}
    _audit(run, journey, version, AuditAction.OVERRIDDEN, step.id, "oversight.on_the_loop",
           f"{actor} overrode {step.call.action}; ran {step.compensate.action}"
           + (f": {reason}" if reason else ""), actor=actor)
    return step_run


def retry_journey(*, session: Session, settings: Settings, journey_id: int, actor: str,
                  now: datetime, note: str = "") -> Journey:
    """Run a parked journey's current step again, once a person has fixed what stopped it."""
    journey = _parked(session, journey_id)
    run = _Run(session, settings, now)
    version, playbook = _playbook_of(run, journey)
    _resolve_exceptions(run, journey, actor, note or "retried")
    _audit(run, journey, version, AuditAction.RETRIED, journey.current_step_id, "operator",
           note or f"{actor} retried step {journey.current_step_id}", actor=actor)
    _advance(run, journey, version, playbook, _Next(step_id=journey.current_step_id))
    return journey


def end_journey(*, session: Session, settings: Settings, journey_id: int, actor: str,
                now: datetime, reason: str) -> Journey:
    """End an open or parked journey by hand; its open tasks are cancelled."""
    journey = session.get(Journey, journey_id, with_for_update=True)
    if journey is None:
        raise EngineError(f"no journey {journey_id}")
    if journey.ended_at is not None:
        raise EngineError(f"journey {journey_id} already ended ({journey.status})")
    run = _Run(session, settings, now)
    version, _ = _playbook_of(run, journey)
    _resolve_exceptions(run, journey, actor, f"journey ended: {reason}")
    _end(run, journey, version, JourneyStatus.EXITED, f"ended by {actor}: {reason}", rule="operator")
    return journey


def _parked(session: Session, journey_id: int) -> Journey:
    journey = session.get(Journey, journey_id, with_for_update=True)
    if journey is None:
        raise EngineError(f"no journey {journey_id}")
    if journey.status != JourneyStatus.STALLED or journey.current_step_id is None:
        raise EngineError(f"journey {journey_id} is {journey.status}, not parked in the exception queue")
    return journey


def _resolve_exceptions(run: _Run, journey: Journey, actor: str, note: str) -> None:
    for item in exception_queue.list_items(run.session, journey_id=journey.id):
        exception_queue.resolve_item(run.session, item_id=item.id, by=actor, at=run.now, note=note)


# --- time moves: wait timeouts, deferrals, override windows ----------------------------------

def sweep_timeouts(*, session: Session, settings: Settings, now: datetime, limit: int = 500) -> int:
    """Move on journeys whose wait has expired; close expired override windows. Returns journeys moved."""
    run = _Run(session, settings, now)
    due = select(Journey).where(Journey.status == JourneyStatus.WAITING,
                                Journey.wait_until.is_not(None), Journey.wait_until <= now) \
        .order_by(Journey.wait_until).limit(limit)
    if skip_locked(session):
        due = due.with_for_update(skip_locked=True)
    moved = 0
    for journey in session.scalars(due).all():
        try:
            with session.begin_nested():
                _time_out(run, journey)
            moved += 1
        except Exception as exc:  # one bad journey never stops the sweep
            log.exception("journey %s failed in the timeout sweep", journey.id)
            # Parked, it is no longer due: the next sweep does not fail (and report) it again.
            version, _ = _playbook_of(run, journey)
            _park(run, journey, version, Category.ENGINE_ERROR, f"timeout of journey {journey.id} failed: {exc}")
    for step_run in session.scalars(select(StepRun).where(StepRun.override_until.is_not(None),
                                                          StepRun.override_until <= now)):
        step_run.override_until = None
    return moved


def _time_out(run: _Run, journey: Journey) -> None:
    version, playbook = _playbook_of(run, journey)
    assert journey.current_step_id is not None
    step = playbook.step(journey.current_step_id)
    journey.wait_until = journey.wait_signal = None
    if isinstance(step, WaitStep):
        step_run = _waiting_run(run, journey)
        _finish(step_run, StepStatus.TIMED_OUT, run.now, f"timed out after {step.timeout.text}")
        _audit(run, journey, version, AuditAction.STEP_TIMED_OUT, step.id, f"wait:{step.id} timeout",
               f"no {step.signal or 'matching condition'} within {step.timeout.text}")
        run.count("timeouts")
        _advance(run, journey, version, playbook, _jump(playbook, step.on_timeout))
    else:  # a deferred step (quiet hours): run it again now
        _advance(run, journey, version, playbook, _Next(step_id=step.id))


# --- small helpers ---------------------------------------------------------------------------

def _after(playbook: Playbook, step: Step) -> _Next:
    return _Next(step_id=playbook.next_step_id(step.id))


def _jump(playbook: Playbook, jump: Jump) -> _Next:
    if jump.exit:
        return _Next(end=JourneyStatus.COMPLETED, reason="exit")
    return _Next(step_id=jump.goto)


def _end(run: _Run, journey: Journey, version: PlaybookVersion, status: JourneyStatus, reason: str,
         rule: str = "") -> None:
    journey.status = status
    journey.ended_at = run.now
    journey.end_reason = reason
    journey.wait_signal = journey.wait_until = None
    # Free the once_per slot so a later trigger can enroll the account again.
    journey.enrollment_key = f"{journey.enrollment_key}#{journey.id}"
    for task in run.session.scalars(select(Task).where(Task.journey_id == journey.id,
                                                       Task.status.in_(OPEN_STATUSES))):
        complete_task(run.session, task=task, actor="system", outcome="cancelled", now=run.now)
    run.count(f"journeys_{status}")
    _audit(run, journey, version,
           AuditAction.EXITED if status == JourneyStatus.EXITED else AuditAction.COMPLETED,
           journey.current_step_id, rule or "flow", reason)


def _park(run: _Run, journey: Journey, version: PlaybookVersion, category: Category, reason: str) -> _Next:
    """Stop a journey where it is and hand it to the exception queue's owner."""
    journey.status = JourneyStatus.STALLED
    journey.wait_signal = journey.wait_until = None
    _raise(run, category, f"{journey.playbook_id}: {reason}", account_id=journey.account_id,
           journey_id=journey.id, playbook_id=journey.playbook_id, playbook_version=version.version,
           step_id=journey.current_step_id)
    return _Next(park=True)


def _raise(run: _Run, category: Category, message: str, **refs: Any) -> None:
    exception_queue.raise_item(run.session, settings=run.settings, category=category,
                               message=message, at=run.now, **refs)
    run.count(f"exceptions_{category}")


def _finish(step_run: StepRun, status: StepStatus, at: datetime, reason: str, **outcome: Any) -> None:
    step_run.status = status
    step_run.finished_at = at
    step_run.reason = reason
    if outcome:
        step_run.outcome = {**step_run.outcome, **outcome}


def _waiting_run(run: _Run, journey: Journey) -> StepRun:
    step_run = run.session.scalar(
        select(StepRun).where(StepRun.journey_id == journey.id,
                              StepRun.step_id == journey.current_step_id,
                              StepRun.status == StepStatus.WAITING)
        .order_by(StepRun.id.desc()).limit(1))
    assert step_run is not None, f"journey {journey.id} waits with no waiting step run"
    return step_run


def _signal_of(run: _Run, journey: Journey) -> Signal | None:
    signal_id = journey.context.get("signal_id") or journey.trigger_signal_id
    return run.session.get(Signal, signal_id) if signal_id else None


def _context(run: _Run, journey: Journey, account: Account,
             signal: Signal | None = None) -> dict[str, Any]:
    deal = run.session.get(Deal, journey.deal_id) if journey.deal_id else None
    return build_context(run.session, account=account, now=run.now,
                         signal=signal or _signal_of(run, journey), deal=deal, journey=journey,
                         owner=account.owner)


def _deadline(run: _Run, duration: Duration) -> datetime:
    return run.settings.calendar().add(run.now, duration)


def _render_args(call: ActionCall, context: dict[str, Any]) -> dict[str, Any]:
    return {key: value.render(context) if isinstance(value, Template) else value
            for key, value in call.args.items()}


def _perform(run: _Run, journey: Journey, account: Account, call: ActionCall, step_run: StepRun,
             context: dict[str, Any], purpose: str) -> dict[str, Any]:
    """Carry out an action: an outbox row for outside systems, a stage change for the journey."""
    spec = get_action(call.action)
    args = _render_args(call, context)
    if spec.target == "journey":
        version, _ = _playbook_of(run, journey)
        change_stage(run.session, account=account, to=str(args["stage"]), at=run.now, journey=journey,
                     playbook_version=version.version, rule=f"{call.action}:{step_run.step_id}",
                     reason=f"{journey.playbook_id} step {step_run.step_id}")
    else:
        outbox.enqueue(run.session, kind=call.action, target=spec.target, at=run.now,
                       idempotency_key=f"step-run:{step_run.id}:{purpose}", account_id=account.id,
                       payload={"account_id": account.id, "journey_id": journey.id,
                                "step_id": step_run.step_id, "args": args})
    if spec.customer_facing and purpose != "compensate":
        governance.record_touch(run.session, account_id=account.id, journey_id=journey.id,
                                step_id=step_run.step_id, action=call.action, at=run.now)
    return args


def _notify_owner_of_override(run: _Run, journey: Journey, account: Account, step: AutomatedStep,
                              step_run: StepRun) -> None:
    owner = account.owner
    if owner is None or step_run.override_until is None:
        return
    outbox.enqueue(
        run.session, kind="notify.email", target="email", at=run.now, account_id=account.id,
        idempotency_key=f"step-run:{step_run.id}:override-notice",
        payload={"to": owner.email,
                 "subject": f"Handoff ran {step.id} for {account.name}",
                 "body": f"{step.call.action} ran at {run.now:%Y-%m-%d %H:%M}Z. You can override it "
                         f"until {step_run.override_until:%Y-%m-%d %H:%M}Z (step run {step_run.id}).",
                 "step_run_id": step_run.id})


def _audit(run: _Run, journey: Journey, version: PlaybookVersion, action: AuditAction, step_id: str | None,
           rule: str, reason: str, actor: str = "system") -> None:
    audit.record(run.session, at=run.now, action=action, rule=rule, reason=reason, actor=actor,
                 account_id=journey.account_id, journey_id=journey.id,
                 playbook_id=journey.playbook_id, playbook_version=version.version, step_id=step_id)


def _describe(assignment: Assignment) -> str:
    parts = [f"to {assignment.to}" if assignment.to else "", f"role {assignment.role}" if assignment.role else ""]
    text = ", ".join(p for p in parts if p)
    return text + (f"; fallback {_describe(assignment.fallback)}" if assignment.fallback else "")
