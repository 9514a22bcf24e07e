"""Incremental pull: SOQL per object on SystemModstamp with an overlap window, records and derived signals.

Each object keeps its own cursor, `{"since": <the latest SystemModstamp seen>}`; the next pull asks
for `SystemModstamp >= since - overlap`, so a change committed late by a long transaction (its
stamp earlier than rows we already saw) is still caught. Rows seen twice are harmless: records
upsert, and every derived signal's dedupe key is built from the row's Id and SystemModstamp.
Deletions come through `queryAll` (deleted rows carry `IsDeleted = true`). Every SOQL statement is
built with `format_soql`; field names come from the validated configuration and `describe`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

from simple_salesforce import format_soql

from connectors.base import Page, Record
from connectors.salesforce.client import SalesforceApi
from connectors.salesforce.config import DEFAULT_COMPLETED_STATUSES, SF_OBJECTS, field_map

SOURCE = "salesforce"
# Order matters: owners before the accounts they own, accounts before contacts and deals, deals
# before the history whose signals name them.
RECORD_OBJECTS = ("owner", "account", "contact", "deal")
SIGNAL_OBJECTS = ("OpportunityHistory", "AccountHistory", "Task")
COLUMNS = {
    "owner": {"email", "name", "role", "team", "timezone", "active", "manager"},
    "account": {"name", "domain", "segment", "industry", "arr", "health", "renewal_date", "owner", "csm"},
    "contact": {"account", "name", "email", "title", "role", "is_primary"},
    "deal": {"account", "name", "amount", "stage", "kind", "close_date", "is_closed", "is_won", "owner"},
}
_TASK_KEY = re.compile(r"^task:(\d+):")


def parse_stamp(text: str) -> datetime:
    """Salesforce's `2026-12-02T05:24:49.083+0000` (or ISO with a colon or Z) as aware UTC."""
    text = text.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    return datetime.fromisoformat(text).astimezone(UTC)


def _stamp_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


