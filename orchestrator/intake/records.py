"""The one record-upsert path: owners, accounts, contacts, deals and tasks from any source.

CRM connectors, the files connector and the bundled sample data all come through
`upsert_records`, so "is this row already here?" is answered the same way everywhere:
by the record's (source, external id) through `ExternalId` first, then by its natural key
(an owner's email, an account's domain, a contact's email or a deal's name within its
account), so a row another source created is found instead of duplicated.

Nothing here commits: the caller's transaction holds a page of records (and, for a sync,
the cursor that follows them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Protocol

from sqlalchemy import delete, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from orchestrator.clock import ensure_utc
from orchestrator.config import Settings
from orchestrator.errors import Invalid
from orchestrator.models import Account, Contact, Deal, ExternalId, Owner, Task, TaskStatus
from orchestrator.models.tasks import OPEN_STATUSES

__all__ = ["KINDS", "CrmStatusHook", "Record", "RecordKind", "UpsertReport", "on_crm_status", "resolve_local_id",
           "upsert_records"]

RecordKind = Literal["owner", "account", "contact", "deal", "task"]
KINDS: tuple[RecordKind, ...] = ("owner", "account", "contact", "deal", "task")
_MAX_PROBLEMS = 50  # a report keeps the first few problems, never an unbounded list

# Fields a source sets when it creates a row but never overwrites later: the engine owns them.
_CREATE_ONLY: Mapping[str, frozenset[str]] = {"account": frozenset({"stage", "stage_entered_at"})}


class CrmStatusHook(Protocol):
    def __call__(self, session: Session, *, settings: Settings, task: Task, status: str, now: datetime) -> bool: ...


# The SLA clock lives in `work`, which sits above intake (work -> delivery -> connectors -> intake):
# it hands its pause/resume in here when imported (every command, the worker and the API import it).
_CRM_STATUS_HOOKS: list[CrmStatusHook] = []


def on_crm_status(hook: CrmStatusHook) -> None:
    """Install what a task record's `crm_status` does (work.sla: pause or resume the SLA clock)."""
    _CRM_STATUS_HOOKS[:] = [hook]


@dataclass(frozen=True)
class Record:
    """One canonical record from a source.

    `fields` uses canonical names (see `_FIELDS`). References (an account's `owner`, a
    contact's `account`) are `{"source": ..., "external_id": ...}`, a plain string (an
    external id of the same source), `{"email": ...}` for owners or `{"domain": ...}` for
    accounts. `also` holds the record's ids in other systems (`{"hubspot": "7001"}`), linked
    as well. An empty `external_id` means the record is matched by its natural key only.
    """

    kind: RecordKind
    source: str
    external_id: str
    fields: Mapping[str, Any]
    deleted: bool = False
    also: Mapping[str, str] = field(default_factory=dict)


@dataclass
class UpsertReport:
    """What an upsert did, per kind: created, updated, unchanged (already there), deleted, skipped."""

    created: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    unchanged: Counter[str] = field(default_factory=Counter)
    deleted: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    external_ids_added: int = 0
    problems: list[str] = field(default_factory=list)  # short lines naming the record and field
    # Records whose ids and natural key name different local rows (two accounts claim one company):
    # kind, source, external_id, the local ids claimed, the domain; ids only, no names or emails.
    conflicts: list[dict[str, Any]] = field(default_factory=list)

    def problem(self, kind: str, text: str) -> None:
        self.skipped[kind] += 1
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(text)

    def merge(self, other: UpsertReport) -> None:
        for mine, theirs in ((self.created, other.created), (self.updated, other.updated),
                             (self.unchanged, other.unchanged), (self.deleted, other.deleted),
                             (self.skipped, other.skipped)):
            mine.update(theirs)
        self.external_ids_added += other.external_ids_added
        self.problems.extend(other.problems[: max(0, _MAX_PROBLEMS - len(self.problems))])
        self.conflicts.extend(other.conflicts[: max(0, _MAX_PROBLEMS - len(self.conflicts))])

    def total(self, counter: Literal["created", "updated", "unchanged", "deleted", "skipped"]) -> int:
        return sum(getattr(self, counter).values())


