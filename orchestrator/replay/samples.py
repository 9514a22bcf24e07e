"""Bundled sample data: a small revenue team, their accounts, and a month of signals.

The demo (`handoff demo`), `handoff playbooks simulate --sample` and the benchmark all
start from this data. It ships inside the package (`orchestrator/sample_data/`), so a
plain `pip install` carries it.

Loading is idempotent by the records' CRM ids: every owner, account, contact and deal
carries an external id, and a record whose external id is already known is left as it
is. Running the loader twice therefore adds nothing the second time, and never undoes
what the engine has since changed on those rows (an account's stage, say).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.clock import ensure_utc
from orchestrator.models import Account, Contact, Deal, ExternalId, Owner

__all__ = ["SampleReport", "load_sample_data", "sample_accounts", "sample_config_path", "sample_decisions",
           "sample_owners",
           "sample_signals", "sample_signals_text"]

_KINDS = ("owner", "account", "contact", "deal")
M = TypeVar("M", Owner, Account, Contact, Deal)


@dataclass
class SampleReport:
    """How many sample records were created and how many were already there, per kind."""

    created: Counter[str] = field(default_factory=Counter)
    existing: Counter[str] = field(default_factory=Counter)
    external_ids_added: int = 0

    @property
    def total_created(self) -> int:
        return sum(self.created.values())

    def __str__(self) -> str:
        parts = [f"{self.created[kind]} {kind}s created, {self.existing[kind]} already there"
                 for kind in _KINDS if self.created[kind] or self.existing[kind]]
        return "; ".join(parts) or "no sample records"


# -- reading the bundled files ------------------------------------------------------------------

def sample_config_path() -> Path:
    """The sample team's handoff.toml (exception owners, calendar, caps)."""
    return Path(str(resources.files("orchestrator").joinpath("sample_data", "handoff.toml")))


def _read(name: str) -> str:
    return resources.files("orchestrator").joinpath("sample_data", name).read_text(encoding="utf-8")


def sample_owners() -> list[dict[str, Any]]:
    """The sample people: AEs, CSMs, SDRs, a CS lead and managers, as stored in owners.json."""
    return json.loads(_read("owners.json"))


def sample_accounts() -> list[dict[str, Any]]:
    """The sample accounts, each with its contacts and deals nested."""
    return json.loads(_read("accounts.json"))


def sample_signals_text() -> str:
    """The sample signals as JSON lines, exactly as `handoff signals ingest` reads them."""
    return _read("signals.jsonl")


def sample_signals() -> list[dict[str, Any]]:
    """A few weeks of signals from 2026-10-05, in the order they occurred."""
    rows = [json.loads(line) for line in sample_signals_text().splitlines() if line.strip()]
    return sorted(rows, key=lambda row: _when(row["occurred_at"]))


def sample_decisions() -> list[dict[str, Any]]:
    """What the sample reps do with their tasks during the demo: when, on which account's step, which outcome.

    Each entry names an account by domain and a playbook step id; an entry with
    `"override": true` overrides an on_the_loop step instead of closing a task.
    """
    return sorted(json.loads(_read("decisions.json")), key=lambda row: _when(row["at"]))


# -- loading ------------------------------------------------------------------------------------

