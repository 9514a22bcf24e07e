"""/journeys: where accounts stand in their playbooks; retry a parked one, end one, override an on-the-loop step."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from orchestrator.api.access import READERS, acting_owner, actor_name, principal, roles, visible_accounts
from orchestrator.api.app import page_of, runtime
from orchestrator.apikeys import Principal, Role
from orchestrator.db import unit_of_work
from orchestrator.errors import NotFound
from orchestrator.journeys.decisions import end_journey, override_step, retry_journey
from orchestrator.models import Account, Journey, StepRun
from orchestrator.work.entitlements import check_overrider

blp = Blueprint("journeys", __name__, url_prefix="/journeys", description="Accounts' journeys through playbooks.")


class JourneyOut(Schema):
    id = fields.Integer()
    account_id = fields.Integer()
    playbook_id = fields.String()
    status = fields.String()
    current_step_id = fields.String(allow_none=True)
    enrolled_at = fields.AwareDateTime()
    ended_at = fields.AwareDateTime(allow_none=True)
    wait_until = fields.AwareDateTime(allow_none=True)


class JourneyPage(Schema):
    items = fields.List(fields.Nested(JourneyOut), required=True)
    next = fields.String(allow_none=True)


class JourneyQuery(Schema):
    account_id = fields.Integer(validate=validate.Range(min=1, max=2**31 - 1))
    status = fields.String(validate=validate.Length(max=20))
    playbook = fields.String(validate=validate.Length(max=100))
    after = fields.Integer(validate=validate.Range(min=0, max=2**31 - 1))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class Reason(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=1000))


class Note(Schema):
    note = fields.String(load_default="", validate=validate.Length(max=1000))


class RetryIn(Note):
    latest = fields.Boolean(load_default=False, metadata={
        "description": "First move the journey to its playbook's active version (the fix); 409 when its step "
                       "is not in that version."})


class StepRunOut(Schema):
    id = fields.Integer()
    journey_id = fields.Integer()
    step_id = fields.String()
    kind = fields.String()
    oversight = fields.String(allow_none=True)
    status = fields.String()
    reason = fields.String()
    started_at = fields.AwareDateTime()
    finished_at = fields.AwareDateTime(allow_none=True)
    override_until = fields.AwareDateTime(allow_none=True, metadata={
        "description": "an on-the-loop step may be overridden until then"})


class StepRunPage(Schema):
    items = fields.List(fields.Nested(StepRunOut), required=True)
    next = fields.String(allow_none=True)


class StepRunQuery(Schema):
    status = fields.String(validate=validate.Length(max=20))
    overridable = fields.Boolean(metadata={"description": "only runs whose override window is open now"})
    after = fields.Integer(validate=validate.Range(min=0, max=2**31 - 1))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class OverrideReason(Schema):
    reason = fields.String(load_default="", validate=validate.Length(max=1000),
                           metadata={"description": "why (audited)"})


def _visible(who: Principal) -> Any:
    return select(Journey).where(Journey.account_id.in_(visible_accounts(select(Account.id), who)))


def _journey(session: Any, journey_id: int, who: Principal) -> Journey:
    journey = session.scalar(_visible(who).where(Journey.id == journey_id))
    if journey is None:
        raise NotFound(f"no journey {journey_id}")
    return journey


@blp.route("", methods=["GET"])
@blp.arguments(JourneyQuery, location="query")
@blp.response(200, JourneyPage)
@roles(*READERS)
def list_journeys(query: dict[str, Any]) -> Any:
    """Journeys of the accounts the caller may see."""
    statement = _visible(principal()).order_by(Journey.id).limit(query["limit"] + 1)
    for name, column in (("account_id", Journey.account_id), ("status", Journey.status),
                         ("playbook", Journey.playbook_id)):
        if name in query:
            statement = statement.where(column == query[name])
    if "after" in query:
        statement = statement.where(Journey.id > query["after"])
    with unit_of_work(runtime().sessions, read_only=True) as session:
        return page_of(list(session.scalars(statement)), limit=query["limit"], key=lambda j: j.id)


@blp.route("/<id:journey_id>", methods=["GET"])
@blp.response(200, JourneyOut)
@roles(*READERS)
def get_journey(journey_id: int) -> Any:
    """One journey."""
    with unit_of_work(runtime().sessions, read_only=True) as session:
        return _journey(session, journey_id, principal())


@blp.route("/<id:journey_id>/retry", methods=["POST"])
@blp.arguments(RetryIn)
@blp.response(200, JourneyOut)
@roles(Role.ADMIN)
def retry(body: dict[str, Any], journey_id: int) -> Any:
    """Run a parked journey's step again (after the cause was fixed); `latest` moves it to the active version first."""
    rt = runtime()
    with unit_of_work(rt.sessions) as session:
        _journey(session, journey_id, principal())
        retry_journey(session=session, settings=rt.settings, journey_id=journey_id,
                      actor=actor_name(session, principal()), note=body["note"], now=rt.clock.now(),
                      latest=body["latest"])
        return session.get(Journey, journey_id)


