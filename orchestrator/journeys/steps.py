"""Running a journey's steps: each kind of step under its oversight level, until the journey waits or ends.

`advance` is the loop; one executor per step kind does the work and says where the journey
goes next (`Next`). The helpers at the bottom are the vocabulary the rest of the engine
shares: end, park (hand to the exception queue), flag (raise an exception item), record
(audit), perform (an action, through the outbox). Nothing here commits.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from orchestrator import audit, drafting, exception_queue
from orchestrator.audit import AuditAction
from orchestrator.calendars import CalendarError
from orchestrator.config import Settings
from orchestrator.db import NO_AUTOFLUSH
from orchestrator.delivery import outbox
from orchestrator.durations import Duration, parse_duration
from orchestrator.exception_queue import Category
from orchestrator.journeys import experiments, governance, held_sends, routing
from orchestrator.journeys.recipients import RecipientError, resolve_contact_role
from orchestrator.journeys.stages import StageError, change_stage
from orchestrator.models import (
    OPEN_STATUSES,
    Account,
    Deal,
    Journey,
    JourneyStatus,
    OutboxMessage,
    PlaybookPause,
    PlaybookVersion,
    Signal,
    StepRun,
    StepStatus,
    Task,
    TaskKind,
    assign_id,
)
from orchestrator.playbook.actions import get_action
from orchestrator.playbook.context import build_context
from orchestrator.playbook.expressions import ExpressionError
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
    Monitor,
    Oversight,
    Playbook,
    RouteStep,
    SetStageStep,
    Sla,
    SplitStep,
    Step,
    WaitStep,
)
from orchestrator.playbook.store import active_playbooks, compiled
from orchestrator.playbook.templates import Template, TemplateError, TemplateLimitError
from orchestrator.work.assignment import resolve_assignee
from orchestrator.work.briefs import BriefOptions, build_brief
from orchestrator.work.protection import protection_reason, sensitive_signal
from orchestrator.work.tasks import complete_task, create_task

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R", Task, StepRun)

# A journey that runs this many steps without waiting is looping; park it for a person.
MAX_STEPS_PER_ADVANCE = 50
_DEFAULT_APPROVAL_SLA = Sla(due=parse_duration("1 business day"))
_APPROVAL_BRIEF = ("trigger", "account", "automations", "journey")


@dataclass
class ProcessReport:
    """What one engine pass did, for CLIs, the demo and metrics."""

    signals: int = 0
    counts: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        parts = ", ".join(f"{name} {count}" for name, count in sorted(self.counts.items()))
        return f"{self.signals} signals processed" + (f": {parts}" if parts else "")


@dataclass
class Run:
    """The state one engine call carries around: where, when, and what it counted."""

    session: Session
    settings: Settings
    now: datetime
    report: ProcessReport = field(default_factory=ProcessReport)
    # The batch's open journeys by account, read once under the account locks and kept up to
    # date as journeys enroll and end (None: read them from the database each time).
    open_journeys: dict[int, list[Journey]] | None = None
    # Rows the pass keeps referenced, so the session's identity map does not drop them.
    held: list[Any] = field(default_factory=list)
    # Other rows read once per batch (monitor windows, ...) by the question they answer; emptied
    # when the batch's savepoint rolls back (None: ask the database every time).
    memo: dict[tuple[Any, ...], Any] | None = None
    # Inside the engine's batch savepoint: a looping journey raises StepBudgetExceeded, so the
    # batch rolls back and the signal runs again on its own, where the loop guard parks it.
    in_batch: bool = False
    # The signal types of the engine's batch, by account: its open journeys are read for these
    # (see engine._open_journeys).
    batch_types: dict[int, frozenset[str]] = field(default_factory=dict)
    _active: list[tuple[PlaybookVersion, Playbook]] | None = None
    # What the pass works out from its playbooks once (they do not change within a pass), by question.
    _derived: dict[Any, Any] = field(default_factory=dict)
    # Versions by id with their compiled form: a stored version never changes, and an account's
    # open journeys are looked at for every signal (the dict also keeps the rows referenced).
    _versions: dict[int, tuple[PlaybookVersion, Playbook]] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.report.counts[what] += 1

    def playbooks(self) -> list[tuple[PlaybookVersion, Playbook]]:
        """The active playbooks that are not paused (they enroll), read once per engine call: a pass
        sees one consistent set."""
        if self._active is None:
            paused = set(self.session.scalars(select(PlaybookPause.playbook_id)))
            self._active = [(version, playbook) for version, playbook in active_playbooks(session=self.session)
                            if version.playbook_id not in paused]
        return self._active

    def derived(self, question: Any, answer: Callable[[], T]) -> T:
        """`answer()` for a question about the pass's playbooks, worked out on first use."""
        if question not in self._derived:
            self._derived[question] = answer()
        return cast(T, self._derived[question])

    def enrolling(self, signal_type: str) -> list[tuple[PlaybookVersion, Playbook]]:
        """The playbooks of `playbooks()` that enroll on this signal type, in that order."""
        return self.derived(("enrolling", signal_type), lambda: [
            (version, playbook) for version, playbook in self.playbooks() if playbook.enroll.signal == signal_type])

    def watching(self, signal_type: str) -> list[tuple[Playbook, Monitor]]:
        """The monitors of `playbooks()` that watch this signal type, with their playbooks, in that order."""
        return self.derived(("watching", signal_type), lambda: [
            (playbook, monitor) for _version, playbook in self.playbooks() for monitor in playbook.monitors
            if monitor.signal == signal_type])


