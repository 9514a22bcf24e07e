"""/journeys: where accounts stand in their playbooks; retry a parked one, end one."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from orchestrator.api.access import READERS, actor_name, principal, roles, visible_accounts
from orchestrator.api.app import page_of, runtime
from orchestrator.apikeys import Principal, Role
from orchestrator.db import unit_of_work
from orchestrator.errors import NotFound
from orchestrator.journeys.decisions import end_journey, retry_journey
from orchestrator.models import Account, Journey

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
@blp.arguments(Note)
@blp.response(200, JourneyOut)
@roles(Role.ADMIN)
def retry(body: dict[str, Any], journey_id: int) -> Any:
    """Run a parked journey's step again (after the cause was fixed)."""
    rt = runtime()
    with unit_of_work(rt.sessions) as session:
        _journey(session, journey_id, principal())
        retry_journey(session=session, settings=rt.settings, journey_id=journey_id,
                      actor=actor_name(session, principal()), note=body["note"], now=rt.clock.now())
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