class Puller:
    """One pull: yields pages in dependency order, one per Salesforce result page."""

    def __init__(self, *, api: SalesforceApi, config: Mapping[str, Any], now: datetime) -> None:
        self.api = api
        self.config = config
        self.now = now
        self.overlap = timedelta(seconds=int(config["overlap_seconds"]))
        self._calls_reported = api.calls
        self._stage_kinds: dict[str, tuple[bool, bool]] | None = None

    def _calls(self) -> int:
        spent, self._calls_reported = self.api.calls - self._calls_reported, self.api.calls
        return spent

    # -- entry point ------------------------------------------------------------------------------

    def pages(self, cursors: Mapping[str, Mapping[str, Any]], *, full: bool) -> Iterator[Page]:
        for kind in RECORD_OBJECTS:
            sobject = SF_OBJECTS[kind]
            since = None if full else _since(cursors.get(sobject))
            yield from self._record_pages(kind, sobject, since)
        for sobject in SIGNAL_OBJECTS:
            # Signals describe news: history from before Handoff was connected is not replayed as
            # events (a full resync re-reads records, not old signals).
            since = _since(cursors.get(sobject)) or (self.now - timedelta(days=int(self.config["history_days"])))
            yield from self._signal_pages(sobject, since)
        if field_map(self.config, "account").get("renewal_date"):
            yield from self._renewal_pages()

    # -- records ----------------------------------------------------------------------------------

    def _record_pages(self, kind: str, sobject: str, since: datetime | None) -> Iterator[Page]:
        mapping = field_map(self.config, kind)
        select = ["Id", "IsDeleted", "SystemModstamp", *sorted(set(mapping.values()))]
        if kind == "owner":
            select += ["UserRole.Name", "Profile.Name"]
        statement = _select(select, sobject, since, self.overlap)
        for raw in self.api.query_pages(statement, include_deleted=since is not None):
            rows = raw["records"]
            records = [self._record(kind, mapping, row) for row in rows]
            yield Page(records=[r for r in records if r is not None], signals=[], cursor=_cursor(rows, since),
                       api_calls=self._calls(), object_type=sobject)

    def _record(self, kind: str, mapping: Mapping[str, str], row: Mapping[str, Any]) -> Record | None:
        if row.get("IsDeleted"):
            return Record(kind=kind, source=SOURCE, external_id=row["Id"], fields={}, deleted=True)  # type: ignore[arg-type]
        values: dict[str, Any] = {}
        attributes: dict[str, Any] = {}
        for canonical, remote in mapping.items():
            value = row.get(remote)
            if canonical in COLUMNS[kind]:
                values[canonical] = value
            else:
                attributes[canonical] = value
        if kind == "account":
            values["domain"] = _domain(values.get("domain"))
            if values.get("health") is not None:
                values["health"] = int(round(float(values["health"])))
            if values.get("renewal_date"):
                values["renewal_date"] = _midnight(values["renewal_date"])
        elif kind == "deal":
            values["kind"] = _deal_kind(values.get("kind"))
            if values.get("close_date"):
                values["close_date"] = _midnight(values["close_date"])
        elif kind == "owner":
            values["role"] = self._role(row)
            if not values.get("email"):
                return None  # integration and automated users have no mailbox: not people to assign
        if attributes:
            values["attributes"] = attributes
        return Record(kind=kind, source=SOURCE, external_id=row["Id"],  # type: ignore[arg-type]
                      fields={k: v for k, v in values.items() if k != "owner" or v})

    def _role(self, row: Mapping[str, Any]) -> str:
        role_map: Mapping[str, str] = self.config.get("role_map") or {}
        for relation in ("UserRole", "Profile"):
            name = (row.get(relation) or {}).get("Name")
            if name and name in role_map:
                return role_map[name]
        return str(self.config["default_role"])

    # -- signals ----------------------------------------------------------------------------------

    def _signal_pages(self, sobject: str, since: datetime) -> Iterator[Page]:
        if sobject == "OpportunityHistory":
            select = ["Id", "IsDeleted", "SystemModstamp", "CreatedDate", "OpportunityId", "StageName", "Amount",
                      "CloseDate", "Opportunity.AccountId"]
            derive: Callable[[Sequence[Mapping[str, Any]]], list[dict[str, Any]]] = self._stage_signals
            stamp = "SystemModstamp"
        elif sobject == "AccountHistory":
            # Field history has no SystemModstamp: CreatedDate is its change time.
            select = ["Id", "IsDeleted", "CreatedDate", "AccountId", "Field", "DataType", "OldValue", "NewValue"]
            derive, stamp = self._owner_signals, "CreatedDate"
        else:
            key_field = str(self.config["task_external_id_field"])
            select = ["Id", "IsDeleted", "SystemModstamp", "Status", "IsClosed", "WhatId", key_field, "Owner.Email"]
            derive, stamp = self._task_signals, "SystemModstamp"
        statement = _select(select, sobject, since, self.overlap, stamp=stamp, extra=self._extra_where(sobject))
        for raw in self.api.query_pages(statement, include_deleted=False):
            rows = raw["records"]
            records = self._open_tasks(rows) if sobject == "Task" else []
            yield Page(records=records, signals=derive(rows), cursor=_cursor(rows, since, stamp=stamp),
                       api_calls=self._calls(), object_type=sobject)

    def _open_tasks(self, rows: Sequence[Mapping[str, Any]]) -> list[Record]:
        """Handoff's open Tasks with the status a rep set: a waiting status pauses the SLA clock."""
        return [Record(kind="task", source=SOURCE, external_id=row["Id"], fields={"crm_status": row["Status"]})
                for row in rows if not row.get("IsDeleted") and not row.get("IsClosed") and row.get("Status")]

    def _extra_where(self, sobject: str) -> str:
        if sobject == "AccountHistory":
            return format_soql("Field = {} AND DataType = {}", "Owner", "EntityId")
        if sobject == "Task":
            # Open ones too: their status may say the rep is waiting on the customer.
            return format_soql("{field:literal} != null", field=self.config["task_external_id_field"])
        return ""

    def _stage_kinds_by_name(self) -> dict[str, tuple[bool, bool]]:
        if self._stage_kinds is None:
            rows = [row for page in self.api.query_pages(
                format_soql("SELECT ApiName, IsClosed, IsWon FROM OpportunityStage"), include_deleted=False)
                for row in page["records"]]
            self._stage_kinds = {row["ApiName"]: (bool(row["IsClosed"]), bool(row["IsWon"])) for row in rows}
        return self._stage_kinds

    def _previous_stages(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, str | None]:
        """History row id -> the opportunity's stage just before it (None for its first row)."""
        opportunity_ids = sorted({row["OpportunityId"] for row in rows})
        history: dict[str, list[tuple[str, str, str]]] = {}
        statement = format_soql("SELECT Id, OpportunityId, StageName, CreatedDate FROM OpportunityHistory "
                                "WHERE OpportunityId IN {} ORDER BY CreatedDate, Id", opportunity_ids)
        for page in self.api.query_pages(statement, include_deleted=False):
            for row in page["records"]:
                history.setdefault(row["OpportunityId"], []).append((row["CreatedDate"], row["Id"], row["StageName"]))
        previous: dict[str, str | None] = {}
        for entries in history.values():
            entries.sort(key=lambda entry: (parse_stamp(entry[0]), entry[1]))
            for index, (_, row_id, _) in enumerate(entries):
                previous[row_id] = entries[index - 1][2] if index else None
        return previous

    def _stage_signals(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        live = [row for row in rows if not row.get("IsDeleted") and (row.get("Opportunity") or {}).get("AccountId")]
        if not live:
            return []
        kinds = self._stage_kinds_by_name()
        previous = self._previous_stages(live)
        signals: list[dict[str, Any]] = []
        for row in live:
            stage = row["StageName"]
            before = previous.get(row["Id"])
            if before == stage:
                continue  # an amount or date change: history rows are written for those too
            base = {"account": {"source": SOURCE, "external_id": row["Opportunity"]["AccountId"]},
                    "deal": {"source": SOURCE, "external_id": row["OpportunityId"]},
                    "occurred_at": _iso(row["CreatedDate"])}
            payload = {"stage": stage, "from_stage": before, "amount": row.get("Amount"),
                       "close_date": row.get("CloseDate")}
            signals.append({**base, "type": "deal.stage_changed", "payload": payload,
                            "dedupe_key": _dedupe(row, "deal.stage_changed")})
            closed, won = kinds.get(stage, (False, False))
            if closed:
                kind = "deal.closed_won" if won else "deal.closed_lost"
                signals.append({**base, "type": kind, "payload": payload, "dedupe_key": _dedupe(row, kind)})
        return signals

    def _owner_signals(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [{"type": "owner.changed", "account": {"source": SOURCE, "external_id": row["AccountId"]},
                 "occurred_at": _iso(row["CreatedDate"]),
                 "payload": {"from_owner": {"source": SOURCE, "external_id": row.get("OldValue")},
                             "to_owner": {"source": SOURCE, "external_id": row.get("NewValue")}},
                 "dedupe_key": _dedupe(row, "owner.changed", stamp="CreatedDate")}
                for row in rows if not row.get("IsDeleted") and row.get("AccountId")]

    def _task_signals(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        outcomes: Mapping[str, str] = {**DEFAULT_COMPLETED_STATUSES, **(self.config.get("completed_statuses") or {})}
        key_field = str(self.config["task_external_id_field"])
        signals = []
        for row in rows:
            if row.get("IsDeleted") or not row.get("IsClosed") or not row.get("WhatId"):
                continue
            payload: dict[str, Any] = {"crm_id": row["Id"], "status": row.get("Status"),
                                       "actor": (row.get("Owner") or {}).get("Email") or "salesforce"}
            if row.get("Status") in outcomes:
                payload["outcome"] = outcomes[row["Status"]]
            match = _TASK_KEY.match(str(row.get(key_field) or ""))
            if match:
                payload["task_id"] = int(match.group(1))
            signals.append({"type": "task.completed", "account": {"source": SOURCE, "external_id": row["WhatId"]},
                            "occurred_at": _iso(row["SystemModstamp"]), "payload": payload,
                            "dedupe_key": _dedupe(row, "task.completed")})
        return signals

    def _renewal_pages(self) -> Iterator[Page]:
        field = field_map(self.config, "account")["renewal_date"]
        today = self.now.date()
        horizon = today + timedelta(days=int(self.config["renewal_days"]))
        statement = format_soql("SELECT Id, {field:literal} FROM Account WHERE {field:literal} >= {today} "
                                "AND {field:literal} <= {horizon} ORDER BY Id",
                                field=field, today=today, horizon=horizon)
        for raw in self.api.query_pages(statement, include_deleted=False):
            signals = []
            for row in raw["records"]:
                renewal = date.fromisoformat(str(row[field])[:10])
                # One signal per account and renewal date: a moved renewal date is news again.
                signals.append({"type": "renewal.upcoming", "account": {"source": SOURCE, "external_id": row["Id"]},
                                "occurred_at": self.now.isoformat(),
                                "payload": {"renewal_date": renewal.isoformat(),
                                            "days_to_renewal": (renewal - today).days},
                                "dedupe_key": f"{SOURCE}:{row['Id']}:renewal.upcoming:{renewal.isoformat()}"})
            yield Page(records=[], signals=signals, cursor=None, api_calls=self._calls(), object_type="signals")


# -- helpers ------------------------------------------------------------------------------------

def _since(cursor: Mapping[str, Any] | None) -> datetime | None:
    if not cursor or not cursor.get("since"):
        return None
    return parse_stamp(str(cursor["since"]))


def _select(fields: Sequence[str], sobject: str, since: datetime | None, overlap: timedelta, *,
            stamp: str = "SystemModstamp", extra: str = "") -> str:
    conditions = []
    if since is not None:
        conditions.append(format_soql("{stamp:literal} >= {since}", stamp=stamp, since=since - overlap))
    if extra:
        conditions.append(extra)
    where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
    return format_soql("SELECT {fields:literal} FROM {sobject:literal}", fields=", ".join(fields),
                       sobject=sobject) + where + format_soql(" ORDER BY {stamp:literal}, Id", stamp=stamp)


def _cursor(rows: Sequence[Mapping[str, Any]], since: datetime | None, *,
            stamp: str = "SystemModstamp") -> dict[str, Any] | None:
    stamps = [parse_stamp(row[stamp]) for row in rows if row.get(stamp)]
    if not stamps:
        return None if since is None else {"since": _stamp_text(since)}
    latest = max(stamps)
    if since is not None:
        latest = max(latest, since)
    return {"since": _stamp_text(latest)}


def _dedupe(row: Mapping[str, Any], kind: str, *, stamp: str = "SystemModstamp") -> str:
    return f"{SOURCE}:{row['Id']}:{parse_stamp(row[stamp]).isoformat(timespec='milliseconds')}:{kind}"


def _iso(text: str) -> str:
    return parse_stamp(text).isoformat()


def _midnight(value: Any) -> str:
    return datetime.combine(date.fromisoformat(str(value)[:10]), time(0), tzinfo=UTC).isoformat()


def _domain(website: Any) -> str | None:
    if not website:
        return None
    text = str(website).strip()
    host = urlsplit(text if "://" in text else f"https://{text}").hostname
    if not host:
        return None
    return host.removeprefix("www.").lower()


def _deal_kind(value: Any) -> str:
    text = str(value or "").lower()
    if "renew" in text:
        return "renewal"
    if "upgrade" in text or "expan" in text or "upsell" in text or "existing" in text:
        return "expansion"
    return "new"