class StepBudgetExceeded(Exception):
    """A journey ran MAX_STEPS_PER_ADVANCE steps without stopping, inside a batch (`Run.in_batch`)."""


@dataclass(frozen=True)
class Next:
    """Where a journey goes after a step: another step, a wait, or an end."""

    step_id: str | None = None
    wait: bool = False
    park: bool = False  # parked in the exception queue: leave the journey exactly as it is
    end: JourneyStatus | None = None
    reason: str = ""


def lock_accounts(session: Session, account_ids: Iterable[int], *, skip_locked: bool = False) -> list[Account]:
    """Hold these accounts' row locks until the transaction ends; returns them, freshly read.

    Every change to an account's journeys happens under its lock, so two workers never
    move the same journey at once. Locks are taken in id order, so workers that lock
    several accounts cannot deadlock. With `skip_locked`, accounts another worker holds
    are left out instead of waited for. (SQLite has a single writer and needs none.)
    """
    ids = sorted(set(account_ids))
    if not ids:
        return []
    query = select(Account).where(Account.id.in_(ids)).order_by(Account.id) \
        .with_for_update(skip_locked=skip_locked).execution_options(populate_existing=True)
    return list(session.scalars(query))


def fresh(session: Session, model: type[T], ident: int) -> T | None:
    """The row as the database has it now, not as this session last saw it (read after a lock)."""
    return session.get(model, ident, populate_existing=True)


def playbook_of(run: Run, journey: Journey) -> tuple[PlaybookVersion, Playbook]:
    """The version the journey enrolled under (kept even after a newer one is applied), compiled."""
    return version_of(run, journey.playbook_version_id)


def version_of(run: Run, version_id: int) -> tuple[PlaybookVersion, Playbook]:
    """A stored playbook version by id, compiled; read once per pass."""
    known = run._versions.get(version_id)
    if known is None:
        version = run.session.get(PlaybookVersion, version_id)
        assert version is not None
        known = run._versions[version_id] = (version, compiled(version))
    return known


def advance(run: Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
            next_: Next) -> None:
    """Run steps from `next_` until the journey waits, is parked or ends.

    A journey that runs MAX_STEPS_PER_ADVANCE steps without stopping is looping: what
    those steps did (outbox rows, touches, stage changes) is rolled back, and the journey
    is parked where it was, so a loop costs a person's attention, not a flood of writes. Inside
    the engine's batch (`run.in_batch`) the batch's savepoint is the one rolled back.
    """
    if run.in_batch:
        # The batch's savepoint covers these steps; one per journey would cost two flushes.
        if not _run_steps(run, journey, version, playbook, next_):
            raise StepBudgetExceeded(journey.id)
        return
    savepoint = run.session.begin_nested()
    if _run_steps(run, journey, version, playbook, next_):
        savepoint.commit()
        return
    savepoint.rollback()
    park(run, journey, version, Category.LOOP_GUARD,
         f"ran {MAX_STEPS_PER_ADVANCE} steps without waiting; the playbook may loop (nothing they did was kept)")


def _run_steps(run: Run, journey: Journey, version: PlaybookVersion, playbook: Playbook, next_: Next) -> bool:
    """False when the step budget ran out before the journey stopped."""
    for _ in range(MAX_STEPS_PER_ADVANCE):
        if next_.end is not None:
            end(run, journey, version, next_.end, next_.reason)
            return True
        if next_.park:
            return True
        if next_.wait:
            journey.status = JourneyStatus.WAITING
            return True
        if next_.step_id is None:
            end(run, journey, version, JourneyStatus.COMPLETED, "reached the end of the playbook")
            return True
        journey.status = JourneyStatus.ACTIVE
        journey.current_step_id = next_.step_id
        next_ = _execute(run, journey, version, playbook, playbook.step(next_.step_id))
    return False


