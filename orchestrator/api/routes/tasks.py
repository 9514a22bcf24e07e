"""/tasks: people's work with its brief; acknowledge and decide, only by those entitled to."""

from __future__ import annotations

import hashlib
from typing import Any

from flask import request
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.api.access import (
    READERS,
    acting_owner,
    actor_name,
    principal,
    roles,
    task_for,
    visible_tasks,
)
from orchestrator.api.app import page_of, runtime
from orchestrator.apikeys import Principal, Role
from orchestrator.db import unit_of_work
from orchestrator.errors import Conflict, HandoffError
from orchestrator.journeys.decisions import MAX_PUBLISHED_TEXT, decide_task
from orchestrator.models import OPEN_STATUSES, Account, Journey, SlaState, Task, TaskStatus
from orchestrator.work.briefs import SCREEN_LIMIT, BriefOptions, live_brief
from orchestrator.work.entitlements import check_decider, check_reassigner, known_actor
from orchestrator.work.feedback import MAX_NOTE, give_feedback
from orchestrator.work.sla import pause_task, resume_task, state_condition
from orchestrator.work.tasks import acknowledge_task, reassign_task

blp = Blueprint("tasks", __name__, url_prefix="/tasks", description="People's tasks and their decision briefs.")


class PreconditionFailed(HandoffError):
    status = 412
    problem = "/problems/precondition-failed"


class TaskOut(Schema):
    id = fields.Integer()
    account_id = fields.Integer()
    journey_id = fields.Integer(allow_none=True)
    owner_id = fields.Integer()
    kind = fields.String()
    title = fields.String()
    recommendation = fields.String()
    status = fields.String()
    priority = fields.String()
    outcome = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    ack_by = fields.AwareDateTime(allow_none=True)
    due_at = fields.AwareDateTime()
    acknowledged_at = fields.AwareDateTime(allow_none=True)
    completed_at = fields.AwareDateTime(allow_none=True)
    completed_by = fields.String(allow_none=True)
    draft = fields.String(allow_none=True)
    sla_state = fields.String()
    paused_at = fields.AwareDateTime(allow_none=True)


class TaskDetail(TaskOut):
    brief = fields.Dict()
    brief_text = fields.String(metadata={"description": "the brief as created: the CRM task's description"})
    brief_live = fields.String(metadata={"description": "the brief rendered from current data: the journey's "
                                                        "state now, signals since the task was created marked [new]"})


class TaskPage(Schema):
    items = fields.List(fields.Nested(TaskOut), required=True)
    next = fields.String(allow_none=True, metadata={"description": "cursor of the next page (pass as `after`)"})


class TaskQuery(Schema):
    owner_id = fields.Integer(validate=validate.Range(min=1, max=2**31 - 1))
    status = fields.String(validate=validate.OneOf([s.value for s in TaskStatus] + ["open_any"]))
    due_before = fields.AwareDateTime()
    playbook = fields.String(validate=validate.Length(max=100))
    sla_state = fields.String(validate=validate.OneOf([s.value for s in SlaState]),
                              metadata={"description": "on_track, at_risk, breached or paused, as of now"})
    after = fields.Integer(validate=validate.Range(min=0, max=2**31 - 1), metadata={"description": "cursor"})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class WaitReason(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500),
                           metadata={"description": "why the task waits (audited), e.g. waiting on the customer"})


class Reassignment(Schema):
    owner_email = fields.Email(required=True, validate=validate.Length(max=320),
                               metadata={"description": "the active owner who takes the task"})
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class Decision(Schema):
    outcome = fields.String(required=True, validate=validate.OneOf(["done", "approved", "rejected", "published"]))
    text = fields.String(validate=validate.Length(min=1, max=MAX_PUBLISHED_TEXT), metadata={
        "description": "publish a review with this text (the reviewer's edit of the draft); the audit trail "
                       "keeps the draft and the published text, with `edited: true` when they differ"})


class Feedback(Schema):
    useful = fields.Boolean(required=True, metadata={"description": "was this task worth your time?"})
    note = fields.String(load_default="", validate=validate.Length(max=MAX_NOTE),
                         metadata={"description": "why (the playbook's writer reads it)"})


