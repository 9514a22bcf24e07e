"""Signal intake: validate, resolve the account, store once per dedupe key. Used by the CLI, the API and connectors.

Malformed input is the caller's problem and is answered, not stored. A well-formed
signal is always stored, even when its account is unknown: then it also becomes an
exception item, so nothing is silently dropped.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import ColumnElement, Select, Table, and_, bindparam, exists, or_, select, tuple_, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value

from orchestrator import audit, exception_queue
from orchestrator.config import Settings
from orchestrator.db import among, insert_many, skip_locked
from orchestrator.intake import values
from orchestrator.intake.unknown_types import IncomingSignal, flag_unknown_types
from orchestrator.models import Account, Deal, ExternalId, Signal

__all__ = [
    "MAX_PAYLOAD_BYTES", "MAX_RAW_BYTES", "MAX_SOURCE_LENGTH", "AccountRef", "DealRef", "IntakeResult",
    "IntakeStatus", "SignalSchema", "default_dedupe_key", "defer", "find_account", "find_accounts", "ingest",
    "ingest_many", "mark_processed", "mark_processed_many",
    "oversized", "parse_account_ref", "pending_heads", "pending_signals", "source_problem",
]

MAX_PAYLOAD_BYTES = 64 * 1024
# Room for the payload plus the envelope; anything larger is refused before it is parsed.
MAX_RAW_BYTES = MAX_PAYLOAD_BYTES + 16 * 1024
# \Z, not $: "$" also matches before a trailing newline.
_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+\Z"
MAX_SOURCE_LENGTH = 40  # signals.source is VARCHAR(40)


class IntakeStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True)
class IntakeResult:
    status: IntakeStatus
    signal_id: int | None = None  # the stored signal; for a duplicate, the one stored first
    reason: str = ""
    field: str | None = None  # dotted path of the field at fault, when rejected
    exception_id: int | None = None  # the exception item a stored-but-unresolved signal raised


@dataclass(frozen=True)
class AccountRef:
    """One way to name an account: by id, by (source, external id), or by domain."""

    id: int | None = None
    source: str | None = None
    external_id: str | None = None
    domain: str | None = None

    def canonical(self) -> str:
        if self.id is not None:
            return f"id:{self.id}"
        if self.source is not None:
            return f"ext:{self.source}:{self.external_id}"
        return f"domain:{self.domain}"


@dataclass(frozen=True)
class DealRef:
    id: int | None = None
    source: str | None = None
    external_id: str | None = None

    def canonical(self) -> str:
        return f"id:{self.id}" if self.id is not None else f"ext:{self.source}:{self.external_id}"


# -- validation -------------------------------------------------------------------------------

def _normalize_domain(value: str) -> str:
    return value.strip().rstrip(".").lower()


class _AccountRefSchema(Schema):
    id = fields.Integer(strict=True, validate=validate.Range(min=1, max=values.MAX_ID))
    source = fields.String(validate=validate.Length(min=1, max=40))
    external_id = fields.String(validate=validate.Length(min=1, max=255))
    domain = fields.String(validate=validate.Length(min=1, max=253))

    @validates_schema
    def _one_way(self, data: dict[str, Any], **_: Any) -> None:
        ways = [name for name, present in (
            ("id", "id" in data),
            ("source + external_id", "source" in data or "external_id" in data),
            ("domain", "domain" in data),
        ) if present]
        if len(ways) != 1:
            raise ValidationError('give exactly one of {"id"}, {"source", "external_id"} or {"domain"}'
                                  + (f"; got {' and '.join(ways)}" if ways else ""))
        if ways[0] == "source + external_id":
            for name in ("source", "external_id"):
                if name not in data:
                    raise ValidationError(f"{name} is required with "
                                          f"{'external_id' if name == 'source' else 'source'}", name)


class _DealRefSchema(Schema):
    id = fields.Integer(strict=True, validate=validate.Range(min=1, max=values.MAX_ID))
    source = fields.String(validate=validate.Length(min=1, max=40))
    external_id = fields.String(validate=validate.Length(min=1, max=255))

    @validates_schema
    def _one_way(self, data: dict[str, Any], **_: Any) -> None:
        by_external = "source" in data or "external_id" in data
        if ("id" in data) == by_external:
            raise ValidationError('give exactly one of {"id"} or {"source", "external_id"}')
        if by_external and not ("source" in data and "external_id" in data):
            missing = "source" if "source" not in data else "external_id"
            raise ValidationError(f"{missing} is required with the other", missing)


def _payload_fits(payload: dict[str, Any]) -> None:
    size = len(_canonical_json(payload).encode("utf-8"))
    if size > MAX_PAYLOAD_BYTES:
        raise ValidationError(f"is {size} bytes; the limit is {MAX_PAYLOAD_BYTES}")


def _datetime_in_range(value: datetime) -> None:
    problem = values.datetime_problem(value)
    if problem:
        raise ValidationError(problem)


class SignalSchema(Schema):
    """An incoming signal as a caller sends it; unknown keys are refused (they are usually typos)."""

    type = fields.String(required=True, validate=[
        validate.Length(max=100),
        validate.Regexp(_TYPE_PATTERN, error='must be dotted lowercase words, e.g. "product.usage"'),
    ])
    account = fields.Nested(_AccountRefSchema, required=True)
    deal = fields.Nested(_DealRefSchema, load_default=None)
    occurred_at = fields.AwareDateTime(required=True, format="iso", validate=_datetime_in_range, error_messages={
        "invalid": 'is not an ISO 8601 date and time, e.g. "2026-11-23T14:00:00Z"',
        "invalid_awareness": 'has no timezone; add one, e.g. "2026-11-23T14:00:00Z" or "+01:00"',
    })
    payload = fields.Dict(keys=fields.String(), load_default=dict, validate=_payload_fits,
                          error_messages={"invalid": "must be a JSON object"})
    dedupe_key = fields.String(load_default=None, validate=validate.Length(min=1, max=255))


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def default_dedupe_key(*, type: str, account: AccountRef, occurred_at: datetime,
                       payload: Mapping[str, Any], deal: DealRef | None = None) -> str:
    """sha256 over type, account ref, occurred_at (UTC) and canonical payload; the source is left out
    so the same fact arriving by webhook and by sync is stored once."""
    parts = [type, account.canonical(), occurred_at.astimezone(UTC).isoformat(), _canonical_json(payload)]
    if deal is not None:
        # Two deals of one account can close at the same instant with the same payload.
        parts.append(deal.canonical())
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def _first_error(messages: Any, path: tuple[str, ...] = ()) -> tuple[str | None, str]:
    # marshmallow nests messages by field; "_schema" is a whole-object error, not a field name.
    if isinstance(messages, Mapping) and messages:
        key, value = next(iter(messages.items()))
        return _first_error(value, path if key == "_schema" else (*path, str(key)))
    if isinstance(messages, list) and messages:
        return _first_error(messages[0], path)
    return values.field_name(path), str(messages)


def _rejected(field: str | None, reason: str) -> IntakeResult:
    return IntakeResult(status=IntakeStatus.REJECTED, field=field, reason=reason)


def oversized(size: int) -> IntakeResult:
    """The rejection for a signal of `size` bytes over MAX_RAW_BYTES (readers that stop early use it too)."""
    return _rejected(None, f"the signal is {size} bytes; the limit is {MAX_RAW_BYTES}")


def source_problem(source: str) -> str | None:
    """Why `source` cannot be recorded as a signal's source, or None."""
    if not 1 <= len(source) <= MAX_SOURCE_LENGTH:
        return f"must be 1 to {MAX_SOURCE_LENGTH} characters"
    return values.text_problem(source)


