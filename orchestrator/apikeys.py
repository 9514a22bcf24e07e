"""API keys: a visible prefix to find the row, a secret stored only as a hash, shown once.

Keys are random 32-byte secrets, so one round of SHA-256 is the right hash (a slow password
hash protects guessable secrets; these are not); comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.errors import Invalid, NotFound
from orchestrator.models import ApiKey, Owner

__all__ = ["Role", "authenticate", "create_key", "list_keys", "revoke_key"]

_PREFIX = "hk"
_HEX = re.compile(r"[0-9a-f]{8}")


class Role(StrEnum):
    ADMIN = "admin"    # RevOps: everything
    LEADER = "leader"  # reads all tasks and reports, changes nothing
    REP = "rep"        # bound to one owner: their own tasks and their accounts only
    INGEST = "ingest"  # signals and webhooks only


@dataclass(frozen=True)
class Principal:
    """Who a request is: the key's role and, for a rep, the owner it is bound to."""

    key_id: int
    name: str
    role: Role
    owner_id: int | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, *, name: str, role: str, now: datetime, owner: Owner | None = None) -> str:
    """Store a new key and return it in full; this is the only time it is ever shown."""
    try:
        parsed = Role(role)
    except ValueError:
        raise Invalid(f"role {role!r} is not one of {', '.join(r.value for r in Role)}", field="role") from None
    if parsed == Role.REP and owner is None:
        raise Invalid("a rep key is bound to one owner: give --owner", field="owner")
    if not name.strip():
        raise Invalid("give the key a name people recognise", field="name")
    prefix, secret = secrets.token_hex(4), secrets.token_urlsafe(32)
    session.add(ApiKey(name=name.strip()[:200], prefix=prefix, key_hash=_hash(secret), role=parsed.value,
                       owner_id=owner.id if owner is not None else None, created_at=now))
    session.flush()
    return f"{_PREFIX}_{prefix}_{secret}"


def authenticate(session: Session, *, presented: str, now: datetime) -> Principal | None:
    """The principal a presented key belongs to, or None (unknown, malformed or revoked)."""
    parts = presented.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != _PREFIX or len(parts[1]) != 8 or not _HEX.fullmatch(parts[1]):
        return None
    key = session.scalars(select(ApiKey).where(ApiKey.prefix == parts[1])).one_or_none()
    if key is None or key.revoked_at is not None or not hmac.compare_digest(key.key_hash, _hash(parts[2])):
        return None
    return Principal(key_id=key.id, name=key.name, role=Role(key.role), owner_id=key.owner_id)


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, newest first (prefixes only: the secrets are not stored)."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())))


def revoke_key(session: Session, *, prefix: str, now: datetime) -> ApiKey:
    """Revoke the key with this prefix; a revoked key never authenticates again."""
    key = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix.removeprefix(f"{_PREFIX}_")[:8])).one_or_none()
    if key is None:
        raise NotFound(f"no API key with prefix {prefix!r}")
    key.revoked_at = key.revoked_at or now
    return key
