"""Reading HubSpot: owners, companies, contacts, deals and Handoff's tasks, as records and derived signals.

- First sync (or `full`): the list endpoints, 100 a page, no result cap.
- Incremental: the search API on `hs_lastmodifieddate` (`lastmodifieddate` on contacts) over the window
  [cursor - overlap, now). Search stops at 10,000 results per query, so a window holding more is split
  in halves until each half fits (a window too narrow to split is walked by `hs_object_id` instead).
  The cursor of an object moves to a window's end only once the whole window has been read.
- Archived records: the list endpoints with `archived=true`, kept when archived inside the window.
- Associations (contact/deal/task -> company) come from one v4 batch read per page.
- Signals: deal stage changes (from `dealstage` history), closed won/lost, owner changes (from
  `hubspot_owner_id` history), renewal upcoming (a configured company date property), and
  `task.completed` for a Handoff task a rep completed in HubSpot (an open one's status comes as a task
  record, for the SLA pause). Dedupe keys are built from the object
  id and the change's time, so a webhook and a sync that see the same change store one signal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from connectors.base import Page, Record
from connectors.hubspot.config import HubSpotSettings
from connectors.hubspot.transport import Transport

__all__ = ["OBJECTS", "SEARCH_CAP", "Puller", "as_ms", "parse_time"]

OBJECTS = ("owners", "companies", "contacts", "deals", "tasks")
SEARCH_CAP = 10_000
SEARCH_PAGE = 200
LIST_PAGE = 100
HISTORY_BATCH = 50  # HubSpot takes at most 50 ids in a batch read with propertiesWithHistory
MODIFIED = {"contacts": "lastmodifieddate"}
PRIMARY_COMPANY = {"contacts": 1, "deals": 5}  # "primary company" association type ids
_EPOCH = datetime(2015, 1, 1, tzinfo=UTC)
RECORD_KINDS = {"companies": "account", "contacts": "contact", "deals": "deal", "owners": "owner", "tasks": "task"}


def parse_time(value: Any) -> datetime | None:
    """HubSpot's ISO timestamps (or a datetime) as aware UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value)
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def as_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def modified_property(object_type: str) -> str:
    return MODIFIED.get(object_type, "hs_lastmodifieddate")


@dataclass(frozen=True)
class _Window:
    start: datetime
    end: datetime


