"""Who the caller is and what they may touch: roles on every route, object-level checks on every id.

A rep asking for another rep's task gets 404, not 403: the API does not confirm that
something exists to someone who may not see it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, request
from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from orchestrator.apikeys import Principal, Role, authenticate
from orchestrator.errors import Forbidden, HandoffError, NotFound
from orchestrator.models import Account, Owner, Task

F = TypeVar("F", bound=Callable[..., Any])

READERS = (Role.ADMIN, Role.LEADER, Role.REP)


class Unauthenticated(HandoffError):
    status = 401
    problem = "/problems/unauthenticated"


def principal() -> Principal:
    """The authenticated caller of this request."""
    found: Principal | None = g.get("principal")
    if found is None:
        raise Unauthenticated("send an API key: Authorization: Bearer hk_...")
    return found


def authenticate_request(session: Session, *, now: Any) -> Principal | None:
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        presented = request.headers.get("X-API-Key", "")
    return authenticate(session, presented=presented, now=now) if presented else None


def roles(*allowed: Role) -> Callable[[F], F]:
    """Only these roles may call the decorated view."""
    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            who = principal()
            if who.role not in allowed:
                raise Forbidden(f"a {who.role} key may not do this")
            return view(*args, **kwargs)
        return wrapper  # type: ignore[return-value]
    return decorate


def visible_tasks(query: Select[Any], who: Principal) -> Select[Any]:
    """Restrict a task query to what the caller may see."""
    if who.role == Role.REP:
        return query.where(Task.owner_id == who.owner_id)
    return query


def visible_accounts(query: Select[Any], who: Principal) -> Select[Any]:
    """A rep sees the accounts they own, are CSM of, or hold a task on."""
    if who.role != Role.REP:
        return query
    tasks_here = select(Task.account_id).where(Task.owner_id == who.owner_id)
    return query.where(or_(Account.owner_id == who.owner_id, Account.csm_id == who.owner_id,
                           Account.id.in_(tasks_here)))


def task_for(session: Session, task_id: int, who: Principal) -> Task:
    """The task, if the caller may see it; otherwise NotFound (never a hint that it exists)."""
    task = session.scalar(visible_tasks(select(Task).where(Task.id == task_id), who))
    if task is None:
        raise NotFound(f"no task {task_id}")
    return task


def account_for(session: Session, account_id: int, who: Principal) -> Account:
    account = session.scalar(visible_accounts(select(Account).where(Account.id == account_id), who))
    if account is None:
        raise NotFound(f"no account {account_id}")
    return account


def acting_owner(session: Session, who: Principal) -> Owner | None:
    """The person a key acts as: a rep's owner, or the owner an admin key was bound to."""
    return session.get(Owner, who.owner_id) if who.owner_id is not None else None


def actor_name(session: Session, who: Principal) -> str:
    """How the audit trail names the caller: the person the key acts as, or the key itself."""
    owner = acting_owner(session, who)
    return owner.email if owner is not None else f"apikey:{who.name}"
