"""People act on journeys: close tasks (done, approved, rejected, published), override an
on_the_loop step, retry or end a parked journey. Each moves the journey on through `steps`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator import exception_queue
from orchestrator.audit import AuditAction
from orchestrator.config import Settings
from orchestrator.delivery import outbox
from orchestrator.errors import Conflict, Invalid, NotFound
from orchestrator.journeys import governance, migration
from orchestrator.journeys.steps import (
    DATA_ERRORS,
    Next,
    Run,
    advance,
    after,
    context_for,
    deadline_from,
    end,
    finish,
    fresh,
    jump,
    lock_accounts,
    park_failed_step,
    perform,
    perform_governed,
    playbook_of,
    record,
    time_out,
)
from orchestrator.models import (
    OPEN_STATUSES,
    OUTCOMES_BY_KIND,
    Account,
    Journey,
    JourneyStatus,
    PlaybookVersion,
    StepRun,
    StepStatus,
    Task,
    TaskKind,
)
from orchestrator.playbook.model import (
    AutomatedStep,
    HybridStep,
    Playbook,
    RouteStep,
    Step,
    WaitStep,
)
from orchestrator.work.tasks import complete_task

OUTCOMES = OUTCOMES_BY_KIND  # the one table lives with the Task model
MAX_PUBLISHED_TEXT = 100_000  # characters; a review's edited draft, not a document store


def decide_task(*, session: Session, settings: Settings, task_id: int, outcome: str, actor: str,
                now: datetime, text: str | None = None) -> Task:
    """Close a task as a person did (done, approved, rejected, published) and move its journey on.

    `text` publishes a review with the reviewer's edit of the draft instead of the draft itself;
    the audit trail keeps both.
    """
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"no task {task_id}")
    lock_accounts(session, [task.account_id])
    task = fresh(session, Task, task_id)
    assert task is not None
    if task.status not in OPEN_STATUSES:
        raise Conflict(f"task {task_id} is already {task.status}")
    run = Run(session, settings, now)
    decide(run, task, outcome, actor, text=text)
    return task


def decide(run: Run, task: Task, outcome: str, actor: str, sync_crm: bool = True, text: str | None = None) -> None:
    allowed = OUTCOMES[TaskKind(task.kind)]
    if outcome not in allowed:
        raise Invalid(f"a {task.kind} task takes {' or '.join(allowed)}, not {outcome!r}", field="outcome")
    if text is not None:
        _check_published_text(task, outcome, text)
    complete_task(run.session, task=task, actor=actor, outcome=outcome, now=run.now, sync_crm=sync_crm)
    # The caller holds the account's lock: what we read now is what no other worker can change.
    journey = fresh(run.session, Journey, task.journey_id) if task.journey_id else None
    step_run = fresh(run.session, StepRun, task.step_run_id) if task.step_run_id else None
    if journey is None or step_run is None or journey.status != JourneyStatus.WAITING \
            or journey.current_step_id != step_run.step_id:
        return  # the journey moved on (exited, say); the task outcome is still recorded
    version, playbook = playbook_of(run, journey)
    step = playbook.step(step_run.step_id)
    account = run.session.get(Account, journey.account_id)
    assert account is not None
    try:
        next_ = _carry_out(run, task, outcome, actor, journey, version, playbook, step, step_run, account, text)
    except DATA_ERRORS as exc:
        next_ = park_failed_step(run, journey, version, step_run, exc)
    advance(run, journey, version, playbook, next_)


def _check_published_text(task: Task, outcome: str, text: str) -> None:
    if task.kind != TaskKind.REVIEW or outcome != "published":
        raise Invalid("only a review published by a person takes an edited text", field="text")
    if not text.strip():
        raise Invalid("the published text is empty; send the edited draft, or leave text out to publish the draft",
                      field="text")
    if len(text) > MAX_PUBLISHED_TEXT:
        raise Invalid(f"the published text is at most {MAX_PUBLISHED_TEXT:,} characters, not {len(text):,}",
                      field="text")
    if "\x00" in text:
        raise Invalid("the published text contains a NUL character", field="text")


def _carry_out(run: Run, task: Task, outcome: str, actor: str, journey: Journey, version: PlaybookVersion,
               playbook: Playbook, step: Step, step_run: StepRun, account: Account, text: str | None) -> Next:
    """Do what the person decided; where the journey goes next."""
    if isinstance(step, RouteStep):
        return _carry_out_route(run, task, outcome, actor, journey, version, playbook, step, step_run)
    next_ = after(playbook, step)
    if outcome == "rejected":
        finish(step_run, StepStatus.REJECTED, run.now, f"rejected by {actor}")
        record(run, journey, version, AuditAction.REJECTED, step.id, f"oversight.{step_run.oversight}",
               f"task {task.id} rejected by {actor}", actor=actor)
        if isinstance(step, AutomatedStep) and step.on_reject is not None:
            next_ = jump(playbook, step.on_reject)
    elif isinstance(step, AutomatedStep):  # approved
        record(run, journey, version, AuditAction.APPROVED, step.id, "oversight.in_the_loop",
               f"{actor} approved {step.call.action}", actor=actor)
        args, blocked = perform_governed(run, journey, playbook, account, step.call, step_run,
                                         context_for(run, journey, account), "run")
        if _close_approved(run, journey, version, step.id, step_run, actor, step.call.action, args, blocked,
                           task_id=task.id):
            run.count("automated_steps")
    elif isinstance(step, HybridStep):
        # What goes out is the reviewer's text when they edited it; the trail keeps the draft beside it,
        # so the noise report can count how often drafts needed editing.
        draft = task.draft or ""
        published = draft if text is None else text
        edited = published != draft
        record(run, journey, version, AuditAction.PUBLISHED, step.id, "hybrid.review",
               f"{actor} {'edited' if edited else 'reviewed'} the draft and published it", actor=actor,
               detail={"task_id": task.id, "edited": edited, "draft": draft, "published": published})
        args, blocked = {}, None
        if step.publish is not None:
            context = {**context_for(run, journey, account), "draft": published}
            args, blocked = perform_governed(run, journey, playbook, account, step.publish, step_run, context,
                                             "publish")
        _close_approved(run, journey, version, step.id, step_run, actor,
                        step.publish.action if step.publish else "publish", args, blocked, task_id=task.id)
    else:
        finish(step_run, StepStatus.DONE, run.now, f"done by {actor}", task_id=task.id)
        record(run, journey, version, AuditAction.STEP_RAN, step.id, "human",
               f"{actor} finished task {task.id}; the journey moves on", actor=actor)
    return next_


def _carry_out_route(run: Run, task: Task, outcome: str, actor: str, journey: Journey, version: PlaybookVersion,
                     playbook: Playbook, step: RouteStep, step_run: StepRun) -> Next:
    """A person confirmed the routed proposal (its automated path), overturned it, or handled a novel input."""
    routed = dict(step_run.outcome.get("routing") or {})
    human = jump(playbook, step.on_human) if step.on_human else after(playbook, step)
    proposal = step.path_for(routed.get("category"))
    detail = {**routed, "decided_by": actor, "outcome": outcome}
    if outcome == "approved" and proposal is not None:
        finish(step_run, StepStatus.DONE, run.now, f"{actor} confirmed {routed.get('category')}", task_id=task.id)
        record(run, journey, version, AuditAction.ROUTE_CONFIRMED, step.id, f"route:{step.id}",
               f"{actor} confirmed the proposal ({routed.get('category')}); it takes the automated path",
               actor=actor, detail=detail)
        return jump(playbook, proposal)
    if outcome == "rejected":
        finish(step_run, StepStatus.REJECTED, run.now, f"{actor} overturned {routed.get('category')}",
               task_id=task.id)
        record(run, journey, version, AuditAction.ROUTE_OVERTURNED, step.id, f"route:{step.id}",
               f"{actor} overturned the proposal ({routed.get('category')}, score {routed.get('score')})",
               actor=actor, detail=detail)
        return human
    finish(step_run, StepStatus.DONE, run.now, f"handled by {actor}", task_id=task.id)
    record(run, journey, version, AuditAction.STEP_RAN, step.id, f"route:{step.id}",
           f"{actor} handled the {routed.get('reason', 'routed')} input (task {task.id})", actor=actor,
           detail=detail)
    return human


def _close_approved(run: Run, journey: Journey, version: PlaybookVersion, step_id: str, step_run: StepRun,
                    actor: str, action: str, args: dict[str, Any], blocked: str | None, *, task_id: int) -> bool:
    """Close the step run of an approved action; False when governance kept it from being sent."""
    if blocked:
        finish(step_run, StepStatus.SKIPPED, run.now, f"approved by {actor}, but not sent: {blocked}",
               args=args, task_id=task_id)
        run.count("caps_hit")
        record(run, journey, version, AuditAction.STEP_SKIPPED, step_id, "governance",
               f"{action} not sent: {blocked}")
        return False
    finish(step_run, StepStatus.DONE, run.now, f"approved by {actor}; {action} ran", args=args, task_id=task_id)
    return True


def override_step(*, session: Session, settings: Settings, step_run_id: int, actor: str,
                  now: datetime, reason: str = "") -> StepRun:
    """Undo an on_the_loop step inside its override window by running its compensation."""
    step_run = session.get(StepRun, step_run_id)
    if step_run is None:
        raise NotFound(f"no step run {step_run_id}")
    lock_accounts(session, [step_run.journey.account_id])
    step_run = fresh(session, StepRun, step_run_id)
    assert step_run is not None
    if step_run.override_until is None or now > step_run.override_until:
        raise Conflict(f"step run {step_run_id} has no open override window")
    run = Run(session, settings, now)
    journey = step_run.journey
    version, playbook = playbook_of(run, journey)
    step = playbook.step(step_run.step_id)
    assert isinstance(step, AutomatedStep)
    account = session.get(Account, journey.account_id)
    assert account is not None
    held = step_run.outcome.get("held_outbox_id")
    if held is not None:
        # Held in the outbox (customer-facing): cancel it before it leaves; nothing to undo.
        outbox.cancel(session, message_id=int(held), actor=actor, at=now)
        governance.give_back_touch(session, journey_id=journey.id, step_id=step_run.step_id,
                                   action=step.call.action, at=step_run.started_at)
        what = f"{actor} overrode {step.call.action}; the held message (outbox {held}) was cancelled unsent"
    else:
        assert step.compensate is not None
        perform(run, journey, account, step.compensate, step_run, context_for(run, journey, account),
                "compensate")
        what = f"{actor} overrode {step.call.action}; ran {step.compensate.action}"
    step_run.status = StepStatus.OVERRIDDEN
    step_run.override_until = None
    step_run.outcome = {**step_run.outcome, "overridden_by": actor, "overridden_at": now.isoformat(),
                        "override_reason": reason}
    record(run, journey, version, AuditAction.OVERRIDDEN, step.id, "oversight.on_the_loop",
           what + (f": {reason}" if reason else ""), actor=actor)
    return step_run


def retry_journey(*, session: Session, settings: Settings, journey_id: int, actor: str,
                  now: datetime, note: str = "", latest: bool = False) -> Journey:
    """Run a parked journey's current step again, once a person has fixed what stopped it.

    With `latest`, the journey first moves to its playbook's active version (the fix), as
    `journeys migrate` would; a journey whose step is not in that version is refused.
    """
    journey = _parked(session, journey_id)
    run = Run(session, settings, now)
    if latest:
        target = migration.target_version(session, playbook_id=journey.playbook_id, version=None)
        moved = migration.migrate_journey(session=session, journey=journey, target=target, actor=actor, now=now)
        if not moved.moved:
            raise Conflict(f"journey {journey_id} cannot move to version {target.version}: {moved.reason}")
    version, playbook = playbook_of(run, journey)
    _resolve_exceptions(run, journey, actor, note or "retried")
    record(run, journey, version, AuditAction.RETRIED, journey.current_step_id, "operator",
           note or f"{actor} retried step {journey.current_step_id}", actor=actor)
    assert journey.current_step_id is not None
    step = playbook.step(journey.current_step_id)
    waited = _waiting_runs(run, journey)
    if isinstance(step, WaitStep) and waited and now >= deadline_from(run, waited[-1].started_at, step.timeout):
        # Parked while its wait ran out (the timeout itself failed): take the timeout path now.
        time_out(run, journey)
        return journey
    for step_run in waited:
        finish(step_run, StepStatus.SKIPPED, now, f"retried by {actor}")
    advance(run, journey, version, playbook, Next(step_id=journey.current_step_id))
    return journey


def _waiting_runs(run: Run, journey: Journey) -> list[StepRun]:
    return list(run.session.scalars(select(StepRun).where(StepRun.journey_id == journey.id,
                                                          StepRun.status == StepStatus.WAITING)
                                    .order_by(StepRun.id)))


def end_journey(*, session: Session, settings: Settings, journey_id: int, actor: str,
                now: datetime, reason: str) -> Journey:
    """End an open or parked journey by hand; its open tasks are cancelled."""
    journey = _locked_journey(session, journey_id)
    if journey.ended_at is not None:
        raise Conflict(f"journey {journey_id} already ended ({journey.status})")
    run = Run(session, settings, now)
    version, _ = playbook_of(run, journey)
    _resolve_exceptions(run, journey, actor, f"journey ended: {reason}")
    end(run, journey, version, JourneyStatus.EXITED, f"ended by {actor}: {reason}", rule="operator")
    return journey


def _locked_journey(session: Session, journey_id: int) -> Journey:
    journey = session.get(Journey, journey_id)
    if journey is None:
        raise NotFound(f"no journey {journey_id}")
    lock_accounts(session, [journey.account_id])
    locked = fresh(session, Journey, journey_id)
    assert locked is not None
    return locked


def _parked(session: Session, journey_id: int) -> Journey:
    journey = _locked_journey(session, journey_id)
    if journey.status != JourneyStatus.STALLED or journey.current_step_id is None:
        raise Conflict(f"journey {journey_id} is {journey.status}, not parked in the exception queue")
    return journey


def _resolve_exceptions(run: Run, journey: Journey, actor: str, note: str) -> None:
    for item in exception_queue.list_items(run.session, journey_id=journey.id):
        exception_queue.resolve_item(run.session, item_id=item.id, by=actor, at=run.now, note=note)