def _execute(run: Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
             step: Step) -> Next:
    account = run.session.get(Account, journey.account_id)
    assert account is not None
    # Every column given and the id known now: the row is written with the batch's next flush (models/ids.py).
    step_run = StepRun(step_id=step.id, kind=step.kind, oversight=getattr(step, "oversight", None),
                       status=StepStatus.RUNNING, reason="", outcome={}, started_at=run.now,
                       journey_id=assign_id(run.session, journey))
    run.session.add(step_run)
    assign_id(run.session, step_run)  # it names its task and its outbox messages
    try:
        return _EXECUTORS[type(step)](run, journey, version, playbook, step, step_run, account)
    except DATA_ERRORS as exc:
        return park_failed_step(run, journey, version, step_run, exc)


# A template or condition that cannot be evaluated on this account's data, a calendar the
# playbook names but nobody configured, a stage name that is none of the five: for a person.
DATA_ERRORS = (TemplateError, ExpressionError, CalendarError, StageError, RecipientError)


def park_failed_step(run: Run, journey: Journey, version: PlaybookVersion, step_run: StepRun,
                     exc: Exception) -> Next:
    """Fail the step run and park the journey with the error that stopped it."""
    finish(step_run, StepStatus.FAILED, run.now, str(exc))
    category = Category.MISSING_FIELD if isinstance(exc, TemplateError | ExpressionError | RecipientError) \
        else Category.CONFIGURATION
    if isinstance(exc, TemplateLimitError):
        category = Category.TEMPLATE_ERROR  # the template must change; better data will not help
    return park(run, journey, version, category, f"step {step_run.step_id}: {exc}")


def _run_automated(run: Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
                   step: AutomatedStep, step_run: StepRun, account: Account) -> Next:
    spec = get_action(step.call.action)
    if spec.customer_facing:
        blocked = customer_facing_block(run, journey, playbook, account)
        if blocked:
            finish(step_run, StepStatus.SKIPPED, run.now, blocked)
            run.count("caps_hit")
            record(run, journey, version, AuditAction.STEP_SKIPPED, step.id, "governance", blocked)
            return after(playbook, step)
        if governance.in_quiet_hours(run.now, run.settings):
            resume_at = governance.quiet_hours_end(run.now, run.settings)
            reason = f"deferred: quiet hours until {resume_at:%Y-%m-%d %H:%M}Z"
            finish(step_run, StepStatus.SKIPPED, run.now, reason, deferred_until=resume_at.isoformat())
            record(run, journey, version, AuditAction.STEP_SKIPPED, step.id, "governance.quiet_hours", reason)
            journey.wait_until, journey.wait_signal = resume_at, None
            return Next(wait=True)
    context = context_for(run, journey, account)
    if step.oversight == Oversight.IN_THE_LOOP:
        return _ask_approval(run, journey, version, step, step_run, account, context)
    if step.oversight == Oversight.ON_THE_LOOP and spec.customer_facing:
        return _hold(run, journey, version, playbook, step, step_run, account, context)
    args = perform(run, journey, account, step.call, step_run, context, "run")
    finish(step_run, StepStatus.DONE, run.now, f"{step.call.action} ran", args=args)
    run.count("automated_steps")
    if step.oversight == Oversight.ON_THE_LOOP:
        assert step.override_window is not None
        step_run.override_until = deadline(run, step.override_window)
        _notify_owner_of_override(run, journey, account, step, step_run)
    record(run, journey, version, AuditAction.STEP_RAN, step.id, f"oversight.{step.oversight}",
           f"{step.call.action} ran" + (f"; override open until {step_run.override_until:%Y-%m-%d %H:%M}Z"
                                        if step_run.override_until else ""))
    return after(playbook, step)