def load_sample_data(*, session: Session) -> SampleReport:
    """Add the sample owners, accounts, contacts and deals that are not in the database yet.

    Works inside the caller's transaction (flushes, never commits).
    """
    report = SampleReport()
    owners = sample_owners()
    by_email: dict[str, Owner] = {}
    for record in owners:
        owner = _find(session, Owner, "owner", record, Owner.email == record["email"])
        if owner is None:
            owner = Owner(
                email=record["email"], name=record["name"], role=record["role"], team=record.get("team"),
                timezone=record.get("timezone"), working_hours=record.get("working_hours", {}),
                active=record.get("active", True), max_open_tasks=record.get("max_open_tasks"),
                out_of_office_until=_when_or_none(record.get("out_of_office_until")))
            _add(session, owner, "owner", report)
        else:
            report.existing["owner"] += 1
        _link(session, "owner", owner.id, record, report)
        by_email[record["email"]] = owner
    # Managers are people too, so they can only be linked once everybody exists.
    for record in owners:
        owner = by_email[record["email"]]
        manager = record.get("manager")
        if manager and owner.manager_id is None:
            owner.manager_id = by_email[manager].id

    for record in sample_accounts():
        account = _find(session, Account, "account", record, Account.domain == record["domain"])
        if account is None:
            account = Account(
                name=record["name"], domain=record["domain"], segment=record.get("segment"),
                industry=record.get("industry"), arr=_money(record.get("arr")), health=record.get("health"),
                renewal_date=_when_or_none(record.get("renewal_date")),
                owner_id=_owner_id(by_email, record.get("owner")), csm_id=_owner_id(by_email, record.get("csm")),
                stage=record.get("stage", "acquire"),
                stage_entered_at=_when(record["stage_entered_at"]),
                attributes=dict(record.get("attributes", {})))
            _add(session, account, "account", report)
        else:
            report.existing["account"] += 1
        _link(session, "account", account.id, record, report)

        for item in record.get("contacts", []):
            contact = _find(session, Contact, "contact", item,
                            (Contact.account_id == account.id) & (Contact.email == item.get("email")))
            if contact is None:
                contact = Contact(account_id=account.id, name=item["name"], email=item.get("email"),
                                  title=item.get("title"), role=item.get("role"),
                                  is_primary=item.get("is_primary", False),
                                  attributes=dict(item.get("attributes", {})))
                _add(session, contact, "contact", report)
            else:
                report.existing["contact"] += 1
            _link(session, "contact", contact.id, item, report)

        for item in record.get("deals", []):
            deal = _find(session, Deal, "deal", item,
                         (Deal.account_id == account.id) & (Deal.name == item["name"]))
            if deal is None:
                deal = Deal(account_id=account.id, name=item["name"], amount=_money(item.get("amount")),
                            stage=item.get("stage"), kind=item.get("kind", "new"),
                            close_date=_when_or_none(item.get("close_date")),
                            is_closed=item.get("is_closed", False), is_won=item.get("is_won", False),
                            owner_id=_owner_id(by_email, item.get("owner")),
                            attributes=dict(item.get("attributes", {})))
                _add(session, deal, "deal", report)
            else:
                report.existing["deal"] += 1
            _link(session, "deal", deal.id, item, report)
    session.flush()
    return report


def _find(session: Session, model: type[M], kind: str, record: Mapping[str, Any], natural: Any) -> M | None:
    """The row this record already is: by any of its external ids first, then by its natural key."""
    for source, external_id in record.get("external_ids", {}).items():
        local_id = session.scalar(select(ExternalId.local_id).where(
            ExternalId.kind == kind, ExternalId.source == source, ExternalId.external_id == external_id))
        if local_id is not None:
            row = session.get(model, local_id)
            if row is not None:
                return row
    # A natural key (email, domain, name) catches rows a connector synced before the
    # sample data was loaded, so loading never trips a unique constraint.
    return session.scalars(select(model).where(natural).limit(1)).first()


def _add(session: Session, row: Any, kind: str, report: SampleReport) -> None:
    session.add(row)
    session.flush()
    report.created[kind] += 1


def _link(session: Session, kind: str, local_id: int, record: Mapping[str, Any], report: SampleReport) -> None:
    for source, external_id in record.get("external_ids", {}).items():
        known = session.scalar(select(ExternalId.id).where(
            ExternalId.kind == kind, ExternalId.local_id == local_id, ExternalId.source == source))
        taken = session.scalar(select(ExternalId.id).where(
            ExternalId.kind == kind, ExternalId.source == source, ExternalId.external_id == external_id))
        if known is None and taken is None:
            session.add(ExternalId(kind=kind, local_id=local_id, source=source, external_id=external_id))
            report.external_ids_added += 1
    session.flush()


def _owner_id(by_email: Mapping[str, Owner], email: str | None) -> int | None:
    return by_email[email].id if email else None


def _money(value: Any) -> Decimal | None:
    return Decimal(str(value)) if value is not None else None


def _when(text: str) -> datetime:
    return ensure_utc(datetime.fromisoformat(text))


def _when_or_none(text: str | None) -> datetime | None:
    return _when(text) if text else None
