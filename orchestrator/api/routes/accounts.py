"""/accounts: accounts the caller may see, each one's timeline of decisions and its health score."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from orchestrator.api.access import READERS, account_for, principal, roles, visible_accounts
from orchestrator.api.app import page_of, runtime
from orchestrator.db import unit_of_work
from orchestrator.journeys.health import standing
from orchestrator.models import Account, AuditEvent

blp = Blueprint("accounts", __name__, url_prefix="/accounts", description="Accounts and their timelines.")


class AccountOut(Schema):
    id = fields.Integer()
    name = fields.String()
    domain = fields.String(allow_none=True)
    segment = fields.String(allow_none=True)
    stage = fields.String(allow_none=True)
    owner_id = fields.Integer(allow_none=True)
    csm_id = fields.Integer(allow_none=True)


class AccountPage(Schema):
    items = fields.List(fields.Nested(AccountOut), required=True)
    next = fields.String(allow_none=True)


class PageQuery(Schema):
    after = fields.Integer(validate=validate.Range(min=0, max=2**31 - 1))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class AccountQuery(PageQuery):
    stage = fields.String(validate=validate.Length(max=20))
    segment = fields.String(validate=validate.Length(max=40))
    owner_id = fields.Integer(validate=validate.Range(min=1, max=2**31 - 1))
    domain = fields.String(validate=validate.Length(max=253))


class TimelineQuery(PageQuery):
    action = fields.String(validate=validate.Length(max=40), metadata={"description": "e.g. task_completed"})
    journey_id = fields.Integer(validate=validate.Range(min=1, max=2**31 - 1))
    playbook = fields.String(validate=validate.Length(max=100))


class EventOut(Schema):
    id = fields.Integer()
    at = fields.AwareDateTime()
    action = fields.String()
    journey_id = fields.Integer(allow_none=True)
    playbook_id = fields.String(allow_none=True)
    playbook_version = fields.Integer(allow_none=True)
    step_id = fields.String(allow_none=True)
    rule = fields.String(metadata={"description": "which rule made the decision"})
    actor = fields.String()
    reason = fields.String(metadata={"description": "why"})


class TimelinePage(Schema):
    items = fields.List(fields.Nested(EventOut), required=True)
    next = fields.String(allow_none=True)


class ContributionOut(Schema):
    id = fields.String()
    label = fields.String()
    value = fields.Float(allow_none=True, metadata={"description": "the measure's raw value; none: left out"})
    weight = fields.Float()
    max_points = fields.Float(allow_none=True)
    points = fields.Float(allow_none=True)


class ScoreOut(Schema):
    id = fields.Integer()
    score = fields.Integer()
    previous = fields.Integer(allow_none=True)
    source = fields.String(metadata={"description": "computed, or imported (the CRM's score)"})
    computed_at = fields.AwareDateTime()
    trigger = fields.String(metadata={"description": "signal:ID or scheduler"})
    dropped_signal_id = fields.Integer(allow_none=True, metadata={"description": "the health.dropped it sent"})
    contributions = fields.List(fields.Nested(ContributionOut))


class HealthOut(Schema):
    account_id = fields.Integer()
    score = fields.Integer(allow_none=True, metadata={"description": "what account.health reads in conditions"})
    source = fields.String(allow_none=True, metadata={"description": "computed, imported, or crm_field (no model "
                                                                       "has scored the account)"})
    model = fields.String(allow_none=True, metadata={"description": "the playbook whose health model scored it"})
    computed_at = fields.AwareDateTime(allow_none=True)
    reasons = fields.List(fields.String(), metadata={"description": "the measures that cost the most points"})
    contributions = fields.List(fields.Nested(ContributionOut))
    history = fields.List(fields.Nested(ScoreOut), metadata={"description": "newest first"})


class HealthQuery(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=500),
                           metadata={"description": "how many history rows"})


@blp.route("", methods=["GET"])
@blp.arguments(AccountQuery, location="query")
@blp.response(200, AccountPage)
@roles(*READERS)
def list_accounts(query: dict[str, Any]) -> Any:
    """Accounts the caller may see; filter by stage, segment, owner or domain."""
    statement = visible_accounts(select(Account), principal()).order_by(Account.id).limit(query["limit"] + 1)
    for name, column in (("stage", Account.stage), ("segment", Account.segment), ("owner_id", Account.owner_id)):
        if name in query:
            statement = statement.where(column == query[name])
    if "domain" in query:
        statement = statement.where(Account.domain == query["domain"].strip().lower())
    if "after" in query:
        statement = statement.where(Account.id > query["after"])
    with unit_of_work(runtime().sessions, read_only=True) as session:
        return page_of(list(session.scalars(statement)), limit=query["limit"], key=lambda a: a.id)


@blp.route("/<id:account_id>", methods=["GET"])
@blp.response(200, AccountOut)
@roles(*READERS)
def get_account(account_id: int) -> Any:
    """One account."""
    with unit_of_work(runtime().sessions, read_only=True) as session:
        return account_for(session, account_id, principal())


@blp.route("/<id:account_id>/timeline", methods=["GET"])
@blp.arguments(TimelineQuery, location="query")
@blp.response(200, TimelinePage)
@roles(*READERS)
def timeline(query: dict[str, Any], account_id: int) -> Any:
    """Signals, steps, tasks and automated actions, each with playbook version, rule and reason, in order.

    Filter by audit action, journey or playbook.
    """
    with unit_of_work(runtime().sessions, read_only=True) as session:
        account_for(session, account_id, principal())
        statement = (select(AuditEvent).where(AuditEvent.account_id == account_id)
                     .order_by(AuditEvent.id).limit(query["limit"] + 1))
        if "after" in query:
            statement = statement.where(AuditEvent.id > query["after"])
        for name, column in (("action", AuditEvent.action), ("journey_id", AuditEvent.journey_id),
                             ("playbook", AuditEvent.playbook_id)):
            if name in query:
                statement = statement.where(column == query[name])
        return page_of(list(session.scalars(statement)), limit=query["limit"], key=lambda e: e.id)


@blp.route("/<id:account_id>/health", methods=["GET"])
@blp.arguments(HealthQuery, location="query")
@blp.response(200, HealthOut)
@roles(*READERS)
def health(query: dict[str, Any], account_id: int) -> Any:
    """The account's health score, what each measure contributed, and its history (newest first)."""
    with unit_of_work(runtime().sessions, read_only=True) as session:
        account = account_for(session, account_id, principal())
        return standing(session, account=account, limit=query["limit"])