def _hold(run: Run, journey: Journey, version: PlaybookVersion, playbook: Playbook, step: AutomatedStep,
          step_run: StepRun, account: Account, context: dict[str, Any]) -> Next:
    """An on_the_loop customer-facing action waits in the outbox until its override window ends.

    An email cannot be unsent, so instead of running it and compensating on override, the
    outbox holds it (`not_before` = the window's end, later if that falls in quiet hours)
    and an override cancels it before it leaves. The touch counts against the caps now,
    when the decision is made, and is given back if the owner overrides.
    """
    assert step.override_window is not None
    until = deadline(run, step.override_window)
    step_run.override_until = until
    release = governance.quiet_hours_end(until, run.settings)
    args = perform(run, journey, account, step.call, step_run, context, "run", not_before=release,
                   held={"check": held_sends.CHECK, "step_run_id": step_run.id})
    held = run.session.scalar(select(OutboxMessage.id).where(
        OutboxMessage.idempotency_key == f"step-run:{step_run.id}:run"))
    # "ACTION ran", as for every automated action decided (the time-saved ledger reads it); the
    # outcome and the audit trail say it is held until `release`.
    finish(step_run, StepStatus.DONE, run.now, f"{step.call.action} ran",
           args=args, held_outbox_id=held, release_at=release.isoformat())
    run.count("automated_steps")
    run.count("held_sends")
    _notify_owner_of_override(run, journey, account, step, step_run, held_until=release)
    record(run, journey, version, AuditAction.STEP_RAN, step.id, f"oversight.{step.oversight}",
           f"{step.call.action} held in the outbox until {release:%Y-%m-%d %H:%M}Z; "
           f"it is sent then unless overridden (outbox message {held})")
    return after(playbook, step)


def customer_facing_block(run: Run, journey: Journey, playbook: Playbook, account: Account) -> str | None:
    """Why a customer-facing automation must not run now, or None."""
    sensitive = sensitive_signal(run.session, account_id=account.id, types=playbook.sensitive_signals,
                                 now=run.now)
    if sensitive is not None:
        return protection_reason(sensitive)
    return governance.touch_block_reason(run.session, account_id=account.id, now=run.now,
                                         settings=run.settings, playbook_limit=playbook.touch_limit,
                                         playbook_id=playbook.id)


def _ask_approval(run: Run, journey: Journey, version: PlaybookVersion, step: AutomatedStep,
                  step_run: StepRun, account: Account, context: dict[str, Any]) -> Next:
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


def _run_person_step(run: Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
                     step: HumanStep | HybridStep, step_run: StepRun, account: Account) -> Next:
    """A human step's task, or a hybrid step's draft handed to a person to review."""
    context = context_for(run, journey, account)
    drafted = drafting.write_draft(requested=step.drafter, rendered=step.draft.render(context), context=context,
                                   settings=run.settings) if isinstance(step, HybridStep) else None
    draft = drafted.text if drafted is not None else None
    return _create_task(run, journey, version, step, step_run, account,
                        kind=TaskKind.ACTION if draft is None else TaskKind.REVIEW,
                        assignment=step.assign, title=step.task.title.render(context),
                        recommendation=step.task.recommend.render(context),
                        sections=step.task.brief, sla=step.sla,
                        draft=draft,
                        estimate=step.estimate_minutes, drafted_by=drafted.brief() if drafted else None)


def _create_task(run: Run, journey: Journey, version: PlaybookVersion, step: Step,
                 step_run: StepRun, account: Account, *, kind: TaskKind, assignment: Assignment,
                 title: str, recommendation: str, sections: tuple[str, ...], sla: Sla,
                 draft: str | None, estimate: int | None, proposal: dict[str, Any] | None = None,
                 drafted_by: dict[str, str] | None = None) -> Next:
    deal = run.session.get(Deal, journey.deal_id) if journey.deal_id else None
    assignee = resolve_assignee(run.session, assignment=assignment, account=account, deal=deal,
                                now=run.now)
    if assignee is None:
        reason = f"no available person for step {step.id} ({_describe(assignment)})"
        finish(step_run, StepStatus.FAILED, run.now, reason)
        return park(run, journey, version, Category.NO_ASSIGNEE, reason)
    signal = signal_of(run, journey)
    brief = build_brief(run.session, account=account, trigger=signal, recommendation=recommendation,
                        sections=sections, journey=journey, deal=deal,
                        assignee_how=assignee.how, now=run.now, options=BriefOptions.from_settings(run.settings),
                        proposal=proposal, drafted_by=drafted_by)
    task = create_task(run.session, settings=run.settings, account=account, owner=assignee.owner,
                       kind=kind, title=title[:255],
                       recommendation=recommendation, brief=brief, sla=sla, now=run.now,
                       journey=journey, step_run=step_run, signal=signal, draft=draft,
                       calendar_name=sla.calendar, deal=deal)
    step_run.status = StepStatus.WAITING
    step_run.outcome = {"task_id": task.id, "owner": assignee.owner.email, "assigned": assignee.how,
                        "estimate_minutes": estimate}
    if drafted_by is not None:
        step_run.outcome["drafter"] = drafted_by
    run.count("tasks_created")
    record(run, journey, version, AuditAction.STEP_WAITING, step.id, f"assign: {assignee.how}",
           f"{kind} task {task.id} for {assignee.owner.email}, due {task.due_at:%Y-%m-%d %H:%M}Z")
    return Next(wait=True)