def upsert_records(
    session: Session,
    *,
    source: str,
    records: Sequence[Record],
    now: datetime,
    update_existing: bool = True,
    settings: Settings | None = None,
) -> UpsertReport:
    """Create or update local rows for `records`; flushes, never commits.

    Kinds are applied in dependency order (owners, accounts, contacts, deals, tasks) whatever
    the input order, and managers are linked once every owner of the batch exists. With
    `update_existing=False` a known record is left exactly as it is (the sample data).
    With `settings`, a task record's `crm_status` pauses or resumes the task's SLA clock
    (`[sla] waiting_statuses`); without, it is ignored.
    A record that cannot be applied (a reference to an unknown account, a bad value) is
    skipped and named in `report.problems`; the rest of the batch goes on.

    Cost per page, not per record: each run of live records of one kind is looked up with a
    few IN queries (its external ids, its references, its natural keys, the rows), applied in
    memory and written with one flush; a deleted record goes one by one. Should the flush
    still meet a unique key (another writer added the same row meanwhile), the run is rolled
    back to its savepoint and applied record by record, as before, with the same report.
    """
    report = UpsertReport()
    by_kind: dict[str, list[Record]] = {kind: [] for kind in KINDS}
    for record in records:
        if record.kind not in by_kind:
            raise Invalid(f"unknown record kind {record.kind!r}; expected one of {', '.join(KINDS)}", field="kind")
        by_kind[record.kind].append(record)
    upserter = _Upserter(session=session, source=source, now=ensure_utc(now), report=report,
                         update_existing=update_existing, settings=settings)
    owners = upserter.apply_many(by_kind["owner"])
    for record, owner in owners:
        if isinstance(owner, Owner) and "manager" in record.fields:
            upserter.link_manager(record, owner)
    for kind in KINDS[1:]:
        if kind == "task":  # few per page, and each may pause or resume an SLA clock: one by one
            for record in by_kind[kind]:
                upserter.apply(record)
        else:
            upserter.apply_many(by_kind[kind])
    session.flush()
    return report


def resolve_local_id(session: Session, *, kind: str, source: str, external_id: str) -> int | None:
    """The local id of the `kind` row known in `source` as `external_id`, if any."""
    return session.scalar(select(ExternalId.local_id).where(
        ExternalId.kind == kind, ExternalId.source == source, ExternalId.external_id == external_id))


# -- per-kind field handling ------------------------------------------------------------------------

def _text(value: Any) -> str | None:
    return None if value is None else str(value).strip() or None


_CENTS = Decimal("0.01")
_MONEY_LIMIT = Decimal(10) ** 12  # Numeric(14, 2)


