"""Who may decide a task: its assignee, someone up their manager chain, or an admin; never the requester.

Segregation of duties: an approval approves somebody's request (the trigger signal's
`requested_by`, an email); that person never decides it, whatever their role. The CLI's
`--by` and the API's key holder pass through the same check.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from orchestrator.errors import Forbidden, Invalid
from orchestrator.models import Account, Journey, Owner, Signal, Task
from orchestrator.work.assignment import find_owner

__all__ = ["check_decider", "check_overrider", "check_reassigner", "known_actor", "requester_email"]

_MAX_CHAIN = 20  # manager chains are short; a cycle in the data must not spin


def known_actor(session: Session, *, email: str) -> Owner:
    """The active owner an actor's email names; refuses blanks, strangers and inactive people."""
    if not email or not email.strip():
        raise Invalid("name who is acting: an owner's email", field="by")
    owner = find_owner(session, email=email)
    if owner is None:
        raise Forbidden(f"{email.strip()!r} is not a known owner")
    if not owner.active:
        raise Forbidden(f"{owner.email} is inactive")
    return owner


def requester_email(session: Session, *, task: Task) -> str | None:
    """Whose request the task decides: `requested_by` on the journey's trigger signal, if any."""
    if task.journey_id is None:
        return None
    journey = session.get(Journey, task.journey_id)
    if journey is None or journey.trigger_signal_id is None:
        return None
    signal = session.get(Signal, journey.trigger_signal_id)
    requested = (signal.payload or {}).get("requested_by") if signal is not None else None
    return requested.strip().lower() if isinstance(requested, str) and requested.strip() else None


def check_decider(session: Session, *, task: Task, actor: Owner, admin: bool = False) -> None:
    """Raise Forbidden unless `actor` may decide or act on `task`."""
    requester = requester_email(session, task=task)
    if requester is not None and requester == actor.email.lower():
        raise Forbidden(f"{actor.email} requested what task {task.id} decides; someone else must decide it")
    if admin or task.owner_id == actor.id or _manages(session, manager=actor, owner_id=task.owner_id):
        return
    raise Forbidden(f"{actor.email} is neither the assignee of task {task.id} nor up their manager chain")


def check_reassigner(session: Session, *, task: Task, actor: Owner | None, admin: bool = False) -> None:
    """Raise Forbidden unless `actor` may give `task` to someone else: an admin or up the owner's manager chain."""
    if admin or (actor is not None and _manages(session, manager=actor, owner_id=task.owner_id)):
        return
    raise Forbidden(f"only an admin or someone up the assignee's manager chain may reassign task {task.id}")


def check_overrider(session: Session, *, account: Account, actor: Owner | None, admin: bool = False) -> None:
    """Raise Forbidden unless `actor` may undo an automated step on `account`.

    The account's owner (who is told the step ran) or CSM, someone up either's manager chain, or an admin.
    """
    if admin:
        return
    people = [owner_id for owner_id in (account.owner_id, account.csm_id) if owner_id is not None]
    if actor is not None and any(actor.id == owner_id or _manages(session, manager=actor, owner_id=owner_id)
                                 for owner_id in people):
        return
    who = actor.email if actor is not None else "this key"
    raise Forbidden(f"{who} is neither the owner or CSM of account {account.id} nor up their manager chain")


def _manages(session: Session, *, manager: Owner, owner_id: int) -> bool:
    """Whether `manager` is somewhere up the manager chain of owner `owner_id` (not the person themself)."""
    person = session.get(Owner, owner_id)
    for _ in range(_MAX_CHAIN):
        if person is None or person.manager_id is None:
            return False
        person = session.get(Owner, person.manager_id)
        if person is not None and person.id == manager.id:
            return True
    return False