class FeedbackOut(Schema):
    task_id = fields.Integer()
    by = fields.String()
    useful = fields.Boolean()
    note = fields.String()
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


def etag(task: Task) -> str:
    """Changes whenever the task's state does, so If-Match catches a decision made meanwhile."""
    state = (f"{task.id}:{task.status}:{task.outcome}:{task.owner_id}:{task.acknowledged_at}:{task.priority}:"
             f"{task.paused_at}:{task.due_at}")
    return '"' + hashlib.sha256(state.encode()).hexdigest()[:20] + '"'


def _check_precondition(task: Task) -> None:
    expected = request.headers.get("If-Match")
    if expected and expected.strip() not in (etag(task), "*"):
        raise PreconditionFailed(f"task {task.id} changed since you read it; read it again")


@blp.route("", methods=["GET"])
@blp.arguments(TaskQuery, location="query")
@blp.response(200, TaskPage)
@roles(*READERS)
def list_tasks(query: dict[str, Any]) -> Any:
    """Tasks the caller may see, oldest id first; filter by owner, status, due date, SLA state, playbook."""
    who = principal()
    statement = visible_tasks(select(Task), who).order_by(Task.id).limit(query["limit"] + 1)
    if "after" in query:
        statement = statement.where(Task.id > query["after"])
    if "owner_id" in query:
        statement = statement.where(Task.owner_id == query["owner_id"])
    if query.get("status") == "open_any":
        statement = statement.where(Task.status.in_([str(s) for s in OPEN_STATUSES]))
    elif "status" in query:
        statement = statement.where(Task.status == query["status"])
    if "due_before" in query:
        statement = statement.where(Task.due_at < query["due_before"])
    if "sla_state" in query:
        statement = statement.where(state_condition(SlaState(query["sla_state"]), now=runtime().clock.now()))
    if "playbook" in query:
        statement = statement.join(Journey, Journey.id == Task.journey_id).where(
            Journey.playbook_id == query["playbook"])
    with unit_of_work(runtime().sessions, read_only=True) as session:
        items = list(session.scalars(statement))
        return page_of(items, limit=query["limit"], key=lambda task: task.id)


@blp.route("/<id:task_id>", methods=["GET"])
@blp.response(200, TaskDetail)
@roles(*READERS)
def get_task(task_id: int) -> Any:
    """One task with its decision brief; the ETag goes back in If-Match on a decision."""
    rt = runtime()
    with unit_of_work(rt.sessions, read_only=True) as session:
        task = task_for(session, task_id, principal())
        detail = {name: getattr(task, name) for name in TaskDetail._declared_fields if name != "brief_live"}
        detail["brief_live"] = live_brief(session, task=task, now=rt.clock.now(), limit=SCREEN_LIMIT,
                                          options=BriefOptions.from_settings(rt.settings)).text
        return detail, 200, {"ETag": etag(task)}


def _locked_task_for(session: Session, task_id: int, who: Principal, *, reassigning: bool = False) -> tuple[Task, str]:
    """The task the caller acts on, locked and as the database has it now, and how the audit trail names them.

    Not found unless the caller may see it; the account's row lock (as decisions take it) serialises
    two people acting on one task at once, and If-Match is checked against the state read under that
    lock, so the second of two requests sent with the same ETag gets 412 rather than also winning.
    Then the entitlement: who may decide (or, `reassigning`, who may give the task away).
    """
    task = task_for(session, task_id, who)
    session.execute(select(Account.id).where(Account.id == task.account_id).with_for_update())
    task = session.get_one(Task, task_id, populate_existing=True)
    _check_precondition(task)
    me = acting_owner(session, who)
    admin = who.role == Role.ADMIN
    if reassigning:
        check_reassigner(session, task=task, actor=me, admin=admin)
    elif me is not None:  # an admin key bound to nobody acts as itself, by name
        check_decider(session, task=task, actor=me, admin=admin)
    return task, me.email if me is not None else f"apikey:{who.name}"