def _money(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a number")
    if abs(number) >= _MONEY_LIMIT:
        raise ValueError(f"{value!r} is too large for an amount")
    # Held at the column's scale, so the value in memory is the one the database gives back.
    return number.quantize(_CENTS)


def _when(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return ensure_utc(value)
    try:
        return ensure_utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO date-time") from None


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a whole number") from None


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "1", "yes", "y"}:
            return True
        if lowered in {"false", "0", "no", "n", ""}:
            return False
        raise ValueError(f"{value!r} is not true or false")
    return bool(value)


def _mapping(value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if not isinstance(value, Mapping):
        raise ValueError("expected an object")
    return dict(value)


# canonical field -> converter; references (owner, csm, manager, account) are handled apart
_FIELDS: Mapping[str, Mapping[str, Any]] = {
    "owner": {"email": _text, "name": _text, "role": _text, "team": _text, "timezone": _text,
              "working_hours": _mapping, "active": _bool, "max_open_tasks": _int,
              "out_of_office_until": _when},
    "account": {"name": _text, "domain": _text, "segment": _text, "industry": _text, "arr": _money,
                "health": _int, "renewal_date": _when, "stage": _text, "stage_entered_at": _when,
                "churned_at": _when, "attributes": _mapping},
    "contact": {"name": _text, "email": _text, "title": _text, "role": _text, "is_primary": _bool,
                "attributes": _mapping},
    "deal": {"name": _text, "amount": _money, "stage": _text, "kind": _text, "close_date": _when,
             "is_closed": _bool, "is_won": _bool, "attributes": _mapping},
    "task": {"status": _text, "completed_at": _when, "completed_by": _text, "outcome": _text,
             "crm_status": _text},  # the CRM's own status word, for the SLA pause
}
_REFERENCES: Mapping[str, Mapping[str, str]] = {  # field -> kind it points at
    "owner": {},
    "account": {"owner": "owner", "csm": "owner"},
    "contact": {"account": "account"},
    "deal": {"account": "account", "owner": "owner"},
    "task": {},
}
_REQUIRED_ON_CREATE: Mapping[str, tuple[str, ...]] = {
    "owner": ("email", "name", "role"), "account": ("name",), "contact": ("account", "name"),
    "deal": ("account", "name"), "task": (),
}
_MODELS: Mapping[str, type[Any]] = {"owner": Owner, "account": Account, "contact": Contact, "deal": Deal,
                                   "task": Task}
_TASK_STATUSES = {status.value for status in TaskStatus}


class _Skip(Exception):
    """This record cannot be applied; the message names the field."""


class _Conflict(_Skip):
    """The record's ids and natural key point at different rows: applying it would merge or steal."""

    def __init__(self, message: str, *, rows: list[int], domain: str | None) -> None:
        super().__init__(message)
        self.rows, self.domain = rows, domain


@dataclass
class _Upserter:
    session: Session
    source: str
    now: datetime
    report: UpsertReport
    update_existing: bool
    settings: Settings | None = None
    # Prefetched reference lookups of the run being applied (None: look each one up).
    references: dict[tuple[Any, ...], int | None] | None = None

    def apply_many(self, records: Sequence[Record]) -> list[tuple[Record, Any]]:
        """Upsert records of one kind, in order: runs of live records in bulk, deleted ones one by one."""
        applied: list[tuple[Record, Any]] = []
        run: list[Record] = []
        for record in [*records, None]:
            if record is not None and not record.deleted:
                run.append(record)
                continue
            if run:
                applied.extend(self._run(run))
                run = []
            if record is not None:
                applied.append((record, self.apply(record)))
        return applied

    def _run(self, records: list[Record]) -> list[tuple[Record, Any]]:
        outer, self.report = self.report, UpsertReport()
        try:
            try:
                with self.session.begin_nested():
                    applied = _Batch(self, records[0].kind).apply(records)
            except IntegrityError:
                # Someone else wrote one of these rows meanwhile: the careful path, record by record.
                self.report, self.references = UpsertReport(), None
                applied = [(record, self.apply(record)) for record in records]
            outer.merge(self.report)
            return applied
        finally:
            self.report, self.references = outer, None

    def apply(self, record: Record) -> Any:
        """Upsert one record; a problem skips it (reported), never the batch."""
        label = _label(record)
        try:
            with self.session.begin_nested():
                return self._apply(record)
        except _Conflict as exc:
            self.report.problem(record.kind, f"{label}: {exc}")
            self.conflict(record, exc)
        except _Skip as exc:
            self.report.problem(record.kind, f"{label}: {exc}")
        except ValueError as exc:
            self.report.problem(record.kind, f"{label}: {exc}")
        return None

    def conflict(self, record: Record, exc: _Conflict) -> None:
        if len(self.report.conflicts) < _MAX_PROBLEMS:
            self.report.conflicts.append({"kind": record.kind, "source": record.source,
                                          "external_id": record.external_id, "local_ids": exc.rows,
                                          "domain": exc.domain})

    def _apply(self, record: Record) -> Any:
        values = self._values(record)
        if record.kind == "account" and not record.deleted:
            self._check_identity(record, values)
        row = self._find(record, values)
        if record.deleted:
            if row is not None:
                self._delete(record, row)
                self.report.deleted[record.kind] += 1
            return None
        if record.kind == "task":
            return self._apply_task(record, row, values)
        if row is None:
            for name in _REQUIRED_ON_CREATE[record.kind]:
                if values.get(name) is None:
                    raise _Skip(f"{name} is required to create a {record.kind}")
            row = _MODELS[record.kind](**self._create_defaults(record.kind, values))
            self.session.add(row)
            self.session.flush()
            self.report.created[record.kind] += 1
        elif self.update_existing and self._update(record.kind, row, values):
            self.report.updated[record.kind] += 1
        else:
            self.report.unchanged[record.kind] += 1
        self._link(record, row.id)
        return row

    def _values(self, record: Record) -> dict[str, Any]:
        converters = _FIELDS[record.kind]
        references = _REFERENCES[record.kind]
        values: dict[str, Any] = {}
        for name, raw in record.fields.items():
            if name in references:
                values[name] = self._reference(references[name], raw, field_name=name)
            elif name in converters:
                try:
                    values[name] = converters[name](raw)
                except ValueError as exc:
                    raise _Skip(f"{name}: {exc}") from None
            # Unknown fields are ignored: sources send more than Handoff mirrors.
        if record.kind == "task" and values.get("status") not in (None, *_TASK_STATUSES):
            raise _Skip(f"status: {values['status']!r} is not one of {', '.join(sorted(_TASK_STATUSES))}")
        return values

    def _reference(self, kind: str, raw: Any, *, field_name: str) -> int | None:
        if raw is None or raw == "":
            return None
        if isinstance(raw, str):
            raw = {"source": self.source, "external_id": raw}
        if not isinstance(raw, Mapping):
            raise _Skip(f"{field_name}: expected an external id or an object")
        local_id: int | None = None
        key = self._reference_key(kind, raw)
        if self.references is not None and key is not None and key in self.references:
            local_id = self.references[key]
        elif raw.get("external_id"):
            local_id = resolve_local_id(self.session, kind=kind, source=str(raw.get("source") or self.source),
                                        external_id=str(raw["external_id"]))
        elif kind == "owner" and raw.get("email"):
            local_id = self.session.scalar(select(Owner.id).where(Owner.email == str(raw["email"]).strip()))
        elif kind == "account" and raw.get("domain"):
            local_id = self.session.scalar(select(Account.id).where(
                Account.domain == str(raw["domain"]).strip().lower()))
        elif kind == "account" and raw.get("id"):
            local_id = self.session.scalar(select(Account.id).where(Account.id == _int(raw["id"])))
        if local_id is None:
            raise _Skip(f"{field_name}: no {kind} {_describe(raw)}")
        return local_id

    def _reference_key(self, kind: str, raw: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """How `_reference` looks `raw` up, as a key of the prefetched `references`."""
        if raw.get("external_id"):
            return ("external", kind, str(raw.get("source") or self.source), str(raw["external_id"]))
        if kind == "owner" and raw.get("email"):
            return ("email", str(raw["email"]).strip())
        if kind == "account" and raw.get("domain"):
            return ("domain", str(raw["domain"]).strip().lower())
        return None

    def _find(self, record: Record, values: Mapping[str, Any]) -> Any:
        model = _MODELS[record.kind]
        for source, external_id in self._ids(record):
            local_id = resolve_local_id(self.session, kind=record.kind, source=source, external_id=external_id)
            if local_id is not None:
                row = self.session.get(model, local_id)
                if row is not None:
                    return row
        natural = self._natural_key(record, values)
        if natural is None:
            return None
        return self.session.scalars(select(model).where(natural).limit(1)).first()

    def _check_identity(self, record: Record, values: Mapping[str, Any]) -> None:
        """One account per company across CRMs: its ids (own and `also`) and its domain must agree."""
        rows: set[int] = set()
        for source, external_id in self._ids(record):
            local_id = resolve_local_id(self.session, kind="account", source=source, external_id=external_id)
            if local_id is not None:
                rows.add(local_id)
        domain = values.get("domain")
        if domain:
            owner_of_domain = self.session.scalar(select(Account.id).where(Account.domain == str(domain).lower()))
            if owner_of_domain is not None:
                rows.add(owner_of_domain)
        if len(rows) > 1:
            raise _Conflict(f"its ids and domain belong to different accounts ({', '.join(map(str, sorted(rows)))})",
                            rows=sorted(rows), domain=str(domain).lower() if domain else None)

    def _natural_key(self, record: Record, values: Mapping[str, Any]) -> Any:
        if record.kind == "owner" and values.get("email"):
            return Owner.email == values["email"]
        if record.kind == "account" and values.get("domain"):
            return Account.domain == values["domain"].lower()
        if record.kind == "contact" and values.get("account") and values.get("email"):
            return (Contact.account_id == values["account"]) & (Contact.email == values["email"])
        if record.kind == "deal" and values.get("account") and values.get("name"):
            return (Deal.account_id == values["account"]) & (Deal.name == values["name"])
        if record.kind == "task" and record.external_id:
            # Tasks Handoff created carry the CRM's id once delivered.
            return (Task.crm_id == record.external_id) & (Task.crm_source == record.source)
        return None

    def _ids(self, record: Record) -> list[tuple[str, str]]:
        ids = [(record.source, record.external_id)] if record.external_id else []
        ids.extend((source, str(external_id)) for source, external_id in record.also.items() if external_id)
        return ids

    def _create_defaults(self, kind: str, values: Mapping[str, Any]) -> dict[str, Any]:
        row = {_column(kind, name): value for name, value in values.items() if value is not None}
        if kind == "account":
            row.setdefault("stage", "acquire")
            row.setdefault("stage_entered_at", self.now)
        if kind == "owner":
            row.setdefault("working_hours", {})
        return row

    def _update(self, kind: str, row: Any, values: Mapping[str, Any]) -> bool:
        changed = False
        for name, value in values.items():
            if name in _CREATE_ONLY.get(kind, frozenset()):
                continue
            column = _column(kind, name)
            if getattr(row, column) != value:
                setattr(row, column, value)
                changed = True
        return changed

    def _apply_task(self, record: Record, row: Task | None, values: Mapping[str, Any]) -> Task | None:
        # Tasks are Handoff's own: a source only reports back on them (done or cancelled in
        # the CRM); a CRM task Handoff did not create is not mirrored.
        if row is None:
            self.report.skipped["task"] += 1
            return None
        changed = False
        if self.update_existing and row.status in OPEN_STATUSES and values.get("status") not in (None, row.status):
            row.status = values["status"]
            row.completed_at = values.get("completed_at") or self.now
            row.completed_by = values.get("completed_by") or row.completed_by
            row.outcome = values.get("outcome") or row.outcome
            changed = True
        elif self.settings is not None and row.status in OPEN_STATUSES and values.get("crm_status"):
            changed = _CRM_STATUS_HOOKS[0](self.session, settings=self.settings, task=row,
                                           status=values["crm_status"], now=self.now) if _CRM_STATUS_HOOKS else False
        (self.report.updated if changed else self.report.unchanged)["task"] += 1
        self._link(record, row.id)
        return row

    def _delete(self, record: Record, row: Any) -> None:
        # Only rows nothing else depends on are removed; the others are retired, so journeys,
        # signals and the audit trail that name them stay readable.
        if record.kind == "contact":
            self.session.execute(delete(ExternalId).where(ExternalId.kind == "contact",
                                                          ExternalId.local_id == row.id))
            self.session.delete(row)
        elif record.kind == "owner":
            row.active = False
        elif record.kind == "task":
            if row.status in OPEN_STATUSES:
                row.status = TaskStatus.CANCELLED
                row.completed_at = self.now
        else:  # account, deal: forget the link to this source, note when it went away
            row.attributes = {**(row.attributes or {}),
                              "deleted_in": {**(row.attributes or {}).get("deleted_in", {}),
                                             record.source: self.now.isoformat()}}
            self.session.execute(delete(ExternalId).where(
                ExternalId.kind == record.kind, ExternalId.local_id == row.id, ExternalId.source == record.source))
        self.session.flush()

    def _link(self, record: Record, local_id: int) -> None:
        for source, external_id in self._ids(record):
            known = self.session.scalar(select(ExternalId.id).where(
                ExternalId.kind == record.kind, ExternalId.local_id == local_id, ExternalId.source == source))
            taken = self.session.scalar(select(ExternalId.id).where(
                ExternalId.kind == record.kind, ExternalId.source == source, ExternalId.external_id == external_id))
            if known is None and taken is None:
                self.session.add(ExternalId(kind=record.kind, local_id=local_id, source=source,
                                            external_id=external_id))
                self.report.external_ids_added += 1
        self.session.flush()

    def link_manager(self, record: Record, owner: Owner) -> None:
        """Managers are people too, so they are linked once every owner of the batch exists."""
        try:
            manager_id = self._reference("owner", record.fields.get("manager"), field_name="manager")
        except _Skip as exc:
            if len(self.report.problems) < _MAX_PROBLEMS:
                self.report.problems.append(f"owner {record.source}:{record.external_id}: {exc}")
            return
        if manager_id is None or manager_id == owner.id:
            return
        if owner.manager_id is None or (self.update_existing and owner.manager_id != manager_id):
            owner.manager_id = manager_id



_CHUNK = 500  # values per IN list: well inside SQLite's and PostgreSQL's parameter limits


def _chunks(values: Sequence[Any]) -> list[Sequence[Any]]:
    return [values[start:start + _CHUNK] for start in range(0, len(values), _CHUNK)]


class _Batch:
    """One run of live records of one kind: looked up with a few IN queries, applied in memory, one flush.

    It answers every question `_Upserter._apply` asks of the database (which row has this
    external id, this email or domain, which sources a row is linked to) from maps prefetched
    for the whole run and kept up to date as the run creates, updates and links rows, so the
    result is the one record-by-record application gives, in the same order.
    """

    def __init__(self, upserter: _Upserter, kind: str) -> None:
        self.up, self.kind, self.session = upserter, kind, upserter.session
        self.model = _MODELS[kind]
        self.external: dict[tuple[str, str], Any] = {}  # (source, external id) -> local id, or a new row
        self.rows: dict[int, Any] = {}  # local id -> row
        self.linked: set[tuple[Any, str]] = set()  # (row key, source) already linked
        self.natural: dict[Any, Any] = {}  # natural key -> row
        self.pending: list[tuple[Any, str, str]] = []  # (row, source, external id) to link after the flush

    # -- prefetch -----------------------------------------------------------------------------

    def _prefetch_external(self, records: Sequence[Record]) -> None:
        wanted = {pair for record in records for pair in self.up._ids(record)}
        sources = sorted({source for source, _ in wanted})
        for chunk in _chunks(sorted({external_id for _, external_id in wanted})):
            for source, external_id, local_id in self.session.execute(
                    select(ExternalId.source, ExternalId.external_id, ExternalId.local_id).where(
                        ExternalId.kind == self.kind, ExternalId.source.in_(sources),
                        ExternalId.external_id.in_(chunk))):
                if (source, external_id) in wanted:
                    self.external[(source, external_id)] = local_id

    def _prefetch_references(self, records: Sequence[Record]) -> None:
        keys: set[tuple[Any, ...]] = set()
        for record in records:
            for name, kind in _REFERENCES[self.kind].items():
                raw = record.fields.get(name)
                if raw is None or raw == "":
                    continue
                if isinstance(raw, str):
                    raw = {"source": self.up.source, "external_id": raw}
                key = self.up._reference_key(kind, raw) if isinstance(raw, Mapping) else None
                if key is not None:
                    keys.add(key)
        found: dict[tuple[Any, ...], int | None] = dict.fromkeys(keys)
        external: dict[str, set[tuple[str, str]]] = {}
        for key in keys:
            if key[0] == "external":
                external.setdefault(key[1], set()).add((key[2], key[3]))
        for kind, pairs in external.items():
            sources = sorted({source for source, _ in pairs})
            for chunk in _chunks(sorted({external_id for _, external_id in pairs})):
                for source, external_id, local_id in self.session.execute(
                        select(ExternalId.source, ExternalId.external_id, ExternalId.local_id).where(
                            ExternalId.kind == kind, ExternalId.source.in_(sources),
                            ExternalId.external_id.in_(chunk))):
                    if (source, external_id) in pairs:
                        found[("external", kind, source, external_id)] = local_id
        for tag, column, model in (("email", Owner.email, Owner), ("domain", Account.domain, Account)):
            values = sorted({key[1] for key in keys if key[0] == tag})
            for chunk in _chunks(values):
                for value, local_id in self.session.execute(select(column, model.id).where(column.in_(chunk))):
                    found[(tag, value)] = local_id
        self.up.references = found

    def _natural_key(self, values: Mapping[str, Any]) -> Any:
        if self.kind == "owner":
            return values.get("email")
        if self.kind == "account":
            return values["domain"].lower() if values.get("domain") else None
        if self.kind == "contact" and values.get("account") and values.get("email"):
            return (values["account"], values["email"])
        if self.kind == "deal" and values.get("account") and values.get("name"):
            return (values["account"], values["name"])
        return None

    def _row_natural_key(self, row: Any) -> Any:
        if self.kind == "owner":
            return row.email
        if self.kind == "account":
            return row.domain.lower() if row.domain else None
        if self.kind == "contact":
            return (row.account_id, row.email) if row.account_id and row.email else None
        return (row.account_id, row.name) if row.account_id and row.name else None

    def _prefetch_rows(self, prepared: Sequence[tuple[Record, dict[str, Any]]]) -> None:
        ids = sorted({v for v in self.external.values() if isinstance(v, int)})
        for chunk in _chunks(ids):
            for row in self.session.scalars(select(self.model).where(self.model.id.in_(chunk))):
                self.rows[row.id] = row
        keys = {key for _, values in prepared if (key := self._natural_key(values)) is not None}
        if keys:
            if self.kind in ("owner", "account"):
                column = Owner.email if self.kind == "owner" else Account.domain
                condition = lambda chunk: column.in_(chunk)  # noqa: E731
            else:
                second = Contact.email if self.kind == "contact" else Deal.name
                first = Contact.account_id if self.kind == "contact" else Deal.account_id
                condition = lambda chunk: tuple_(first, second).in_(chunk)  # noqa: E731
            for chunk in _chunks(sorted(keys, key=repr)):
                for row in self.session.scalars(select(self.model).where(condition(chunk)).order_by(self.model.id)):
                    self.rows[row.id] = row
                    key = self._row_natural_key(row)
                    if key in keys:
                        self.natural.setdefault(key, row)
        for chunk in _chunks(sorted(self.rows)):
            for local_id, source in self.session.execute(select(ExternalId.local_id, ExternalId.source).where(
                    ExternalId.kind == self.kind, ExternalId.local_id.in_(chunk))):
                self.linked.add((local_id, source))

    # -- apply --------------------------------------------------------------------------------

    @staticmethod
    def _key(handle: Any) -> Any:
        """A row's key in the maps: its id, or the row itself until the flush gives it one."""
        if isinstance(handle, int):
            return handle
        return handle.id if handle.id is not None else handle

    def apply(self, records: Sequence[Record]) -> list[tuple[Record, Any]]:
        self._prefetch_external(records)
        self._prefetch_references(records)
        prepared: list[tuple[Record, dict[str, Any] | Exception]] = []
        for record in records:
            try:
                prepared.append((record, self.up._values(record)))
            except (_Skip, ValueError) as exc:
                prepared.append((record, exc))  # reported in its turn, so problems keep the page's order
        self._prefetch_rows([(r, v) for r, v in prepared if isinstance(v, dict)])
        applied: list[tuple[Record, Any]] = []
        for record, values in prepared:
            row = None
            try:
                if isinstance(values, Exception):
                    raise values
                row = self._apply_one(record, values)
            except _Conflict as exc:
                self.up.report.problem(record.kind, f"{_label(record)}: {exc}")
                self.up.conflict(record, exc)
            except (_Skip, ValueError) as exc:
                self.up.report.problem(record.kind, f"{_label(record)}: {exc}")
            applied.append((record, row))
        self.session.flush()
        if self.pending:
            self.session.add_all([ExternalId(kind=self.kind, local_id=row.id, source=source, external_id=external_id)
                                  for row, source, external_id in self.pending])
            self.up.report.external_ids_added += len(self.pending)
            self.session.flush()
        return applied

    def _find(self, record: Record, values: Mapping[str, Any]) -> Any:
        for pair in self.up._ids(record):
            handle = self.external.get(pair)
            row = self.rows.get(handle) if isinstance(handle, int) else handle
            if row is not None:
                return row
        key = self._natural_key(values)
        return self.natural.get(key) if key is not None else None

    def _check_identity(self, record: Record, values: Mapping[str, Any]) -> None:
        claimed = [self.external[pair] for pair in self.up._ids(record) if pair in self.external]
        domain = values.get("domain")
        if domain and (holder := self.natural.get(str(domain).lower())) is not None:
            claimed.append(holder)
        if len({self._key(handle) for handle in claimed}) > 1:
            self.session.flush()  # rows new in this run get their ids, for the report
            rows = sorted({handle if isinstance(handle, int) else handle.id for handle in claimed})
            raise _Conflict(f"its ids and domain belong to different accounts ({', '.join(map(str, rows))})",
                            rows=rows, domain=str(domain).lower() if domain else None)

    def _apply_one(self, record: Record, values: dict[str, Any]) -> Any:
        if self.kind == "account":
            self._check_identity(record, values)
        row = self._find(record, values)
        if row is None:
            for name in _REQUIRED_ON_CREATE[self.kind]:
                if values.get(name) is None:
                    raise _Skip(f"{name} is required to create a {self.kind}")
            row = self.model(**self.up._create_defaults(self.kind, values))
            self.session.add(row)
            self.up.report.created[self.kind] += 1
        else:
            before = self._row_natural_key(row)
            if self.up.update_existing and self.up._update(self.kind, row, values):
                self.up.report.updated[self.kind] += 1
                if before is not None and self.natural.get(before) is row:
                    del self.natural[before]
            else:
                self.up.report.unchanged[self.kind] += 1
        key = self._row_natural_key(row)
        if key is not None:
            self.natural.setdefault(key, row)
        self._link(record, row)
        return row

    def _link(self, record: Record, row: Any) -> None:
        for source, external_id in self.up._ids(record):
            if (self._key(row), source) in self.linked or (source, external_id) in self.external:
                continue
            self.pending.append((row, source, external_id))
            self.linked.add((self._key(row), source))
            self.external[(source, external_id)] = row.id if row.id is not None else row


def _column(kind: str, name: str) -> str:
    if name in ("owner", "csm", "account", "manager"):
        return f"{name}_id"
    return name


def _label(record: Record) -> str:
    return f"{record.kind} {record.source}:{record.external_id or '(no id)'}"


def _describe(raw: Mapping[str, Any]) -> str:
    # Names the reference without echoing more than its keys' values of an id kind.
    if raw.get("external_id"):
        return f"{raw.get('source', '')}:{raw['external_id']}".lstrip(":")
    for key in ("email", "domain", "id"):
        if raw.get(key):
            return f"{key} {raw[key]}"
    return "given"
