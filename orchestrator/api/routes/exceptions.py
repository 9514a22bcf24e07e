"""/exceptions: the queue of whatever fell off the normal path, each item with a named owner."""

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
from orchestrator.exception_queue import assign_item, resolve_item
from orchestrator.models import Account, ExceptionItem

blp = Blueprint("exceptions", __name__, url_prefix="/exceptions", description="The exception queue.")


class ItemOut(Schema):
    id = fields.Integer()
    category = fields.String()
    owner = fields.String()
    message = fields.String()
    status = fields.String()
    account_id = fields.Integer(allow_none=True)
    journey_id = fields.Integer(allow_none=True)
    signal_id = fields.Integer(allow_none=True)
    created_at = fields.AwareDateTime()
    respond_by = fields.AwareDateTime()
    resolved_at = fields.AwareDateTime(allow_none=True)
    resolved_by = fields.String(allow_none=True)


class ItemPage(Schema):
    items = fields.List(fields.Nested(ItemOut), required=True)
    next = fields.String(allow_none=True)


class ItemQuery(Schema):
    status = fields.String(validate=validate.OneOf(["open", "resolved"]))
    category = fields.String(validate=validate.Length(max=60))
    after = fields.Integer(validate=validate.Range(min=0, max=2**31 - 1))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class Resolve(Schema):
    note = fields.String(load_default="", validate=validate.Length(max=2000))


class Assign(Schema):
    owner = fields.Email(required=True)


def _visible(who: Principal) -> Any:
    query = select(ExceptionItem)
    if who.role == Role.REP:  # a rep sees the items of their accounts
        query = query.where(ExceptionItem.account_id.in_(visible_accounts(select(Account.id), who)))
    return query


def _item(session: Any, item_id: int, who: Principal) -> ExceptionItem:
    item = session.scalar(_visible(who).where(ExceptionItem.id == item_id))
    if item is None:
        raise NotFound(f"no exception item {item_id}")
    return item


@blp.route("", methods=["GET"])
@blp.arguments(ItemQuery, location="query")
@blp.response(200, ItemPage)
@roles(*READERS)
def list_items(query: dict[str, Any]) -> Any:
    """Exception items, oldest id first."""
    statement = _visible(principal()).order_by(ExceptionItem.id).limit(query["limit"] + 1)
    for name, column in (("status", ExceptionItem.status), ("category", ExceptionItem.category)):
        if name in query:
            statement = statement.where(column == query[name])
    if "after" in query:
        statement = statement.where(ExceptionItem.id > query["after"])
    with unit_of_work(runtime().sessions, read_only=True) as session:
        return page_of(list(session.scalars(statement)), limit=query["limit"], key=lambda item: item.id)


@blp.route("/<id:item_id>/resolve", methods=["POST"])
@blp.arguments(Resolve)
@blp.response(200, ItemOut)
@roles(Role.ADMIN)
def resolve(body: dict[str, Any], item_id: int) -> Any:
    """Close an item, with a note (audited)."""
    rt = runtime()
    with unit_of_work(rt.sessions) as session:
        _item(session, item_id, principal())
        return resolve_item(session, item_id=item_id, by=actor_name(session, principal()), at=rt.clock.now(),
                            note=body["note"])


@blp.route("/<id:item_id>/assign", methods=["POST"])
@blp.arguments(Assign)
@blp.response(200, ItemOut)
@roles(Role.ADMIN)
def assign(body: dict[str, Any], item_id: int) -> Any:
    """Hand an item to another named person (audited)."""
    rt = runtime()
    with unit_of_work(rt.sessions) as session:
        _item(session, item_id, principal())
        return assign_item(session, item_id=item_id, owner=body["owner"], by=actor_name(session, principal()),
                           at=rt.clock.now())
