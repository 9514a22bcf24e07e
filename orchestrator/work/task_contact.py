"""The contact a task is about, as a CRM-neutral "contact crm ref": source -> that CRM's contact id.

The trigger's own person comes first when the signal names a contact known on the account (by a CRM
id or by email); otherwise the account's key contact (the champion, then the primary contact, then
the first one) among those with an id in that CRM. Each connector reads only its own source, so a
task never names a contact of another CRM, and an account without CRM contacts gives an empty ref.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.models import Contact, ExternalId, Signal

# Payload keys a signal may name its person by: a CRM contact id, or an email address.
_ID_KEYS = ("contact_crm_id", "contact_id", "hubspot_contact_id", "salesforce_contact_id")
_EMAIL_KEYS = ("contact_email", "email")


def contact_crm_ref(session: Session, *, account_id: int, signal: Signal | None = None) -> dict[str, str]:
    """Per CRM source, the id of the contact the account's task should name there (may be empty)."""
    contacts = list(session.scalars(select(Contact).where(Contact.account_id == account_id)
                                    .order_by(Contact.id)))
    if not contacts:
        return {}
    ids: dict[int, dict[str, str]] = defaultdict(dict)
    for local_id, source, external_id in session.execute(
            select(ExternalId.local_id, ExternalId.source, ExternalId.external_id)
            .where(ExternalId.kind == "contact", ExternalId.local_id.in_([c.id for c in contacts]))).tuples():
        ids[local_id][source] = external_id
    ranked = sorted(contacts, key=lambda c: (c.role != "champion", not c.is_primary, c.id))
    trigger = _trigger_contact(contacts, ids, signal.payload if signal is not None else {})
    if trigger is not None:
        ranked = [trigger, *(c for c in ranked if c.id != trigger.id)]
    ref: dict[str, str] = {}
    for contact in ranked:
        for source, external_id in ids.get(contact.id, {}).items():
            ref.setdefault(source, external_id)
    return ref


def _trigger_contact(contacts: list[Contact], ids: Mapping[int, Mapping[str, str]],
                     payload: Mapping[str, Any]) -> Contact | None:
    given = payload.get("contact")
    nested: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    named_ids = {str(v) for v in (*(payload.get(k) for k in _ID_KEYS), nested.get("id")) if v}
    emails = {str(v).strip().lower() for v in (*(payload.get(k) for k in _EMAIL_KEYS), nested.get("email"))
              if isinstance(v, str) and v.strip()}
    for contact in contacts:
        if named_ids & set(ids.get(contact.id, {}).values()):
            return contact
    for contact in contacts:
        if contact.email and contact.email.strip().lower() in emails:
            return contact
    return None