def _decode(raw: bytes | bytearray) -> str | IntakeResult:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _rejected(None, f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}")


def _parse(raw: Any) -> dict[str, Any] | IntakeResult:
    # Every check that one backend would fail and the other pass happens here, before the
    # database sees anything: text, numbers, nesting, id and timestamp ranges.
    if isinstance(raw, (bytes, bytearray)):
        if len(raw) > MAX_RAW_BYTES:
            return oversized(len(raw))
        raw = _decode(raw)
        if isinstance(raw, IntakeResult):
            return raw
    if isinstance(raw, str):
        # Measured without encoding first: a huge string is refused before it is copied.
        size = len(raw) if len(raw) > MAX_RAW_BYTES else len(raw.encode("utf-8", "surrogatepass"))
        if size > MAX_RAW_BYTES:
            return oversized(size)
        try:
            raw = values.parse_json(raw)
        except values.JSONError as exc:
            return _rejected(None, f"not valid JSON: {exc}")
    if not isinstance(raw, Mapping):
        return _rejected(None, f"expected a JSON object, got {type(raw).__name__}")
    problem = values.mapping_problem(raw)
    if problem:
        return _rejected(problem.field, problem.reason)
    fast = _fast_load(raw)
    if fast is not None:
        return fast
    try:
        return _SIGNAL_SCHEMA.load(dict(raw))
    except ValidationError as exc:
        field, message = _first_error(exc.messages)
        return _rejected(field, message)