def _run_wait(run: Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
              step: WaitStep, step_run: StepRun, account: Account) -> Next:
    if step.signal is None and step.until is not None:
        if step.until.evaluate(context_for(run, journey, account)):
            finish(step_run, StepStatus.DONE, run.now, "condition already true")
            return after(playbook, step)
    journey.wait_signal = step.signal
    journey.wait_until = deadline(run, step.timeout)
    step_run.status = StepStatus.WAITING
    record(run, journey, version, AuditAction.STEP_WAITING, step.id, f"wait:{step.id}",
           f"waiting for {step.signal or (step.until.source if step.until else 'a condition')} "
           f"until {journey.wait_until:%Y-%m-%d %H:%M}Z")
    return Next(wait=True)


def _run_branch(run: Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
                step: BranchStep, step_run: StepRun, account: Account) -> Next:
    context = context_for(run, journey, account)
    for index, rule in enumerate(step.rules):
        if rule.when.evaluate(context):
            finish(step_run, StepStatus.DONE, run.now, f"rule {index + 1} matched", rule=index)
            record(run, journey, version, AuditAction.STEP_RAN, step.id,
                   f"branch:{step.id}[{index}] {rule.when.source}", f"rule {index + 1} matched")
            return jump(playbook, rule.goto)
    if step.otherwise is not None:
        finish(step_run, StepStatus.DONE, run.now, "no rule matched; took otherwise")
        record(run, journey, version, AuditAction.STEP_RAN, step.id, f"branch:{step.id} otherwise",
               "no rule matched")
        return jump(playbook, step.otherwise)
    reason = f"branch {step.id}: no rule matched this account's data"
    finish(step_run, StepStatus.FAILED, run.now, reason)
    return park(run, journey, version, Category.UNMATCHED_BRANCH, reason)


def _run_goto(run: Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
              step: GotoStep, step_run: StepRun, account: Account) -> Next:
    finish(step_run, StepStatus.DONE, run.now, f"goto {step.to}")
    return Next(step_id=step.to)


def _run_exit(run: Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
              step: ExitStep, step_run: StepRun, account: Account) -> Next:
    finish(step_run, StepStatus.DONE, run.now, step.reason)
    return Next(end=JourneyStatus.COMPLETED, reason=f"exit step {step.id}: {step.reason}")


def _run_set_stage(run: Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
                   step: SetStageStep, step_run: StepRun, account: Account) -> Next:
    change_stage(run.session, account=account, to=step.stage, at=run.now, journey=journey,
                 playbook_version=version.version, rule=f"set_stage:{step.id}",
                 reason=f"{playbook.id} step {step.id}")
    finish(step_run, StepStatus.DONE, run.now, f"stage {step.stage}")
    return after(playbook, step)


def _run_route(run: Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
               step: RouteStep, step_run: StepRun, account: Account) -> Next:
    """A confident decision of a listed category goes its automated way; any other goes to a person."""
    context = context_for(run, journey, account)
    routed = routing.decide_route(step, context)
    detail = routed.audit_detail()
    record(run, journey, version, AuditAction.ROUTED, step.id, f"route:{step.id}", routed.why(), detail=detail)
    run.count(f"routed_{routed.path}")
    if routed.path == "automated":
        assert routed.proposal is not None
        finish(step_run, StepStatus.DONE, run.now, routed.why(), routing=detail)
        return jump(playbook, routed.proposal)
    # A listed category is a proposal the person confirms or overturns; a novel one is theirs to handle.
    next_ = _create_task(run, journey, version, step, step_run, account,
                        kind=TaskKind.APPROVAL if routed.proposal is not None else TaskKind.ACTION,
                        assignment=step.assign, title=step.task.title.render(context),
                        recommendation=step.task.recommend.render(context), sections=step.task.brief,
                        sla=step.sla, draft=None, estimate=step.estimate_minutes, proposal=routed.brief())
    step_run.outcome = {**step_run.outcome, "routing": detail}  # what the person's decision is measured against
    return next_


