"""Contact roles as recipients: `to: champion` on a customer action names the account's contact in that role.

Resolved when the action runs, from the account's contacts as the CRM sync left them: the
primary contact with the role first, then the longest known. An account without such a contact
(or whose one has no email address) raises `RecipientError`, which parks the step with an
exception item; a role word is never stored as an address.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.models import Account, Contact
from orchestrator.playbook.schema import CONTACT_ROLES

__all__ = ["CONTACT_ROLES", "RecipientError", "resolve_contact_role"]


class RecipientError(Exception):
    """A customer action names a contact role the account has nobody (with an email) in."""


def resolve_contact_role(session: Session, *, account: Account, args: dict[str, Any]) -> dict[str, Any]:
    """`args` with a contact-role `to` replaced by that contact's address (and `to_role` kept for the record)."""
    to = args.get("to")
    if not isinstance(to, str) or to.strip() not in CONTACT_ROLES:
        return args
    role = to.strip()
    email = session.scalar(
        select(Contact.email).where(Contact.account_id == account.id, Contact.role == role,
                                    Contact.email.is_not(None), Contact.email != "")
        .order_by(Contact.is_primary.desc(), Contact.id).limit(1))
    if email is None:
        raise RecipientError(f'to: {role}: {account.name} has no {role.replace("_", " ")} contact with an email '
                             "address; add one in the CRM (contact role) or change the playbook's recipient")
    return {**args, "to": email, "to_role": role}