_TYPE_RE = re.compile(_TYPE_PATTERN)
_SIGNAL_KEYS = frozenset(("type", "account", "deal", "occurred_at", "payload", "dedupe_key"))
_BY_ID = frozenset(("id",))
_BY_EXTERNAL_ID = frozenset(("source", "external_id"))
_BY_DOMAIN = frozenset(("domain",))


def _fast_load(raw: Mapping[str, Any]) -> dict[str, Any] | None:
    """What `SignalSchema().load` returns for a plainly well-formed signal, or None: ask the schema.

    Validating with marshmallow cost more than storing and evaluating a signal. This takes
    only input that is valid beyond doubt (exact types, each check the schema makes) and
    leaves anything else, every error message included, to the schema.
    """
    if not raw.keys() <= _SIGNAL_KEYS:
        return None
    kind = raw.get("type")
    if type(kind) is not str or len(kind) > 100 or not _TYPE_RE.match(kind):
        return None
    account = _fast_ref(raw.get("account"), (_BY_ID, _BY_EXTERNAL_ID, _BY_DOMAIN))
    if account is None:
        return None
    deal = raw.get("deal")
    if deal is not None:
        deal = _fast_ref(deal, (_BY_ID, _BY_EXTERNAL_ID))
        if deal is None:
            return None
    occurred_at = raw.get("occurred_at")
    if type(occurred_at) is str:
        try:
            occurred_at = datetime.fromisoformat(occurred_at)  # what the schema's "iso" format calls
        except ValueError:
            return None
    if not isinstance(occurred_at, datetime) or occurred_at.tzinfo is None \
            or occurred_at.tzinfo.utcoffset(occurred_at) is None or values.datetime_problem(occurred_at):
        return None
    payload = raw.get("payload", _NO_PAYLOAD)
    if payload is _NO_PAYLOAD:
        payload = {}
    elif type(payload) is not dict or not all(type(key) is str for key in payload):
        return None
    else:
        payload = dict(payload)
        if len(_canonical_json(payload).encode("utf-8")) > MAX_PAYLOAD_BYTES:
            return None
    dedupe_key = raw.get("dedupe_key")
    if dedupe_key is not None and (type(dedupe_key) is not str or not 1 <= len(dedupe_key) <= 255):
        return None
    return {"type": kind, "account": account, "deal": deal, "occurred_at": occurred_at, "payload": payload,
            "dedupe_key": dedupe_key}


_NO_PAYLOAD = object()
_TEXT_LIMITS = {"source": 40, "external_id": 255, "domain": 253}


def _fast_ref(value: Any, ways: tuple[frozenset[str], ...]) -> dict[str, Any] | None:
    """An account or deal reference exactly as its nested schema loads it, or None."""
    if type(value) is not dict or frozenset(value) not in ways:
        return None
    for key, item in value.items():
        if key == "id":
            if type(item) is not int or not 1 <= item <= values.MAX_ID:
                return None
        elif type(item) is not str or not 1 <= len(item) <= _TEXT_LIMITS[key]:
            return None
    return dict(value)