@blp.route("/<id:journey_id>/end", methods=["POST"])
@blp.arguments(Reason)
@blp.response(200, JourneyOut)
@roles(Role.ADMIN)
def end(body: dict[str, Any], journey_id: int) -> Any:
    """End a journey by hand, with a reason (audited)."""
    rt = runtime()
    with unit_of_work(rt.sessions) as session:
        _journey(session, journey_id, principal())
        end_journey(session=session, settings=rt.settings, journey_id=journey_id,
                    actor=actor_name(session, principal()), reason=body["reason"], now=rt.clock.now())
        return session.get(Journey, journey_id)


@blp.route("/<id:journey_id>/steps", methods=["GET"])
@blp.arguments(StepRunQuery, location="query")
@blp.response(200, StepRunPage)
@roles(*READERS)
def list_steps(query: dict[str, Any], journey_id: int) -> Any:
    """The journey's step runs, oldest first; `overridable=true` for the ones that can still be overridden."""
    statement = select(StepRun).where(StepRun.journey_id == journey_id).order_by(StepRun.id).limit(query["limit"] + 1)
    if "status" in query:
        statement = statement.where(StepRun.status == query["status"])
    if query.get("overridable") is not None:
        now = runtime().clock.now()
        open_window = StepRun.override_until.is_not(None) & (StepRun.override_until >= now)
        statement = statement.where(open_window if query["overridable"] else ~open_window)
    if "after" in query:
        statement = statement.where(StepRun.id > query["after"])
    with unit_of_work(runtime().sessions, read_only=True) as session:
        _journey(session, journey_id, principal())
        return page_of(list(session.scalars(statement)), limit=query["limit"], key=lambda r: r.id)


@blp.route("/<id:journey_id>/steps/<id:run_id>/override", methods=["POST"])
@blp.arguments(OverrideReason)
@blp.response(200, StepRunOut)
@roles(Role.ADMIN, Role.REP)
def override(body: dict[str, Any], journey_id: int, run_id: int) -> Any:
    """Undo an on-the-loop step inside its override window (a held send is cancelled, else compensated).

    By the account's owner or CSM, someone up their manager chain, or an admin; 409 once the window closed.
    """
    rt = runtime()
    who = principal()
    with unit_of_work(rt.sessions) as session:
        journey = _journey(session, journey_id, who)
        step_run = session.get(StepRun, run_id)
        if step_run is None or step_run.journey_id != journey.id:
            raise NotFound(f"no step run {run_id} in journey {journey_id}")
        check_overrider(session, account=session.get_one(Account, journey.account_id),
                        actor=acting_owner(session, who), admin=who.role == Role.ADMIN)
        return override_step(session=session, settings=rt.settings, step_run_id=run_id,
                             actor=actor_name(session, who), now=rt.clock.now(), reason=body["reason"])