def _run_split(run: Run, journey: Journey, version: PlaybookVersion, playbook: Playbook,
               step: SplitStep, step_run: StepRun, account: Account) -> Next:
    """An experiment: the account's variant by its hash bucket, recorded on the journey."""
    key = experiments.account_key(domain=account.domain, account_id=account.id)
    assigned = experiments.assign_variant(step, playbook_id=playbook.id, key=key)
    detail = assigned.record()
    # A new dict, so the JSON column sees the change.
    journey.context = {**journey.context, "variants": {**journey.context.get("variants", {}),
                                                       step.experiment: assigned.variant.name}}
    finish(step_run, StepStatus.DONE, run.now, f"variant {assigned.variant.name}", variant=detail)
    record(run, journey, version, AuditAction.VARIANT_ASSIGNED, step.id, f"split:{step.experiment}",
           f"variant {assigned.variant.name} (bucket {assigned.bucket})", detail=detail)
    run.count(f"variant_{assigned.variant.name}")
    return jump(playbook, assigned.variant.goto)


_EXECUTORS: dict[type, Any] = {
    AutomatedStep: _run_automated, HumanStep: _run_person_step, HybridStep: _run_person_step,
    WaitStep: _run_wait, BranchStep: _run_branch, GotoStep: _run_goto, ExitStep: _run_exit,
    SetStageStep: _run_set_stage, RouteStep: _run_route, SplitStep: _run_split,
}


def time_out(run: Run, journey: Journey) -> None:
    """The journey's wait expired: take its on_timeout path (or re-run a step deferred by quiet hours)."""
    version, playbook = playbook_of(run, journey)
    assert journey.current_step_id is not None
    step = playbook.step(journey.current_step_id)
    journey.wait_until = journey.wait_signal = None
    if isinstance(step, WaitStep):
        step_run = waiting_run(run, journey)
        finish(step_run, StepStatus.TIMED_OUT, run.now, f"timed out after {step.timeout.text}")
        record(run, journey, version, AuditAction.STEP_TIMED_OUT, step.id, f"wait:{step.id} timeout",
               f"no {step.signal or 'matching condition'} within {step.timeout.text}")
        run.count("timeouts")
        advance(run, journey, version, playbook, jump(playbook, step.on_timeout))
    else:  # a deferred step (quiet hours): run it again now
        advance(run, journey, version, playbook, Next(step_id=step.id))


# --- the shared vocabulary ------------------------------------------------------------------

def after(playbook: Playbook, step: Step) -> Next:
    """Continue with the step after `step` in file order."""
    return Next(step_id=playbook.next_step_id(step.id))


def jump(playbook: Playbook, target: Jump) -> Next:
    """Go where a goto, branch rule, on_timeout or on_reject points: a step, or the end."""
    if target.exit:
        return Next(end=JourneyStatus.COMPLETED, reason="exit")
    return Next(step_id=target.goto)


# Built once: building a statement and its cache key costs more than running it on an index.
_OPEN_TASKS_OF_JOURNEY = select(Task).where(Task.journey_id == bindparam("journey_id"),
                                            Task.status.in_(OPEN_STATUSES))
_WAITING_RUNS_OF_JOURNEY = select(StepRun).where(StepRun.journey_id == bindparam("journey_id"),
                                                 StepRun.status == StepStatus.WAITING)


def _of_journey(run: Run, model: type[R], query: Select[tuple[R]], journey: Journey,
                keep: Callable[[R], bool]) -> list[R]:
    """The journey's rows that `keep` takes as this session has them, written or not, without a flush.

    `query` asks the database for the rows `keep` took as last written; each is judged again
    as the session has it, and the rows the batch made or changed but has not written yet are
    judged too. A flush here would write everything the batch had done so far, once per question.
    """
    session: Session = run.session
    found: list[R] = []
    if journey not in session.new:  # a journey made in this batch has nothing written yet
        found = [row for row in session.scalars(query, {"journey_id": journey.id}, execution_options=NO_AUTOFLUSH)
                 if keep(row)]
    seen = set(map(id, found))
    unwritten: list[Any] = [*session.dirty, *session.new]
    found += [row for row in unwritten if isinstance(row, model) and id(row) not in seen
              # Before the flush a new row may name its journey by the relationship alone.
              and (row.journey_id == journey.id if row.journey_id is not None else row.journey is journey)
              and keep(row)]
    return found