# -- resolution -------------------------------------------------------------------------------

def parse_account_ref(text: str) -> AccountRef:
    """`17` → id, `salesforce:001xx` → source + external id, anything else → domain."""
    text = text.strip()
    if text.isdigit():
        return AccountRef(id=int(text))
    if ":" in text:
        source, external_id = text.split(":", 1)
        return AccountRef(source=source, external_id=external_id)
    return AccountRef(domain=_normalize_domain(text))


def find_account(session: Session, *, ref: AccountRef) -> Account | None:
    """The account a reference names, or None."""
    if ref.id is not None:
        return session.get(Account, ref.id)
    if ref.source is not None:
        return session.scalars(
            select(Account).join(ExternalId, ExternalId.local_id == Account.id)
            .where(ExternalId.kind == "account", ExternalId.source == ref.source,
                   ExternalId.external_id == ref.external_id)
        ).one_or_none()
    # Account.domain is stored lowercase, so the normalized value hits the unique index.
    domain = _normalize_domain(ref.domain or "")
    return session.scalars(select(Account).where(Account.domain == domain)).one_or_none()


def find_accounts(session: Session, *, refs: Sequence[AccountRef]) -> dict[str, Account]:
    """The accounts these references name, by `AccountRef.canonical()`; unknown ones are absent.

    One query per kind of reference present (ids, external ids, domains), whatever the count.
    """
    found: dict[str, Account] = {}
    ids = sorted({ref.id for ref in refs if ref.id is not None})
    if ids:
        for account in session.scalars(select(Account).where(Account.id.in_(ids))):
            found[f"id:{account.id}"] = account
    pairs = sorted({(ref.source, ref.external_id) for ref in refs
                    if ref.id is None and ref.source is not None and ref.external_id is not None})
    if pairs:
        query = (select(Account, ExternalId.source, ExternalId.external_id)
                 .join(ExternalId, ExternalId.local_id == Account.id)
                 .where(ExternalId.kind == "account", tuple_(ExternalId.source, ExternalId.external_id).in_(pairs)))
        for account, source, external_id in session.execute(query).tuples():
            found[f"ext:{source}:{external_id}"] = account
    # Account.domain is stored lowercase, so the normalized values hit the unique index.
    domains = sorted({_normalize_domain(ref.domain) for ref in refs
                      if ref.id is None and ref.source is None and ref.domain is not None})
    if domains:
        for account in session.scalars(select(Account).where(Account.domain.in_(domains))):
            found[f"domain:{account.domain}"] = account
    return found


def _find_deals(session: Session, refs: Sequence[DealRef]) -> dict[str, Deal]:
    found: dict[str, Deal] = {}
    ids = sorted({ref.id for ref in refs if ref.id is not None})
    if ids:
        for deal in session.scalars(select(Deal).where(Deal.id.in_(ids))):
            found[f"id:{deal.id}"] = deal
    pairs = sorted({(ref.source, ref.external_id) for ref in refs
                    if ref.id is None and ref.source is not None and ref.external_id is not None})
    if pairs:
        query = (select(Deal, ExternalId.source, ExternalId.external_id)
                 .join(ExternalId, ExternalId.local_id == Deal.id)
                 .where(ExternalId.kind == "deal", tuple_(ExternalId.source, ExternalId.external_id).in_(pairs)))
        for deal, source, external_id in session.execute(query).tuples():
            found[f"ext:{source}:{external_id}"] = deal
    return found


# -- intake -----------------------------------------------------------------------------------

# Built once per process: building a marshmallow schema (fields, nested schemas, hooks) cost
# more than validating a signal with it.
_SIGNAL_SCHEMA = SignalSchema()


@dataclass(frozen=True)
class _Valid:
    """A signal that passed validation, with its references and dedupe key worked out."""

    data: dict[str, Any]
    account_ref: AccountRef
    deal_ref: DealRef | None
    dedupe_key: str