class Puller:
    """One pull over every object type; `calls` counts the API requests it made."""

    def __init__(self, *, transport: Transport, settings: HubSpotSettings, source: str,
                 now: Callable[[], datetime], search_cap: int = SEARCH_CAP) -> None:
        self.transport, self.settings, self.source, self.now = transport, settings, source, now
        self.search_cap = search_cap
        self.key = settings.idempotency_property

    # -- entry point -----------------------------------------------------------------------------

    def pull(self, *, cursor: Mapping[str, Any] | None, full: bool) -> Iterator[Page]:
        cursors = _per_object(cursor)
        for object_type in OBJECTS:
            since = None if full else parse_time((cursors.get(object_type) or {}).get("since"))
            if object_type == "owners":
                yield from self._owners()
            elif object_type == "tasks":
                # Only Handoff's own tasks matter: search for them even on a first sync rather than
                # listing every task the account ever had.
                yield from self._incremental("tasks", since or _EPOCH)
            elif since is None:
                yield from self._full(object_type)
            else:
                yield from self._incremental(object_type, since)

    # -- owners ------------------------------------------------------------------------------------

    def _owners(self) -> Iterator[Page]:
        started = self.now()
        api = self.transport.api("owners")
        for archived in (False, True):
            after: str | None = None
            while True:
                before = self.transport.calls
                response = self.transport.json(
                    partial(api.get_page, limit=LIST_PAGE, after=after, archived=archived, _preload_content=False),
                    what="owners list")
                records = [self._owner_record(owner, archived=archived) for owner in response.get("results") or []]
                after = _next_after(response)
                done = archived and after is None
                yield Page(records=[r for r in records if r is not None], signals=[],
                           cursor={"since": started.isoformat()} if done else None,
                           api_calls=self.transport.calls - before, object_type="owners")
                if after is None:
                    break

    def _owner_record(self, owner: Mapping[str, Any], *, archived: bool) -> Record | None:
        email = owner.get("email")
        if not email:
            return None  # a team or integration user: Handoff's owners are people with an email
        name = " ".join(p for p in (owner.get("firstName"), owner.get("lastName")) if p) or email
        return Record(kind="owner", source=self.source, external_id=str(owner["id"]), deleted=archived,
                      fields={"email": email.strip().lower(), "name": name, "role": self.settings.owner_role})

    # -- companies, contacts, deals, tasks: full -------------------------------------------------

    def _properties(self, object_type: str) -> list[str]:
        if object_type == "tasks":
            return ["hs_task_status", "hs_task_subject", "hs_task_completion_date", self.key,
                    "hs_lastmodifieddate", "hubspot_owner_id"]
        names = set(self.settings.fields.get(object_type, {}).values())
        names.add(modified_property(object_type))
        if object_type == "contacts":
            names |= {"firstname", "lastname"}
        if object_type == "companies":
            names.add("hubspot_owner_assigneddate")
            if self.settings.renewal_property:
                names.add(self.settings.renewal_property)
            if self.settings.match_property:
                names.add(self.settings.match_property)
        if object_type == "deals":
            names |= {"dealstage", "amount"}
        return sorted(names)

    def _full(self, object_type: str) -> Iterator[Page]:
        started = self.now()
        api = self.transport.api(f"{object_type}.basic")
        properties = self._properties(object_type)
        after: str | None = None
        while True:
            before = self.transport.calls
            response = self.transport.json(
                partial(api.get_page, limit=LIST_PAGE, after=after, properties=properties, archived=False,
                        _preload_content=False),
                what=f"{object_type} list")
            results = list(response.get("results") or [])
            after = _next_after(response)
            records, signals = self._convert(object_type, results, history=False)
            yield Page(records=records, signals=signals, cursor=None, api_calls=self.transport.calls - before,
                       object_type=object_type)
            if after is None:
                break
        yield from self._archived(object_type, since=None, cursor={"since": started.isoformat()})

    def _archived(self, object_type: str, *, since: datetime | None, cursor: Mapping[str, Any]) -> Iterator[Page]:
        """Records archived (deleted) in HubSpot since `since`, then the object's new cursor."""
        api = self.transport.api(f"{object_type}.basic")
        properties = [self.key] if object_type == "tasks" else ["hs_object_id"]
        after: str | None = None
        while True:
            before = self.transport.calls
            response = self.transport.json(
                partial(api.get_page, limit=LIST_PAGE, after=after, properties=properties, archived=True,
                        _preload_content=False),
                what=f"{object_type} archived list")
            after = _next_after(response)
            records = []
            for item in response.get("results") or []:
                archived_at = parse_time(item.get("archivedAt")) or parse_time(item.get("updatedAt"))
                if since is not None and archived_at is not None and archived_at < since:
                    continue
                if object_type == "tasks" and not (item.get("properties") or {}).get(self.key):
                    continue  # not one of Handoff's tasks
                records.append(Record(kind=RECORD_KINDS[object_type], source=self.source,  # type: ignore[arg-type]
                                      external_id=str(item["id"]), fields={}, deleted=True))
            yield Page(records=records, signals=[], cursor=None if after is not None else dict(cursor),
                       api_calls=self.transport.calls - before, object_type=object_type)
            if after is None:
                return

    # -- incremental through search ---------------------------------------------------------------

    def _incremental(self, object_type: str, since: datetime) -> Iterator[Page]:
        end = self.now()
        start = since - timedelta(seconds=self.settings.overlap_seconds)
        if start >= end:
            start = end - timedelta(milliseconds=1)
        before = self.transport.calls
        for window, results in self._windows(object_type, _Window(start, end)):
            records, signals = self._convert(object_type, results, history=True, since=window.start)
            # The cursor moves only after the archived pass below: a crash re-reads the window.
            yield Page(records=records, signals=signals, cursor=None, api_calls=self.transport.calls - before,
                       object_type=object_type)
            before = self.transport.calls
        yield from self._archived(object_type, since=start, cursor={"since": end.isoformat()})

    def _filters(self, object_type: str, window: _Window) -> list[dict[str, Any]]:
        modified = modified_property(object_type)
        filters: list[dict[str, Any]] = [
            {"propertyName": modified, "operator": "GTE", "value": str(as_ms(window.start))},
            {"propertyName": modified, "operator": "LT", "value": str(as_ms(window.end))},
        ]
        if object_type == "tasks":
            filters.append({"propertyName": self.key, "operator": "HAS_PROPERTY"})
        return filters

    def _search(self, object_type: str, body: dict[str, Any]) -> Any:
        api = self.transport.api(f"{object_type}.search")
        return self.transport.json(partial(api.do_search, public_object_search_request=body,
                                                           _preload_content=False),
                                   search=True, what=f"{object_type} search")

    def _windows(self, object_type: str, window: _Window) -> Iterator[tuple[_Window, list[Any]]]:
        """(window, results) for every search page, oldest window first."""
        modified = modified_property(object_type)
        body = {"filterGroups": [{"filters": self._filters(object_type, window)}],
                "sorts": [{"propertyName": modified, "direction": "ASCENDING"}],
                "properties": self._properties(object_type), "limit": SEARCH_PAGE}
        first = self._search(object_type, body)
        total = int(first.get("total") or 0)
        if total > self.search_cap:
            if window.end - window.start > timedelta(milliseconds=1):
                middle = window.start + (window.end - window.start) / 2
                middle = middle.replace(microsecond=middle.microsecond // 1000 * 1000)
                if middle <= window.start:
                    middle = window.start + timedelta(milliseconds=1)
                yield from self._windows(object_type, _Window(window.start, middle))
                yield from self._windows(object_type, _Window(middle, window.end))
                return
            yield from self._by_id(object_type, window)
            return
        response = first
        while True:
            after = _next_after(response)
            yield window, list(response.get("results") or [])
            if after is None:
                return
            response = self._search(object_type, {**body, "after": after})

    def _by_id(self, object_type: str, window: _Window) -> Iterator[tuple[_Window, list[Any]]]:
        """More than the cap changed within one millisecond: walk them by id, which has no cap."""
        last_id = 0
        while True:
            filters = [*self._filters(object_type, window),
                       {"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)}]
            response = self._search(object_type, {
                "filterGroups": [{"filters": filters}], "limit": SEARCH_PAGE,
                "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                "properties": self._properties(object_type)})
            results = list(response.get("results") or [])
            yield window, results
            if len(results) < SEARCH_PAGE:
                return
            last_id = int(results[-1]["id"])

    # -- conversion ----------------------------------------------------------------------------------

    def _convert(self, object_type: str, results: Sequence[Any], *, history: bool,
                 since: datetime | None = None) -> tuple[list[Record], list[dict[str, Any]]]:
        if not results:
            return [], []
        if object_type == "companies":
            return self._companies(results, history=history, since=since)
        companies = self.companies_of(object_type, [str(r["id"]) for r in results])
        if object_type == "contacts":
            return [r for r in (self._contact(item, companies) for item in results) if r is not None], []
        if object_type == "deals":
            return self._deals(results, companies, history=history, since=since)
        return self._open_tasks(results), self._task_signals(results, companies)

    def companies_of(self, object_type: str, ids: Sequence[str]) -> dict[str, str]:
        """object id -> its (primary) company id, by one v4 batch read per 1,000 ids."""
        api = self.transport.api("associations")
        found: dict[str, str] = {}
        for chunk in _chunks(list(ids), 1000):
            body = {"inputs": [{"id": i} for i in chunk]}
            response = self.transport.json(
                partial(api.get_page, object_type, "companies",
                        batch_input_public_fetch_associations_batch_request=body, _preload_content=False),
                what="associations read")
            for item in response.get("results") or []:
                targets = list(item.get("to") or [])
                if not targets:
                    continue
                primary = PRIMARY_COMPANY.get(object_type)
                chosen = next((t for t in targets if any(a.get("typeId") == primary
                                                         for a in t.get("associationTypes") or [])), targets[0])
                found[str(item["from"]["id"])] = str(chosen["toObjectId"])
        return found

    def _mapped(self, object_type: str, props: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        attributes: dict[str, Any] = {}
        for canonical, prop in self.settings.fields.get(object_type, {}).items():
            if prop not in props:
                continue
            value = props.get(prop)
            if canonical.startswith("attributes."):
                attributes[canonical.split(".", 1)[1]] = value
            else:
                values[canonical] = value if value != "" else None
        if attributes:
            values["attributes"] = attributes
        return values

    def _companies(self, results: Sequence[Any], *, history: bool,
                   since: datetime | None) -> tuple[list[Record], list[dict[str, Any]]]:
        records: list[Record] = []
        signals: list[dict[str, Any]] = []
        owner_moved = [str(r["id"]) for r in results if _at_or_after(
            (r.get("properties") or {}).get("hubspot_owner_assigneddate"), since)]
        owner_history = self._history("companies", owner_moved, ["hubspot_owner_id"]) if history else {}
        for item in results:
            item_id = str(item["id"])
            props = item.get("properties") or {}
            values = self._mapped("companies", props)
            if "domain" in values and values["domain"]:
                values["domain"] = str(values["domain"]).strip().lower()
            also = {}
            if self.settings.match_property and props.get(self.settings.match_property):
                also[self.settings.match_source] = str(props[self.settings.match_property]).strip()
            records.append(Record(kind="account", source=self.source, external_id=item_id, fields=values,
                                  also=also))
            account = {"source": self.source, "external_id": item_id}
            signals.extend(self._owner_changes("account", account, None, item_id,
                                               owner_history.get(item_id, {}), since))
            renewal = self._renewal(account, item_id, props)
            if renewal is not None:
                signals.append(renewal)
        return records, signals

    def _contact(self, item: Mapping[str, Any], companies: Mapping[str, str]) -> Record | None:
        item_id = str(item["id"])
        company = companies.get(item_id)
        if company is None:
            return None  # Handoff's contacts belong to an account
        props = item.get("properties") or {}
        values = self._mapped("contacts", props)
        name = " ".join(p for p in (props.get("firstname"), props.get("lastname")) if p) or props.get("email")
        values["name"] = name or f"contact {item_id}"
        values["account"] = {"source": self.source, "external_id": company}
        return Record(kind="contact", source=self.source, external_id=item_id, fields=values)

    def _deals(self, results: Sequence[Any], companies: Mapping[str, str], *, history: bool,
               since: datetime | None) -> tuple[list[Record], list[dict[str, Any]]]:
        records: list[Record] = []
        signals: list[dict[str, Any]] = []
        histories = self._history("deals", [str(r["id"]) for r in results if str(r["id"]) in companies],
                                  ["dealstage", "hubspot_owner_id"]) if history else {}
        won, lost = set(self.settings.won_stages), set(self.settings.lost_stages)
        for item in results:
            item_id = str(item["id"])
            company = companies.get(item_id)
            if company is None:
                continue  # a deal without a company has no Handoff account
            props = item.get("properties") or {}
            values = self._mapped("deals", props)
            stage = props.get("dealstage")
            values["is_closed"] = stage in won or stage in lost
            values["is_won"] = stage in won
            values["account"] = {"source": self.source, "external_id": company}
            records.append(Record(kind="deal", source=self.source, external_id=item_id, fields=values))
            account = {"source": self.source, "external_id": company}
            deal = {"source": self.source, "external_id": item_id}
            entries = histories.get(item_id, {})
            signals.extend(self.stage_signals(account=account, deal=deal, deal_id=item_id,
                                              history=entries.get("dealstage", []), since=since,
                                              amount=props.get("amount")))
            signals.extend(self._owner_changes("deal", account, deal, item_id, entries, since))
        return records, signals

    def _history(self, object_type: str, ids: Sequence[str], names: list[str]) -> dict[str, dict[str, list[Any]]]:
        """id -> property -> [(value, timestamp)] oldest first, by batch reads with propertiesWithHistory."""
        api = self.transport.api(f"{object_type}.batch")
        found: dict[str, dict[str, list[Any]]] = {}
        for chunk in _chunks(list(ids), HISTORY_BATCH):
            body = {"inputs": [{"id": i} for i in chunk], "properties": names, "propertiesWithHistory": names}
            response = self.transport.json(
                partial(api.read, batch_read_input_simple_public_object_id=body, archived=False,
                        _preload_content=False), what=f"{object_type} history read")
            for item in response.get("results") or []:
                entries = item.get("propertiesWithHistory") or {}
                found[str(item["id"])] = {
                    name: sorted(((v.get("value"), parse_time(v.get("timestamp"))) for v in values or []),
                                 key=lambda pair: pair[1] or datetime.min.replace(tzinfo=UTC))
                    for name, values in entries.items()}
        return found

    # -- signals ----------------------------------------------------------------------------------

    def stage_signals(self, *, account: Mapping[str, str], deal: Mapping[str, str], deal_id: str,
                      history: Sequence[tuple[Any, datetime | None]], since: datetime | None,
                      amount: Any = None) -> list[dict[str, Any]]:
        """deal.stage_changed (and closed_won / closed_lost) for each stage change after `since`."""
        signals: list[dict[str, Any]] = []
        previous: Any = None
        for position, (value, at) in enumerate(history):
            if position > 0 and at is not None and (since is None or at >= since) and value != previous:
                signals.extend(self.stage_change(account=account, deal=deal, deal_id=deal_id, from_stage=previous,
                                                 to_stage=value, at=at, amount=amount))
            previous = value
        return signals

    def stage_change(self, *, account: Mapping[str, str], deal: Mapping[str, str], deal_id: str,
                     from_stage: Any, to_stage: Any, at: datetime, amount: Any = None) -> list[dict[str, Any]]:
        stamp = as_ms(at)
        base = {"account": dict(account), "deal": dict(deal), "occurred_at": at.isoformat()}
        signals = [{**base, "type": "deal.stage_changed", "dedupe_key": f"{self.source}:deal:{deal_id}:stage:{stamp}",
                    "payload": {"from": from_stage, "to": to_stage}}]
        outcome = "won" if to_stage in self.settings.won_stages else "lost" if to_stage in self.settings.lost_stages \
            else None
        if outcome is not None:
            payload: dict[str, Any] = {"stage": to_stage}
            if amount not in (None, ""):
                try:
                    payload["amount"] = float(amount)
                except (TypeError, ValueError):
                    pass
            signals.append({**base, "type": f"deal.closed_{outcome}", "payload": payload,
                            "dedupe_key": f"{self.source}:deal:{deal_id}:closed_{outcome}:{stamp}"})
        return signals

    def _owner_changes(self, kind: str, account: Mapping[str, str], deal: Mapping[str, str] | None,
                       object_id: str, history: Mapping[str, Sequence[tuple[Any, datetime | None]]],
                       since: datetime | None) -> list[dict[str, Any]]:
        signals = []
        previous: Any = None
        for position, (value, at) in enumerate(history.get("hubspot_owner_id", [])):
            if position > 0 and at is not None and (since is None or at >= since) and value != previous:
                signals.append(self.owner_change(kind=kind, account=account, deal=deal, object_id=object_id,
                                                 from_owner=previous, to_owner=value, at=at))
            previous = value
        return signals

    def owner_change(self, *, kind: str, account: Mapping[str, str], deal: Mapping[str, str] | None,
                     object_id: str, from_owner: Any, to_owner: Any, at: datetime) -> dict[str, Any]:
        signal: dict[str, Any] = {
            "type": f"{kind}.owner_changed", "account": dict(account), "occurred_at": at.isoformat(),
            "payload": {"from_owner": from_owner, "to_owner": to_owner, "source": self.source},
            "dedupe_key": f"{self.source}:{kind}:{object_id}:owner:{as_ms(at)}"}
        if deal is not None:
            signal["deal"] = dict(deal)
        return signal

    def _renewal(self, account: Mapping[str, str], company_id: str, props: Mapping[str, Any]) -> dict[str, Any] | None:
        prop = self.settings.renewal_property
        if not prop or not props.get(prop):
            return None
        try:
            renewal = parse_time(props[prop])
        except ValueError:
            return None
        if renewal is None:
            return None
        window = timedelta(days=self.settings.renewal_window_days)
        now = self.now()
        if not (now <= renewal <= now + window):
            return None
        return {"type": "renewal.upcoming", "account": dict(account), "occurred_at": (renewal - window).isoformat(),
                "payload": {"renewal_date": renewal.date().isoformat(),
                            "days_to_renewal": (renewal.date() - now.date()).days},
                "dedupe_key": f"{self.source}:company:{company_id}:renewal:{renewal.date().isoformat()}"}

    def _open_tasks(self, results: Sequence[Any]) -> list[Record]:
        """Handoff's open tasks with the status a rep set: a waiting status (`[sla] waiting_statuses`,
        HubSpot's WAITING by default) pauses the task's SLA clock, another resumes a pause it started."""
        return [self.task_status(task_id=str(item["id"]), status=str(props["hs_task_status"]))
                for item in results
                if (props := item.get("properties") or {}).get("hs_task_status")
                and props.get("hs_task_status") != "COMPLETED" and props.get(self.key)]

    def task_status(self, *, task_id: str, status: str) -> Record:
        return Record(kind="task", source=self.source, external_id=task_id, fields={"crm_status": status})

    def _task_signals(self, results: Sequence[Any], companies: Mapping[str, str]) -> list[dict[str, Any]]:
        signals = []
        for item in results:
            props = item.get("properties") or {}
            company = companies.get(str(item["id"]))
            if props.get("hs_task_status") != "COMPLETED" or company is None:
                continue
            at = parse_time(props.get("hs_task_completion_date")) or parse_time(props.get("hs_lastmodifieddate"))
            signals.append(self.task_completed(task_id=str(item["id"]), key=props.get(self.key), company=company,
                                               at=at or self.now()))
        return signals

    def task_completed(self, *, task_id: str, key: str | None, company: str, at: datetime) -> dict[str, Any]:
        payload: dict[str, Any] = {"crm_id": task_id, "outcome": "done", "source": self.source}
        local = _task_id_from_key(key)
        if local is not None:
            payload["task_id"] = local
        return {"type": "task.completed", "account": {"source": self.source, "external_id": company},
                "occurred_at": at.isoformat(), "payload": payload,
                "dedupe_key": f"{self.source}:task:{task_id}:completed"}


def _task_id_from_key(key: str | None) -> int | None:
    # Handoff's create keys read "task:<id>:create".
    if not key:
        return None
    parts = key.split(":")
    if len(parts) == 3 and parts[0] == "task" and parts[1].isdigit():
        return int(parts[1])
    return None


def _next_after(response: Mapping[str, Any]) -> str | None:
    after = ((response.get("paging") or {}).get("next") or {}).get("after")
    return str(after) if after else None


def _at_or_after(value: Any, since: datetime | None) -> bool:
    moment = parse_time(value) if value else None
    return moment is not None and (since is None or moment >= since)


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _per_object(cursor: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """The stored cursors, one per object type (`{"companies": {"since": ...}, ...}`)."""
    if not cursor:
        return {}
    return {name: value for name, value in cursor.items() if isinstance(value, Mapping)}