def end(run: Run, journey: Journey, version: PlaybookVersion, status: JourneyStatus, reason: str,
        rule: str = "") -> None:
    """End the journey; its open tasks are cancelled (in the CRM too, through the outbox)."""
    journey.status = status
    journey.ended_at = run.now
    journey.end_reason = reason
    journey.wait_signal = journey.wait_until = None
    # Free the once_per slot so a later trigger can enroll the account again.
    journey.enrollment_key = f"{journey.enrollment_key}#{journey.id}"
    for task in _of_journey(run, Task, _OPEN_TASKS_OF_JOURNEY, journey, lambda task: task.status in OPEN_STATUSES):
        complete_task(run.session, task=task, actor="system", outcome="cancelled", now=run.now)
    for step_run in _of_journey(run, StepRun, _WAITING_RUNS_OF_JOURNEY, journey,
                                lambda step_run: step_run.status == StepStatus.WAITING):
        finish(step_run, StepStatus.SKIPPED, run.now, f"the journey ended first: {reason}")
    run.count(f"journeys_{status}")
    record(run, journey, version,
           AuditAction.EXITED if status == JourneyStatus.EXITED else AuditAction.COMPLETED,
           journey.current_step_id, rule or "flow", reason)


def park(run: Run, journey: Journey, version: PlaybookVersion, category: Category, reason: str) -> Next:
    """Stop a journey where it is and hand it to the exception queue's owner."""
    journey.status = JourneyStatus.STALLED
    journey.wait_signal = journey.wait_until = None
    flag(run, category, f"{journey.playbook_id}: {reason}", account_id=journey.account_id,
         journey_id=journey.id, playbook_id=journey.playbook_id, playbook_version=version.version,
         step_id=journey.current_step_id)
    return Next(park=True)


def flag(run: Run, category: Category, message: str, **refs: Any) -> None:
    """Raise an exception item for the category's owner."""
    # Written with the batch's next flush (nothing here reads its id): not a flush of its own.
    exception_queue.raise_item(run.session, settings=run.settings, category=category,
                               message=message, at=run.now, unflushed=True, **refs)
    run.count(f"exceptions_{category}")


def finish(step_run: StepRun, status: StepStatus, at: datetime, reason: str, **outcome: Any) -> None:
    """Close a step run with its status, reason and outcome details."""
    step_run.status = status
    step_run.finished_at = at
    step_run.reason = reason
    if outcome:
        step_run.outcome = {**step_run.outcome, **outcome}


def waiting_run(run: Run, journey: Journey) -> StepRun:
    """The step run the journey is waiting on (a wait, a task, an approval): the newest waiting at its step."""
    step_id = journey.current_step_id
    waiting = _of_journey(run, StepRun, _WAITING_RUNS_OF_JOURNEY, journey,
                          lambda step_run: step_run.status == StepStatus.WAITING and step_run.step_id == step_id)
    assert waiting, f"journey {journey.id} waits with no waiting step run"
    # Ids are given when a run is made (models/ids.py); one made elsewhere gets its id at the flush, and is newer.
    return max(waiting, key=lambda step_run: (step_run.id is None, step_run.id or 0))


def signal_of(run: Run, journey: Journey) -> Signal | None:
    """The signal steps read as `signal`: the one that last moved the journey, else its trigger."""
    signal_id = journey.context.get("signal_id") or journey.trigger_signal_id
    return run.session.get(Signal, signal_id) if signal_id else None


def context_for(run: Run, journey: Journey, account: Account,
                signal: Signal | None = None) -> dict[str, Any]:
    """What the journey's expressions and templates see right now."""
    deal = run.session.get(Deal, journey.deal_id) if journey.deal_id else None
    return build_context(run.session, account=account, now=run.now,
                         signal=signal or signal_of(run, journey), deal=deal, journey=journey,
                         owner=account.owner)


def deadline(run: Run, duration: Duration) -> datetime:
    """Now plus `duration`, business time on the default calendar."""
    return deadline_from(run, run.now, duration)


def deadline_from(run: Run, start: datetime, duration: Duration) -> datetime:
    """`start` plus `duration`, business time on the default calendar."""
    return run.settings.calendar().add(start, duration)


def _render_args(call: ActionCall, context: dict[str, Any]) -> dict[str, Any]:
    return {key: value.render(context) if isinstance(value, Template) else value
            for key, value in call.args.items()}