def ingest(*, session: Session, raw: Any, source: str, now: datetime, settings: Settings) -> IntakeResult:
    """Validate and store one signal (a mapping, or JSON text/bytes) in the caller's transaction."""
    return ingest_many(session=session, raws=[raw], source=source, now=now, settings=settings)[0]


def ingest_many(*, session: Session, raws: Sequence[Any], source: str, now: datetime,
                settings: Settings) -> list[IntakeResult]:
    """Validate and store a batch of signals in the caller's transaction; one result per item, in order.

    The same rows, results and exception items as `ingest` item by item, at a cost per batch:
    accounts and deals resolved in one query per kind of reference, the signals written with
    one INSERT ... ON CONFLICT DO NOTHING RETURNING, their audit events with one executemany.
    A key repeated within the batch is a duplicate of its first occurrence, as it would be
    one by one.
    """
    problem = source_problem(source)
    if problem:
        return [_rejected("source", problem) for _ in raws]
    results: list[IntakeResult | None] = [None] * len(raws)
    valid: dict[int, _Valid] = {}
    for index, raw in enumerate(raws):
        parsed = _parse(raw)
        if isinstance(parsed, IntakeResult):
            results[index] = parsed
        else:
            valid[index] = _valid(parsed)
    if valid:
        _store(session, valid=valid, results=results, source=source, now=now, settings=settings)
    return [result for result in results if result is not None]


def _valid(data: dict[str, Any]) -> _Valid:
    account_ref = AccountRef(**data["account"])
    if account_ref.domain is not None:
        account_ref = AccountRef(domain=_normalize_domain(account_ref.domain))
    deal_ref = DealRef(**data["deal"]) if data["deal"] is not None else None
    dedupe_key = data["dedupe_key"] or default_dedupe_key(
        type=data["type"], account=account_ref, occurred_at=data["occurred_at"],
        payload=data["payload"], deal=deal_ref)
    return _Valid(data=data, account_ref=account_ref, deal_ref=deal_ref, dedupe_key=dedupe_key)


def _store(session: Session, *, valid: dict[int, _Valid], results: list[IntakeResult | None], source: str,
           now: datetime, settings: Settings) -> None:
    accounts = find_accounts(session, refs=[item.account_ref for item in valid.values()])
    deals = _find_deals(session, [item.deal_ref for item in valid.values() if item.deal_ref is not None])
    first: dict[str, int] = {}  # dedupe key -> index of its first occurrence in this batch
    rows: list[dict[str, Any]] = []
    resolved: dict[int, tuple[Account | None, Deal | None, str]] = {}
    for index, item in valid.items():
        if item.dedupe_key in first:
            continue
        first[item.dedupe_key] = index
        account = accounts.get(item.account_ref.canonical())
        deal = deals.get(item.deal_ref.canonical()) if item.deal_ref is not None else None
        deal_problem = _deal_problem(item.deal_ref, deal, account)
        if deal_problem:
            deal = None
        resolved[index] = (account, deal, deal_problem)
        rows.append({"type": item.data["type"], "dedupe_key": item.dedupe_key, "source": source,
                     "payload": item.data["payload"], "account_id": account.id if account else None,
                     "deal_id": deal.id if deal else None, "occurred_at": item.data["occurred_at"],
                     "received_at": now})
    # Two processes receiving the same signal at once: exactly one insert wins, the other
    # gets no row back and reports a duplicate, with no IntegrityError to recover from.
    stored: dict[str, int] = dict(insert_many(session, cast(Table, Signal.__table__), rows, conflict=["dedupe_key"],
                                              returning=["dedupe_key", "id"]))
    missing = [key for key in first if key not in stored]
    earlier: dict[str, int] = dict(session.execute(
        select(Signal.dedupe_key, Signal.id).where(Signal.dedupe_key.in_(missing))).tuples().all()) \
        if missing else {}

    events: list[dict[str, Any]] = []
    incoming: list[IncomingSignal] = []
    for index, item in valid.items():
        signal_id = stored.get(item.dedupe_key)
        if signal_id is None or first[item.dedupe_key] != index:
            existing = signal_id if signal_id is not None else earlier.get(item.dedupe_key)
            results[index] = IntakeResult(status=IntakeStatus.DUPLICATE, signal_id=existing,
                                          reason=f"duplicate of signal {existing}")
            continue
        account = resolved[index][0]
        events.append(audit.row(at=now, action=audit.AuditAction.SIGNAL_RECEIVED, rule="intake",
                                reason=f"{item.data['type']} from {source}",
                                account_id=account.id if account else None,
                                detail={"signal_id": signal_id, "type": item.data["type"],
                                        "dedupe_key": item.dedupe_key}))
        incoming.append(IncomingSignal(signal_id=signal_id, type=item.data["type"],
                                       account_id=account.id if account else None))
    audit.record_many(session, events)
    if incoming:
        flag_unknown_types(session, settings=settings, at=now, signals=incoming)

    for index, item in valid.items():
        if results[index] is not None:
            continue
        signal_id = stored[item.dedupe_key]
        account, _, deal_problem = resolved[index]
        exception = None
        if account is None:
            exception = exception_queue.raise_item(
                session, settings=settings, category=exception_queue.Category.UNKNOWN_ACCOUNT, at=now,
                message=f"{item.data['type']} signal for an unknown account ({item.account_ref.canonical()})",
                signal_id=signal_id, detail={"account": item.data["account"], "source": source})
        elif deal_problem:
            exception = exception_queue.raise_item(
                session, settings=settings, category=exception_queue.Category.UNKNOWN_DEAL, at=now,
                message=f"{item.data['type']} signal: {deal_problem}", account_id=account.id,
                signal_id=signal_id, detail={"deal": item.data["deal"], "source": source})
        results[index] = IntakeResult(status=IntakeStatus.ACCEPTED, signal_id=signal_id,
                                      reason=exception.message if exception else "",
                                      exception_id=exception.id if exception else None)


