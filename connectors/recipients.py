"""Who an internal notification is for: a person reference or an email, resolved at delivery time.

`to` in `notify.email` / `notify.chat` is `account.owner`, `owner.manager`, `account.csm`
or an email address (a template such as "{{ owner.email }}" renders to one). References
are read from the message's `AccountRef`, so the person is whoever holds the role when
the message is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.base import AccountRef, PermanentError

__all__ = ["REFERENCES", "action_args", "looks_like_email", "resolve"]

REFERENCES = {
    "account.owner": ("owner_email", "the account owner"),
    "owner.manager": ("owner_manager_email", "the account owner's manager"),
    "account.csm": ("csm_email", "the account CSM"),
}


def action_args(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """A playbook step's rendered arguments (`payload["args"]`), or the payload itself for engine notices."""
    args = payload.get("args")
    return args if isinstance(args, Mapping) else payload


def looks_like_email(text: str) -> bool:
    local, at, domain = text.strip().rpartition("@")
    return bool(at and local and "." in domain and not any(c.isspace() for c in text.strip()))


def resolve(to: Any, *, account: AccountRef | None) -> str:
    """The email address `to` names; PermanentError (no customer data in it) when there is none."""
    if not isinstance(to, str) or not to.strip():
        raise PermanentError("no recipient: `to` is empty")
    text = to.strip()
    if text in REFERENCES:
        attribute, words = REFERENCES[text]
        email = getattr(account, attribute, None) if account is not None else None
        if not email:
            raise PermanentError(f"no recipient: {words} has no email address")
        return str(email)
    if looks_like_email(text):
        return text
    raise PermanentError(f'`to` must be {", ".join(REFERENCES)} or an email address')