def perform_governed(run: Run, journey: Journey, playbook: Playbook, account: Account, call: ActionCall,
                     step_run: StepRun, context: dict[str, Any], purpose: str) -> tuple[dict[str, Any], str | None]:
    """Perform an action a person approved, under the rules in force now: (arguments, why not sent).

    An approval can come hours after it was asked for; a sensitive signal or a cap that
    arrived meanwhile still stops a customer-facing action, and quiet hours delay its
    delivery (the outbox holds it) rather than the decision.
    """
    args = _render_args(call, context)
    if get_action(call.action).customer_facing:
        blocked = customer_facing_block(run, journey, playbook, account)
        if blocked:
            return args, blocked
        if governance.in_quiet_hours(run.now, run.settings):
            return perform(run, journey, account, call, step_run, context, purpose,
                           not_before=governance.quiet_hours_end(run.now, run.settings)), None
    return perform(run, journey, account, call, step_run, context, purpose), None


def perform(run: Run, journey: Journey, account: Account, call: ActionCall, step_run: StepRun,
            context: dict[str, Any], purpose: str, not_before: datetime | None = None,
            held: dict[str, Any] | None = None) -> dict[str, Any]:
    """Carry out an action: an outbox row for outside systems, a stage change for the journey.

    `held` marks the row for a release check before it leaves (`outbox.HELD`).
    """
    spec = get_action(call.action)
    args = _render_args(call, context)
    if spec.customer_facing:
        args = resolve_contact_role(run.session, account=account, args=args)
    if spec.target == "journey":
        version, _ = playbook_of(run, journey)
        change_stage(run.session, account=account, to=str(args["stage"]), at=run.now, journey=journey,
                     playbook_version=version.version, rule=f"{call.action}:{step_run.step_id}",
                     reason=f"{journey.playbook_id} step {step_run.step_id}")
    else:
        # Inside the engine's pass the message is written with the pass's others (`outbox.deferred`);
        # a held one is written now, as its step run names the row.
        enqueue = outbox.enqueue if held else outbox.enqueue_deferred
        enqueue(run.session, kind=call.action, target=spec.target, at=run.now,
                idempotency_key=f"step-run:{step_run.id}:{purpose}", account_id=account.id,
                not_before=not_before,
                payload={"account_id": account.id, "journey_id": journey.id,
                         "step_id": step_run.step_id, "args": args,
                         **({outbox.HELD: held} if held else {})})
    if spec.customer_facing and purpose != "compensate":
        governance.record_touch(run.session, account_id=account.id, journey_id=journey.id,
                                step_id=step_run.step_id, action=call.action, at=run.now)
    return args


def _notify_owner_of_override(run: Run, journey: Journey, account: Account, step: AutomatedStep,
                              step_run: StepRun, held_until: datetime | None = None) -> None:
    owner = account.owner
    if owner is None or step_run.override_until is None:
        return
    if held_until is None:
        subject = f"Handoff ran {step.id} for {account.name}"
        body = (f"{step.call.action} ran at {run.now:%Y-%m-%d %H:%M}Z. You can override it "
                f"until {step_run.override_until:%Y-%m-%d %H:%M}Z (step run {step_run.id}).")
    else:
        subject = f"Handoff will send {step.id} to {account.name}"
        body = (f"{step.call.action} is held and goes out at {held_until:%Y-%m-%d %H:%M}Z. Override it "
                f"before {step_run.override_until:%Y-%m-%d %H:%M}Z and it is never sent "
                f"(step run {step_run.id}).")
    outbox.enqueue(
        run.session, kind="notify.email", target="email", at=run.now, account_id=account.id,
        idempotency_key=f"step-run:{step_run.id}:override-notice",
        payload={"to": owner.email, "subject": subject, "body": body, "step_run_id": step_run.id})


def record(run: Run, journey: Journey, version: PlaybookVersion, action: AuditAction, step_id: str | None,
           rule: str, reason: str, actor: str = "system", detail: dict[str, Any] | None = None) -> None:
    """Add a journey decision to the audit trail, naming the playbook version."""
    fields: dict[str, Any] = dict(at=run.now, action=action, rule=rule, reason=reason, actor=actor,
                                  account_id=journey.account_id, playbook_id=journey.playbook_id,
                                  playbook_version=version.version, step_id=step_id, detail=detail)
    audit.record(run.session, **fields, journey_id=journey.id)


def _describe(assignment: Assignment) -> str:
    parts = [f"to {assignment.to}" if assignment.to else "", f"role {assignment.role}" if assignment.role else ""]
    text = ", ".join(p for p in parts if p)
    return text + (f"; fallback {_describe(assignment.fallback)}" if assignment.fallback else "")