def _deal_problem(ref: DealRef | None, deal: Deal | None, account: Account | None) -> str:
    if ref is None:
        return ""
    if deal is None:
        return f"unknown deal ({ref.canonical()})"
    if account is not None and deal.account_id != account.id:
        return f"deal {deal.id} belongs to account {deal.account_id}, not {account.id}"
    return ""


# -- the engine's work queue ------------------------------------------------------------------
#
# An account's signals are evaluated in arrival order, whatever the number of workers: the
# engine claims whole accounts. A signal is an account's head when no older signal of the
# same account is still pending; the engine locks the heads' accounts (skipping those
# another worker holds) and takes those accounts' pending signals in order. A later signal
# is never taken while an earlier one is held elsewhere or waiting out a retry.

RETRY_BASE = timedelta(seconds=1)
RETRY_CAP = timedelta(minutes=5)
MAX_TRANSIENT_ATTEMPTS = 12


def _due(with_retries: bool) -> ColumnElement[bool]:
    # with_retries: leave out the signals waiting out a retry (`:now` is bound at execution).
    pending = Signal.processed_at.is_(None)
    if not with_retries:
        return pending
    return and_(pending, or_(Signal.retry_at.is_(None), Signal.retry_at <= bindparam("now")))


def pending_heads(session: Session, *, limit: int, now: datetime | None = None) -> list[int]:
    """Accounts whose oldest pending signal is due, in the order those signals arrived."""
    params = {"limit": limit, "now": now} if now is not None else {"limit": limit}
    return [account_id for account_id in session.scalars(_heads_query(now is not None), params)
            if account_id is not None]


# The work queue's statements are built once (with `now` or without): every engine pass asks each.
@functools.cache
def _heads_query(with_retries: bool) -> Select[tuple[int | None]]:
    older = aliased(Signal)
    no_older_pending = ~exists().where(
        older.account_id == Signal.account_id, older.processed_at.is_(None),
        or_(older.received_at < Signal.received_at,
            and_(older.received_at == Signal.received_at, older.id < Signal.id)))
    return (select(Signal.account_id)
            .where(_due(with_retries), Signal.account_id.is_not(None), no_older_pending)
            .order_by(Signal.received_at, Signal.id).limit(bindparam("limit")))