@blp.route("/<id:task_id>/ack", methods=["POST"])
@blp.response(200, TaskOut)
@roles(Role.ADMIN, Role.REP)
def ack_task(task_id: int) -> Any:
    """Acknowledge a task (stops its acknowledgement clock)."""
    rt = runtime()
    with unit_of_work(rt.sessions) as session:
        task, actor = _locked_task_for(session, task_id, principal())
        task = acknowledge_task(session, task=task, actor=actor, now=rt.clock.now())
        return task, 200, {"ETag": etag(task)}


@blp.route("/<id:task_id>/decision", methods=["POST"])
@blp.arguments(Decision)
@blp.response(200, TaskOut)
@roles(Role.ADMIN, Role.REP)
def decide(decision: dict[str, Any], task_id: int) -> Any:
    """Close a task with an outcome; the journey moves on. A second decision gets 409."""
    rt = runtime()
    with unit_of_work(rt.sessions) as session:
        task, actor = _locked_task_for(session, task_id, principal())
        task = decide_task(session=session, settings=rt.settings, task_id=task.id, outcome=decision["outcome"],
                           actor=actor, now=rt.clock.now(), text=decision.get("text"))
        return task, 200, {"ETag": etag(task)}


@blp.route("/<id:task_id>/wait", methods=["POST"])
@blp.arguments(WaitReason)
@blp.response(200, TaskOut)
@roles(Role.ADMIN, Role.REP)
def wait(body: dict[str, Any], task_id: int) -> Any:
    """Stop the task's SLA clock while it waits (on the customer), with a reason; 409 if already waiting."""
    rt = runtime()
    with unit_of_work(rt.sessions) as session:
        task, actor = _locked_task_for(session, task_id, principal())
        if not pause_task(session, settings=rt.settings, task=task, actor=actor, now=rt.clock.now(),
                          reason=body["reason"]):
            raise Conflict(f"task {task.id} is already waiting (since {task.paused_at:%Y-%m-%d %H:%M} UTC)")
        return task, 200, {"ETag": etag(task)}


@blp.route("/<id:task_id>/resume", methods=["POST"])
@blp.response(200, TaskOut)
@roles(Role.ADMIN, Role.REP)
def resume(task_id: int) -> Any:
    """Restart the SLA clock with the business time that was left; the deadlines move; 409 if not waiting."""
    rt = runtime()
    with unit_of_work(rt.sessions) as session:
        task, actor = _locked_task_for(session, task_id, principal())
        if not resume_task(session, settings=rt.settings, task=task, actor=actor, now=rt.clock.now()):
            raise Conflict(f"task {task.id} is not waiting")
        return task, 200, {"ETag": etag(task)}


@blp.route("/<id:task_id>/reassign", methods=["POST"])
@blp.arguments(Reassignment)
@blp.response(200, TaskOut)
@roles(Role.ADMIN, Role.REP)
def reassign(body: dict[str, Any], task_id: int) -> Any:
    """Give an open task to another active owner (admin, or up the assignee's manager chain); audited."""
    rt = runtime()
    with unit_of_work(rt.sessions) as session:
        task, actor = _locked_task_for(session, task_id, principal(), reassigning=True)
        to = known_actor(session, email=body["owner_email"])
        task = reassign_task(session, settings=rt.settings, task=task, to=to, reason=body["reason"],
                             actor=actor, now=rt.clock.now())
        return task, 200, {"ETag": etag(task)}


@blp.route("/<id:task_id>/feedback", methods=["POST"])
@blp.arguments(Feedback)
@blp.response(200, FeedbackOut)
@roles(Role.ADMIN, Role.REP)
def feedback(body: dict[str, Any], task_id: int) -> Any:
    """Say whether the task was useful, with a note; one verdict per person, a second one replaces it."""
    rt = runtime()
    who = principal()
    with unit_of_work(rt.sessions) as session:
        task = task_for(session, task_id, who)
        return give_feedback(session, task=task, actor=acting_owner(session, who), by=actor_name(session, who),
                             useful=body["useful"], note=body["note"], now=rt.clock.now(),
                             admin=who.role == Role.ADMIN)