def pending_for_accounts(session: Session, *, account_ids: Sequence[int], limit: int) -> list[Signal]:
    """These (locked) accounts' pending signals in arrival order.

    Each account here has a due head (`pending_heads`), and a later signal is tried only
    after the ones before it succeeded, so none of these waits on a retry of its own.
    """
    if not account_ids:
        return []
    return list(session.scalars(_FOR_ACCOUNTS, {"ids": list(account_ids), "limit": limit}))


_FOR_ACCOUNTS = (select(Signal)
                 .where(Signal.processed_at.is_(None), Signal.account_id.in_(bindparam("ids", expanding=True)))
                 .order_by(Signal.received_at, Signal.id).limit(bindparam("limit"))
                 .execution_options(populate_existing=True))


def pending_without_account(session: Session, *, limit: int, now: datetime | None = None) -> list[Signal]:
    """Pending signals of unknown accounts (already in the exception queue); on PostgreSQL, held rows are skipped."""
    params = {"limit": limit, "now": now} if now is not None else {"limit": limit}
    return list(session.scalars(_without_account_query(now is not None, skip_locked(session)), params))


@functools.cache
def _without_account_query(with_retries: bool, skip: bool) -> Select[tuple[Signal]]:
    query = (select(Signal).where(_due(with_retries), Signal.account_id.is_(None))
             .order_by(Signal.received_at, Signal.id).limit(bindparam("limit")))
    return query.with_for_update(skip_locked=True) if skip else query


def pending_signals(session: Session, *, limit: int, now: datetime | None = None) -> list[Signal]:
    """Claim up to `limit` pending signals of whole accounts, oldest first.

    On PostgreSQL the accounts are locked for the transaction (SKIP LOCKED: an account
    another worker holds is left to it, never waited for); SQLite has a single writer.
    """
    heads = pending_heads(session, limit=limit, now=now)
    if heads and skip_locked(session):
        # Read fresh with the lock, so the engine sees the account as committed.
        locked = {account.id for account in session.scalars(_LOCK_HEADS, {"ids": heads})}
        heads = [account_id for account_id in heads if account_id in locked]
    claimed = pending_for_accounts(session, account_ids=heads, limit=limit)
    claimed += pending_without_account(session, limit=max(limit - len(claimed), 0), now=now)
    return sorted(claimed, key=lambda signal: (signal.received_at, signal.id))


_LOCK_HEADS = (select(Account).where(Account.id.in_(bindparam("ids", expanding=True))).order_by(Account.id)
               .with_for_update(skip_locked=True).execution_options(populate_existing=True))


def mark_processed(signal: Signal, at: datetime) -> None:
    """The engine has evaluated this signal; it leaves the work queue."""
    signal.processed_at = at
    signal.retry_at = None


def mark_processed_many(session: Session, processed: Sequence[Signal], at: datetime) -> None:
    """`mark_processed` for a batch, with one UPDATE; the objects are set to match."""
    if not processed:
        return
    ids = [signal.id for signal in processed]
    session.execute(update(Signal).where(among(session, Signal.id, ids)).values(processed_at=at, retry_at=None)
                    .execution_options(synchronize_session=False))
    for signal in processed:
        # As stored, not as a pending change: the UPDATE above wrote it.
        set_committed_value(signal, "processed_at", at)
        set_committed_value(signal, "retry_at", None)


def defer(signal: Signal, *, now: datetime, error: str) -> bool:
    """A transient failure: the signal stays pending and is retried with backoff and jitter.

    Returns False when its retry budget is spent; the caller then treats the failure as
    this signal's own (an exception item) rather than retrying forever.
    """
    signal.attempts += 1
    signal.last_error = error[:200]
    if signal.attempts >= MAX_TRANSIENT_ATTEMPTS:
        return False
    delay = min(RETRY_BASE * (2 ** (signal.attempts - 1)), RETRY_CAP)
    # Jitter spreads retries of signals that failed together (one deadlock, many workers).
    signal.retry_at = now + delay * (0.5 + random.random() / 2)
    return True
