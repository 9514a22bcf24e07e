"""Decision briefs: everything a person needs to act on a task, in one view.

A brief is built when the task is created and stored twice: as JSON (`data`, for the
API and dashboards) and as plain text (`text`, the CRM task's description). The stored
text is a snapshot; `live_brief` renders the same brief again from current data (the
journey's state now, signals that arrived since the task was created marked [new]) for
`handoff tasks show` and `GET /tasks/{id}`.

What comes first is what a rep must not miss: why they got the task (the trigger through
the signal catalog's labels and formats, the playbook rule and version, the assignment
rule, the priority's reasons), then the Risks (open high-severity tickets, negative
sentiment, the protected human zone, a renewal close by, a usage or health drop), then
the recommendation. Recent activity is a summary over a bounded window (indexed queries
on account, type and time, so a history of thousands of usage rows costs the same):
product usage as a trend line, tickets and sentiment one by one with severity and an
excerpt, then other signals.

The text must fit the CRM's description field (the connector's declared limit, see
`description_limit`): the least important lines go first (automations, journey history,
other signals, ...), with "(N more omitted)"; the trigger, the risks and the
recommendation are never cut.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from orchestrator.db import SESSION_DESCRIPTION_LIMITS_KEY
from orchestrator.delivery.routing import route_for
from orchestrator.models import (
    Account,
    Contact,
    CustomerTouch,
    Deal,
    ExternalId,
    Journey,
    Owner,
    PlaybookVersion,
    Signal,
    StepRun,
    Task,
)
from orchestrator.models.health import top_reasons
from orchestrator.playbook.catalog import Catalog, FieldSpec, describe_field, shipped_catalog
from orchestrator.playbook.context import account_view
from orchestrator.playbook.findings import PlaybookInvalid
from orchestrator.playbook.model import BRIEF_SECTIONS
from orchestrator.playbook.store import compiled
from orchestrator.work.protection import SENSITIVE_LOOKBACK, protection_reason, sensitive_signal

if TYPE_CHECKING:
    from orchestrator.config import Settings

__all__ = [
    "MAX_TEXT_LENGTH", "SCREEN_LIMIT", "SECTIONS", "Brief", "BriefOptions", "build_brief",
    "description_limit", "live_brief", "relative_day", "render_text",
]

MAX_TEXT_LENGTH = 32_000  # Salesforce Task.Description: the smallest CRM limit, used when none is declared
# A brief read on a screen (CLI, API) is not bound by a CRM field; this only stops a runaway.
SCREEN_LIMIT = 200_000
SECTIONS = BRIEF_SECTIONS

_MAX_CONTACTS = 5
_MAX_TICKETS = 25
_MAX_OTHER_SIGNALS = 10
_MAX_JOURNEYS = 20
_MAX_AUTOMATIONS = 50
_MAX_TOUCHES = 50
_MAX_RISKS = 12
_TOUCH_WINDOW = timedelta(days=30)
_MAX_TRIGGER_VALUES = 25
_MAX_VALUE_CHARS = 200
_MAX_SUMMARY_CHARS = 160
_MAX_EXCERPT_CHARS = 200
_MAX_LINE_CHARS = 500
_USAGE = "product.usage"
_USAGE_VALUE = "active_users"
_USAGE_DROP_PCT = -25.0  # a 30-day usage change at or below this is a risk
_HIGH_SEVERITY = {"high", "urgent", "critical", "blocker", "major", "p1", "sev1", "1"}
_CLOSED_STATUSES = {"closed", "solved", "resolved", "done"}
_CLOSING_WORDS = ("closed", "solved", "resolved")
_EXCERPT_KEYS = ("comment", "body", "description", "message", "text", "note", "summary")
_REQUESTER_KEYS = ("requester", "requester_email", "requester_name", "contact_email", "submitted_by")
# Key contacts first: who decides and who champions before who administers.
_CONTACT_ROLE_ORDER = {"champion": 0, "economic_buyer": 1, "admin": 2}
_HEADINGS = {
    "account": "Account",
    "contacts": "Key contacts",
    "recent_signals": "Recent activity",
    "journey": "Journey history",
    "automations": "What automation already did",
    "deal": "Deal",
}
# When the text is too long, lines go from the least important section first.
_CUT_ORDER = ("automations", "journey", "recent_signals", "deal", "contacts", "account")
_CRM_RECORDS = {"salesforce": "Salesforce account", "hubspot": "HubSpot company"}


@dataclass(frozen=True)
class BriefOptions:
    """The thresholds a brief applies (`[briefs]` in handoff.toml)."""

    stale_after: timedelta = timedelta(days=7)  # a trigger older than this has its age stated
    renewal_within: timedelta = timedelta(days=60)  # a renewal closer than this is a risk
    window: timedelta = timedelta(days=30)  # recent activity looks this far back

    @classmethod
    def from_settings(cls, settings: Settings) -> BriefOptions:
        return cls(stale_after=timedelta(days=settings.brief_stale_after_days),
                   renewal_within=timedelta(days=settings.brief_renewal_within_days))


@dataclass(frozen=True)
class Brief:
    """The structured brief (JSON-serializable) and its plain-text rendering."""

    data: dict[str, Any]
    text: str
    renderable: bool = False  # built by build_brief: the text can be rendered again from `data`

    def finished(self, *, priority: str, reasons: Sequence[str], limit: int) -> Brief:
        """The brief with the task's priority explained, its text fitted to `limit` characters."""
        if not self.renderable:
            return self
        data = {**self.data, "priority": {"level": priority, "reasons": list(reasons)}}
        return Brief(data=data, text=render_text(data, limit=limit), renderable=True)


def build_brief(
    session: Session,
    *,
    account: Account,
    trigger: Signal | None,
    recommendation: str,
    sections: Sequence[str],
    journey: Journey | None = None,
    deal: Deal | None = None,
    assignee_how: str = "",
    now: datetime,
    options: BriefOptions | None = None,
    catalog: Catalog | None = None,
    since: datetime | None = None,
    task_id: int | None = None,
    snapshot: Mapping[str, Any] | None = None,
    limit: int = MAX_TEXT_LENGTH,
    proposal: Mapping[str, Any] | None = None,
    drafted_by: Mapping[str, str] | None = None,
) -> Brief:
    """Collect the sections the playbook asked for, in its order, with the risks, and render them.

    `since`, `task_id` and `snapshot` make the live view of an existing task: signals after
    `since` are marked new and the account is compared with the snapshot's.
    """
    unknown = [name for name in sections if name not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown brief section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    options = options or BriefOptions()
    catalog = catalog or shipped_catalog()
    if deal is None:
        deal_id = (journey.deal_id if journey is not None else None) or (
            trigger.deal_id if trigger is not None else None
        )
        deal = session.get(Deal, deal_id) if deal_id is not None else None
    people = _People(session, account.id)
    activity = _Activity(session, account=account, now=now, window=options.window, since=since)

    trigger_data = _trigger(session, trigger, journey, now=now, options=options, catalog=catalog, people=people)
    data: dict[str, Any] = {
        "trigger": trigger_data,
        "recommendation": recommendation,
        "assigned": assignee_how,
        "sections": [name for name in sections if name != "trigger"],
        "generated_at": _iso(now),
    }
    if proposal is not None:  # a routed decision: what the system proposes, and on what evidence
        data["proposal"] = _json(dict(proposal))
    if drafted_by is not None:  # a hybrid step's draft: which drafter wrote it
        data["drafted_by"] = dict(drafted_by)
    if since is not None:
        data["live"] = {"since": _iso(since), "new_signals": activity.new_count()}
    health = _health(account)
    if health is not None:
        data["health"] = health
    data["risks"] = _risks(session, account=account, journey=journey, activity=activity, now=now,
                           options=options, snapshot=snapshot, since=since)
    collectors: dict[str, Callable[[], Any]] = {
        "account": lambda: _account(account, now),
        "contacts": lambda: _contacts(session, account, trigger, deal, trigger_data, people),
        "recent_signals": lambda: activity.summary(catalog, people),
        "journey": lambda: _journeys(session, account, current=journey, task_id=task_id, now=now),
        "automations": lambda: _automations(session, account, now),
        "deal": lambda: _deal(deal),
    }
    for name in sections:
        if name != "trigger":
            data[name] = collectors[name]()
    return Brief(data=data, text=render_text(data, limit=limit), renderable=True)


def live_brief(session: Session, *, task: Task, now: datetime, options: BriefOptions | None = None,
               catalog: Catalog | None = None, limit: int = MAX_TEXT_LENGTH) -> Brief:
    """The task's brief rendered from current data: what `tasks show` and `GET /tasks/{id}` show."""
    stored: dict[str, Any] = dict(task.brief or {})
    journey = session.get(Journey, task.journey_id) if task.journey_id is not None else None
    signal_id = (stored.get("trigger") or {}).get("signal_id")
    if signal_id is None and journey is not None and stored.get("trigger") is None:
        # No stored trigger to go by: the signal the journey's steps read, as the engine picks it.
        signal_id = (journey.context or {}).get("signal_id") or journey.trigger_signal_id
    signal = session.get(Signal, signal_id) if signal_id else None
    account = session.get_one(Account, task.account_id)
    sections = [name for name in stored.get("sections", ()) if name in SECTIONS]
    brief = build_brief(session, account=account, trigger=signal, recommendation=task.recommendation,
                        sections=sections, journey=journey, assignee_how=str(stored.get("assigned") or ""),
                        now=now, options=options, catalog=catalog, since=task.created_at, task_id=task.id,
                        snapshot=stored, limit=limit, proposal=stored.get("proposal"),
                        drafted_by=stored.get("drafted_by"))
    priority = stored.get("priority") or {}
    return brief.finished(priority=str(priority.get("level") or task.priority),
                          reasons=list(priority.get("reasons") or ()), limit=limit)


def description_limit(session: Session, *, account_id: int) -> int:
    """The description limit of the CRM the account's task goes to (its connector's declaration)."""
    limits = session.info.get(SESSION_DESCRIPTION_LIMITS_KEY) or {}
    if not limits:
        return MAX_TEXT_LENGTH
    found = limits.get(route_for(session, target="crm", account_id=account_id))
    return int(found) if found else MAX_TEXT_LENGTH


# -- collectors (each returns JSON-ready data) -------------------------------------


class _People:
    """People named in payloads (emails, CRM owner ids), by name, looked up once each."""

    def __init__(self, session: Session, account_id: int) -> None:
        self.session, self.account_id = session, account_id
        self.seen: dict[str, dict[str, Any]] = {}

    def find(self, value: Any) -> dict[str, Any]:
        """{"name", "email", "internal"}: an owner (internal) or a contact, or just the value."""
        key = str(value).strip()
        if key in self.seen:
            return self.seen[key]
        found: dict[str, Any] = {"name": None, "email": key if "@" in key else None, "internal": False}
        if "@" in key:
            # The one owner lookup rule (assignment.find_owner, which imports tasks, which imports this).
            owner = self.session.scalars(select(Owner).where(func.lower(Owner.email) == key.lower())).first()
            if owner is not None:
                found = {"name": owner.name, "email": owner.email, "internal": True}
            else:
                # The account's own contacts only (indexed by account): contacts have no email index.
                contact = self.session.scalar(
                    select(Contact).where(Contact.account_id == self.account_id,
                                          func.lower(Contact.email) == key.lower()).order_by(Contact.id).limit(1))
                if contact is not None:
                    found = {"name": contact.name, "email": contact.email, "internal": False}
        elif key:
            local = self.session.scalar(select(ExternalId.local_id).where(
                ExternalId.kind == "owner", ExternalId.external_id == key).limit(1))
            owner = self.session.get(Owner, local) if local is not None else None
            if owner is not None:
                found = {"name": owner.name, "email": owner.email, "internal": True}
        self.seen[key] = found
        return found

    def show(self, value: Any) -> str:
        person = self.find(value)
        if person["name"] and person["email"]:
            return f"{person['name']} <{person['email']}>"
        return person["name"] or str(value)


def _trigger(session: Session, signal: Signal | None, journey: Journey | None, *, now: datetime,
             options: BriefOptions, catalog: Catalog, people: _People) -> dict[str, Any] | None:
    rule = _rule(session, journey)
    why = ""
    if rule is not None:
        why = f"playbook {rule['playbook_id']}" + (f" version {rule['version']}" if rule["version"] else "") \
            + (f", step {rule['step_id']}" if rule["step_id"] else "")
    if signal is None:
        return {"type": None, "why": why, "rule": rule} if rule else None
    payload = signal.payload or {}
    spec = catalog.signal(signal.type)
    age = now - signal.occurred_at
    return {
        "signal_id": signal.id,
        "type": signal.type,
        "label": spec.label if spec is not None else signal.type,
        "occurred_at": _iso(signal.occurred_at),
        "source": signal.source,
        "values": _json(payload),
        "fields": _fields(signal.type, payload, catalog=catalog, people=people, now=now),
        "summary": _summary(payload),
        "age_days": max(0, age.days),
        "stale": age > options.stale_after,
        "why": why,
        "rule": rule,
    }


def _rule(session: Session, journey: Journey | None) -> dict[str, Any] | None:
    if journey is None:
        return None
    version = session.get(PlaybookVersion, journey.playbook_version_id)
    return {"playbook_id": journey.playbook_id, "version": version.version if version is not None else None,
            "step_id": journey.current_step_id}


def _fields(signal_type: str, payload: Mapping[str, Any], *, catalog: Catalog, people: _People,
            now: datetime) -> list[dict[str, Any]]:
    """Payload values in words: the catalog's fields first, in its order, then the rest."""
    spec = catalog.signal(signal_type)
    listed = [name for name in (spec.fields if spec is not None else {}) if name in payload]
    names = listed + [name for name in payload if name not in listed]
    out = []
    for name in names:
        found = catalog.field_spec(signal_type, name) or _guess(signal_type, name, catalog)
        out.append({"name": name, "label": found.label, "format": found.format,
                    "shown": _short(_formatted(found, payload[name], people=people, now=now), _MAX_VALUE_CHARS)})
    return out


def _guess(signal_type: str, name: str, catalog: Catalog) -> FieldSpec:
    """A field the catalog does not list: a label from its name, a format from what it is called."""
    base = describe_field(signal_type, name, catalog=catalog)
    lowered = name.lower()
    fmt = "text"
    if lowered in ("amount", "arr", "mrr", "acv", "tcv") or lowered.endswith(("_amount", "_arr", "_value")):
        fmt = "money"
    elif lowered.endswith(("_date", "_at", "_on")) or lowered in ("date", "effective"):
        fmt = "date"
    elif lowered.endswith(("_pct", "_percent")):
        fmt = "percent"
    elif "email" in lowered or lowered.endswith(("owner_id", "owner", "user_id", "_by")) or lowered in _REQUESTER_KEYS:
        fmt = "person"
    label = base.label
    if fmt == "person" and lowered.endswith("_id"):
        label = label[: -3].rstrip() or label  # "Owner id" reads "Owner": the id becomes a name
    return FieldSpec(name, label, base.kind, fmt)  # type: ignore[arg-type]


def _formatted(spec: FieldSpec, value: Any, *, people: _People, now: datetime) -> str:
    if value is None or isinstance(value, (dict, list, bool)):
        return _show(value)
    number = _as_number(value)
    if spec.format == "money" and number is not None:
        return _money(number)
    if spec.format == "percent" and number is not None:
        return f"{_plain_number(number)}%" if number <= 0 else f"+{_plain_number(number)}%"
    if spec.format == "number" and number is not None:
        return _plain_number(number)
    if spec.format == "date":
        when = _as_datetime(value)
        if when is not None:
            shown = when.strftime("%Y-%m-%d") if _is_date_only(value) else when.strftime("%Y-%m-%d %H:%M UTC")
            return f"{shown} ({relative_day(when, now)})"
    if spec.format == "person":
        return people.show(value)
    return _show(value)


def _account(account: Account, now: datetime) -> dict[str, Any]:
    view = account_view(account, now=now)
    data = _json({key: view[key] for key in (
        "id", "name", "domain", "segment", "industry", "arr", "health", "stage", "stage_entered_at",
        "days_in_stage", "renewal_date", "days_to_renewal", "owner")})
    data["renewal_relative"] = relative_day(account.renewal_date, now) if account.renewal_date else None
    return data


def _contacts(session: Session, account: Account, trigger: Signal | None, deal: Deal | None,
              trigger_data: dict[str, Any] | None, people: _People) -> dict[str, Any]:
    contacts = session.scalars(select(Contact).where(Contact.account_id == account.id)).all()
    ranked = sorted(contacts, key=lambda c: (not c.is_primary, _CONTACT_ROLE_ORDER.get(c.role or "", 9),
                                             c.name.lower(), c.id))
    data: dict[str, Any] = {
        "items": [{"name": c.name, "title": c.title, "email": c.email, "role": c.role,
                   "primary": c.is_primary} for c in ranked[:_MAX_CONTACTS]],
        "total": len(contacts),
    }
    if not contacts:
        data["from_trigger"] = _trigger_people(trigger, deal, trigger_data, people)
        data["fill_in"] = _crm_record(session, account)
    return data


def _trigger_people(trigger: Signal | None, deal: Deal | None, trigger_data: dict[str, Any] | None,
                    people: _People) -> list[dict[str, Any]]:
    """The people the trigger itself names: a ticket's requester, a lead's email, the deal's contact roles."""
    found: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(value: Any, role: str) -> None:
        if not isinstance(value, str) or not value.strip() or value.strip().lower() in seen:
            return
        person = people.find(value)
        if person["internal"]:
            return  # our own people are not the customer's contacts
        seen.add(value.strip().lower())
        found.append({"name": person["name"] or (None if "@" in value else value.strip()),
                      "email": person["email"], "role": role})

    payload = trigger.payload or {} if trigger is not None else {}
    requester = "ticket requester" if trigger is not None and trigger.type.startswith("support.") else "requester"
    for name in _REQUESTER_KEYS:
        add(payload.get(name), requester)
    named = payload.get("requester_name")
    if isinstance(named, str) and named.strip():
        # "Lena Vogel" and "lena@..." are one person: the name goes with the requester's address.
        emails = [p for p in found if p["role"] == requester and p["email"] and not p["name"]]
        if emails:
            emails[0]["name"] = named.strip()
            found[:] = [p for p in found if not (p["role"] == requester and p["name"] == named.strip()
                                                 and not p["email"])]
    for item in (trigger_data or {}).get("fields", ()):
        if item["format"] == "person":
            add(payload.get(item["name"]), item["label"].lower())
    attributes = deal.attributes or {} if deal is not None else {}
    roles = attributes.get("contact_roles")
    if isinstance(roles, list):
        for role in roles:
            if isinstance(role, dict):
                add(role.get("email") or role.get("name"), f"deal contact role: {role.get('role') or 'contact'}")
    elif isinstance(roles, dict):
        for role, who in roles.items():
            add(who, f"deal contact role: {role}")
    add(attributes.get("champion_email"), "deal champion")
    return found[:_MAX_CONTACTS]


def _crm_record(session: Session, account: Account) -> str:
    """Where a person adds the account's contacts: its CRM record, by system and id."""
    refs = session.execute(select(ExternalId.source, ExternalId.external_id).where(
        ExternalId.kind == "account", ExternalId.local_id == account.id).order_by(ExternalId.source)).all()
    if not refs:
        return f"the account's record in your CRM ({account.name}), then sync"
    return " or ".join(f"the {_CRM_RECORDS.get(source, f'{source} account')} {external}"
                       for source, external in refs) + " (its contacts), then sync"


class _Activity:
    """The account's signals over the window, read with small indexed queries, summarised."""

    def __init__(self, session: Session, *, account: Account, now: datetime, window: timedelta,
                 since: datetime | None) -> None:
        self.session, self.account, self.now, self.window, self.since = session, account, now, window, since
        self._tickets: list[Signal] | None = None
        self._usage: dict[str, Any] | None = None
        self._usage_read = False

    def _in_window(self) -> Any:
        return (Signal.account_id == self.account.id, Signal.occurred_at > self.now - self.window,
                Signal.occurred_at <= self.now)

    def tickets(self) -> list[Signal]:
        """Support and sentiment signals in the window, newest first (at most a few dozen)."""
        if self._tickets is None:
            self._tickets = list(self.session.scalars(
                select(Signal).where(*self._in_window(),
                                     or_(Signal.type.like("support.%"), Signal.type.like("sentiment.%")))
                .order_by(Signal.occurred_at.desc(), Signal.id.desc()).limit(_MAX_TICKETS)))
        return self._tickets

    def closed_tickets(self) -> set[str]:
        return {str(s.payload.get("ticket_id")) for s in self.tickets()
                if s.payload and s.payload.get("ticket_id") is not None and _is_closing(s)}

    def usage_at(self, *, at_or_before: datetime, after: datetime) -> tuple[datetime, float] | None:
        rows = self.session.scalars(
            select(Signal).where(Signal.account_id == self.account.id, Signal.type == _USAGE,
                                 Signal.occurred_at <= at_or_before, Signal.occurred_at > after)
            .order_by(Signal.occurred_at.desc(), Signal.id.desc()).limit(3))
        for row in rows:
            value = _as_number((row.payload or {}).get(_USAGE_VALUE))
            if value is not None:
                return row.occurred_at, value
        return None

    def usage(self) -> dict[str, Any] | None:
        if not self._usage_read:
            self._usage, self._usage_read = self._read_usage(), True
        return self._usage

    def _read_usage(self) -> dict[str, Any] | None:
        latest = self.usage_at(at_or_before=self.now, after=self.now - self.window)
        if latest is None:
            return None
        at, value = latest
        week = self.usage_at(at_or_before=at - timedelta(days=7), after=at - timedelta(days=14))
        month = self.usage_at(at_or_before=at - timedelta(days=30), after=at - timedelta(days=45))
        readings = self.session.scalar(select(func.count(Signal.id)).where(
            *self._in_window(), Signal.type == _USAGE)) or 0
        return {"at": _iso(at), "active_users": value, "new": self._is_new(at),
                "week": _change(value, week), "month": _change(value, month), "readings": readings}

    def others(self) -> list[Signal]:
        return list(self.session.scalars(
            select(Signal).where(*self._in_window(), Signal.type != _USAGE,
                                 ~Signal.type.like("support.%"), ~Signal.type.like("sentiment.%"))
            .order_by(Signal.occurred_at.desc(), Signal.id.desc()).limit(_MAX_OTHER_SIGNALS)))

    def new_count(self) -> int:
        if self.since is None:
            return 0
        return self.session.scalar(select(func.count(Signal.id)).where(
            Signal.account_id == self.account.id, Signal.occurred_at > self.since,
            Signal.occurred_at <= self.now)) or 0

    def _is_new(self, at: datetime) -> bool:
        return self.since is not None and at > self.since

    def summary(self, catalog: Catalog, people: _People) -> dict[str, Any]:
        closed = self.closed_tickets()
        return {
            "window_days": self.window.days,
            "usage": self.usage(),
            "tickets": [_ticket(s, catalog, closed, new=self._is_new(s.occurred_at)) for s in self.tickets()],
            "other": [{"type": s.type, "label": _label(catalog, s.type), "occurred_at": _iso(s.occurred_at),
                       "source": s.source, "summary": _in_words(s, catalog=catalog, people=people, now=self.now),
                       "new": self._is_new(s.occurred_at)}
                      for s in self.others()],
        }


def _in_words(signal: Signal, *, catalog: Catalog, people: _People, now: datetime) -> str:
    """A signal's payload on one line, through the catalog: "Deal amount $92,000, Owner Omar Diaz"."""
    shown = _fields(signal.type, signal.payload or {}, catalog=catalog, people=people, now=now)
    return _short(", ".join(f"{item['label']} {item['shown']}" for item in shown), _MAX_SUMMARY_CHARS)


def _change(value: float, before: tuple[datetime, float] | None) -> dict[str, Any] | None:
    if before is None:
        return None
    at, old = before
    return {"from": old, "at": _iso(at), "delta": value - old,
            "pct": round((value - old) / old * 100, 1) if old else None}


def _is_closing(signal: Signal) -> bool:
    status = str((signal.payload or {}).get("status") or "").strip().lower()
    return status in _CLOSED_STATUSES or any(word in signal.type for word in _CLOSING_WORDS)


def _severity(payload: Mapping[str, Any]) -> str | None:
    for key in ("severity", "priority"):
        value = payload.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def _is_negative(signal: Signal) -> bool:
    payload = signal.payload or {}
    if signal.type == "sentiment.negative":
        return True
    sentiment = payload.get("sentiment")
    if isinstance(sentiment, str) and sentiment.strip().lower() == "negative":
        return True
    score = _as_number(sentiment if sentiment is not None else payload.get("score"))
    return signal.type.startswith("sentiment.") and score is not None and score < 0


def _excerpt(payload: Mapping[str, Any]) -> str:
    parts = [str(payload["subject"])] if payload.get("subject") else []
    body = next((payload[key] for key in _EXCERPT_KEYS if isinstance(payload.get(key), str) and payload[key].strip()),
                None)
    if body is not None:
        parts.append(str(body))
    return _short(" - ".join(parts), _MAX_EXCERPT_CHARS)


def _ticket(signal: Signal, catalog: Catalog, closed: set[str], *, new: bool) -> dict[str, Any]:
    payload = signal.payload or {}
    ticket = payload.get("ticket_id") or payload.get("ticket")
    severity = _severity(payload)
    is_ticket = signal.type.startswith("support.")
    open_ = is_ticket and not _is_closing(signal) and (ticket is None or str(ticket) not in closed)
    return {
        "signal_id": signal.id, "type": signal.type, "label": _label(catalog, signal.type),
        "occurred_at": _iso(signal.occurred_at), "ticket": str(ticket) if ticket is not None else None,
        "severity": severity, "open": open_,
        "high": severity is not None and severity.lower() in _HIGH_SEVERITY,
        "negative": _is_negative(signal), "channel": payload.get("channel"),
        "score": _json(payload.get("score")), "excerpt": _excerpt(payload), "new": new,
    }


def _risks(session: Session, *, account: Account, journey: Journey | None, activity: _Activity, now: datetime,
           options: BriefOptions, snapshot: Mapping[str, Any] | None, since: datetime | None) -> list[dict[str, Any]]:
    """What a rep must not miss, each with its date: the Risks section (empty: no section)."""
    risks: list[dict[str, Any]] = []
    if journey is not None:
        sensitive = sensitive_signal(session, account_id=account.id, types=_sensitive_types(session, journey),
                                     now=now)
        if sensitive is not None:
            reason = protection_reason(sensitive)
            until = (sensitive.occurred_at + SENSITIVE_LOOKBACK).strftime("%Y-%m-%d")
            risks.append({"kind": "protected", "signal_id": sensitive.id, "at": _iso(sensitive.occurred_at),
                          "text": f"{reason[0].upper()}{reason[1:]}. Customer-facing automation (emails, surveys) "
                                  f"is held back until {until}."})
    closed = activity.closed_tickets()
    catalog = shipped_catalog()
    for signal in activity.tickets():
        item = _ticket(signal, catalog, closed, new=since is not None and signal.occurred_at > since)
        when = f"{signal.occurred_at:%Y-%m-%d} ({relative_day(signal.occurred_at, now)})"
        excerpt = f': "{item["excerpt"]}"' if item["excerpt"] else ""
        if item["open"] and item["high"]:
            risks.append({"kind": "ticket", "signal_id": signal.id, "at": item["occurred_at"],
                          "text": f"Open high-severity ticket {item['ticket'] or ''} ({item['severity']}), "
                                  f"{when}{excerpt}".replace("ticket  (", "ticket (")})
        elif item["negative"]:
            via = f" via {item['channel']}" if item["channel"] else ""
            score = f", score {_show(item['score'])}" if item["score"] is not None else ""
            risks.append({"kind": "sentiment", "signal_id": signal.id, "at": item["occurred_at"],
                          "text": f"Negative sentiment{via}{score}, {when}{excerpt}"})
    if account.renewal_date is not None:
        left = account.renewal_date - now
        if timedelta(0) <= left <= options.renewal_within:
            risks.append({"kind": "renewal", "at": _iso(account.renewal_date),
                          "text": f"Renewal {relative_day(account.renewal_date, now)} "
                                  f"({account.renewal_date:%Y-%m-%d})"})
        elif -options.window <= left < timedelta(0):
            risks.append({"kind": "renewal", "at": _iso(account.renewal_date),
                          "text": f"Renewal date passed {relative_day(account.renewal_date, now)} "
                                  f"({account.renewal_date:%Y-%m-%d}) with no renewal recorded"})
    usage = activity.usage()
    month = usage["month"] if usage else None
    if usage and month and month["pct"] is not None and month["pct"] <= _USAGE_DROP_PCT:
        risks.append({"kind": "usage", "at": usage["at"],
                      "text": f"Usage down {-month['pct']:g}% in 30 days ({_plain_number(month['from'])} -> "
                              f"{_plain_number(usage['active_users'])} active users)"})
    before = ((snapshot or {}).get("account") or {}).get("health")
    health = account.health_score
    if isinstance(before, (int, float)) and health is not None and health < before:
        risks.append({"kind": "health", "text": f"Health fell from {_plain_number(before)} to {health} "
                                                f"since this task was created"})
    return risks[:_MAX_RISKS]


def _health(account: Account) -> dict[str, Any] | None:
    """The account's health score and the measures that cost it the most (the health model's)."""
    state = account.health_state
    if state is None:
        return None
    return {"score": state.score, "source": state.source, "model": state.playbook_id,
            "computed_at": _iso(state.computed_at), "reasons": top_reasons(state.contributions)}


def _sensitive_types(session: Session, journey: Journey) -> tuple[str, ...]:
    """The signal types that put the account in the journey's playbook's protected human zone."""
    version = session.get(PlaybookVersion, journey.playbook_version_id)
    if version is None:
        return ()
    try:
        return compiled(version).sensitive_signals
    except PlaybookInvalid:  # a version that no longer compiles runs nothing either; the brief goes on
        return ()


def _journeys(session: Session, account: Account, *, current: Journey | None, task_id: int | None,
              now: datetime) -> dict[str, Any]:
    journeys = session.scalars(
        select(Journey).where(Journey.account_id == account.id)
        .order_by(Journey.enrolled_at.desc(), Journey.id.desc()).limit(_MAX_JOURNEYS)
    ).all()
    runs = _step_runs(session, [j.id for j in journeys])
    building = task_id is None  # the brief of a task being created: its own step is about to wait on it
    items = []
    for j in journeys:
        mine = current is not None and j.id == current.id
        steps = []
        for r in reversed(runs.get(j.id, [])):  # newest first
            status = r.status
            if mine and ((building and r.status == "running" and r.step_id == j.current_step_id)
                         or (task_id is not None and (r.outcome or {}).get("task_id") == task_id
                             and r.status == "waiting")):
                status = "waiting on this task"
            steps.append({"step_id": r.step_id, "kind": r.kind, "status": status, "started_at": _iso(r.started_at),
                          "finished_at": _iso(r.finished_at), "reason": r.reason,
                          "task_id": (r.outcome or {}).get("task_id")})
        items.append({
            "playbook_id": j.playbook_id,
            "status": j.status,
            "state": _journey_state(j, mine=mine, building=building, steps=steps, now=now),
            "enrolled_at": _iso(j.enrolled_at),
            "ended_at": _iso(j.ended_at),
            "current_step": j.current_step_id,
            "steps": steps,
        })
    return {"items": items}


def _journey_state(journey: Journey, *, mine: bool, building: bool, steps: list[dict[str, Any]],
                   now: datetime) -> str:
    """The journey's state in words: "waiting" when it waits, on what and until when."""
    at = f" at step {journey.current_step_id}" if journey.current_step_id else ""
    if journey.status not in ("active", "waiting"):
        return journey.status
    if mine and (building or any(s["status"] == "waiting on this task" for s in steps)):
        return f"waiting on this task{at}"
    if journey.wait_signal or journey.wait_until:
        what = f" for {journey.wait_signal}" if journey.wait_signal else ""
        until = (f" until {journey.wait_until:%Y-%m-%d %H:%M} UTC ({relative_day(journey.wait_until, now)})"
                 if journey.wait_until else "")
        return f"waiting{what}{until}{at}"
    if journey.status == "waiting":
        task = next((s.get("task_id") for s in steps if s["status"] == "waiting" and s.get("task_id")), None)
        return f"waiting on task {task}{at}" if task else f"waiting{at}"
    return f"active{at}"


def _automations(session: Session, account: Account, now: datetime) -> dict[str, Any]:
    rows = session.execute(
        select(StepRun, Journey.playbook_id).join(Journey, Journey.id == StepRun.journey_id)
        .where(Journey.account_id == account.id, StepRun.kind == "automated")
        .order_by(StepRun.started_at.desc(), StepRun.id.desc()).limit(_MAX_AUTOMATIONS)
    ).all()
    touches = session.execute(
        select(CustomerTouch, Journey.playbook_id).outerjoin(Journey, Journey.id == CustomerTouch.journey_id)
        .where(CustomerTouch.account_id == account.id, CustomerTouch.at > now - _TOUCH_WINDOW,
               CustomerTouch.at <= now)
        .order_by(CustomerTouch.at.desc(), CustomerTouch.id.desc()).limit(_MAX_TOUCHES)
    ).all()
    return {
        "steps": [{"playbook_id": playbook_id, "step_id": run.step_id, "oversight": run.oversight,
                   "status": run.status, "at": _iso(run.finished_at or run.started_at),
                   "reason": run.reason, "outcome": _json(run.outcome or {})}
                  for run, playbook_id in rows],
        "customer_touches_30d": [{"action": t.action, "at": _iso(t.at), "step_id": t.step_id,
                                  "playbook_id": playbook_id} for t, playbook_id in touches],
    }


def _deal(deal: Deal | None) -> dict[str, Any] | None:
    if deal is None:
        return None
    return _json({"name": deal.name, "amount": deal.amount, "stage": deal.stage, "kind": deal.kind,
                  "close_date": deal.close_date,
                  "owner": {"name": deal.owner.name, "email": deal.owner.email} if deal.owner else None})


def _step_runs(session: Session, journey_ids: list[int]) -> dict[int, list[StepRun]]:
    if not journey_ids:
        return {}
    grouped: dict[int, list[StepRun]] = {}
    for run in session.scalars(select(StepRun).where(StepRun.journey_id.in_(journey_ids)).order_by(StepRun.id)):
        grouped.setdefault(run.journey_id, []).append(run)
    return grouped


# -- text -------------------------------------------------------------------------


@dataclass
class _Block:
    """One section of the text: fixed lines, then a list that may lose its tail."""

    heading: str
    fixed: list[str]
    items: list[str] = field(default_factory=list)
    omitted: int = 0
    empty: str = "- none"
    name: str = ""

    def render(self) -> str:
        lines = [self.heading, *self.fixed, *self.items]
        if self.omitted:
            lines.append(f"- ({self.omitted} more omitted)")
        if len(lines) == 1:
            lines.append(self.empty)
        return "\n".join(lines)


def render_text(data: Mapping[str, Any], *, limit: int = MAX_TEXT_LENGTH) -> str:
    """The brief as plain text of at most `limit` characters."""
    now = datetime.fromisoformat(data["generated_at"]) if data.get("generated_at") else datetime.now(UTC)
    head = _Block("Why you got this", _trigger_lines(data, now))
    protected = [head]
    if data.get("risks"):
        protected.append(_Block("Risks", [_line(f"- {risk['text']}") for risk in data["risks"]]))
    if data.get("health") is not None:
        protected.append(_health_block(data["health"]))
    protected.append(_Block("Recommendation", [data["recommendation"] or "(none given)"]))
    if data.get("proposal") is not None:
        protected.append(_proposal_block(data["proposal"]))
    if data.get("drafted_by") is not None:
        protected.append(_drafted_block(data["drafted_by"]))
    blocks = [_section_block(name, data[name], now) for name in data["sections"]]
    return _fit(protected, blocks, limit)


def _health_block(health: Mapping[str, Any]) -> _Block:
    how = "imported from the CRM" if health["source"] == "imported" else f"health model {health['model']}"
    lines = [f"- Score: {health['score']}/100 ({how}, {_show_time(health['computed_at'])})"]
    lines += [_line(f"- Costs most: {reason}") for reason in health["reasons"]]
    return _Block("Health", lines)


def _drafted_block(drafted: Mapping[str, Any]) -> _Block:
    line = f"- Drafted by: {drafted['drafter']}"
    if drafted.get("fallback"):
        line += f" (the {drafted['requested']} drafter was asked; {drafted['fallback']}, so the template stands in)"
    return _Block("Draft", [_line(line), "- Review it before it is published."])


def _proposal_block(proposal: Mapping[str, Any]) -> _Block:
    score = proposal["score"]
    lines = [f"- Category: {proposal['category'] or '-'}",
             f"- Score: {'-' if score is None else f'{score:.2f}'} (threshold {proposal['threshold']:.2f})",
             f"- Why it came to you: {proposal['why']}"]
    if proposal["proposed_path"]:
        lines.append(f"- Automated path it would take: {proposal['proposed_path']} "
                     "(approve to take it, reject to decide otherwise)")
    lines += [_line(f"- Evidence: {item}") for item in proposal["evidence"][:_MAX_TRIGGER_VALUES]]
    return _Block("Proposed decision", lines)


def _fit(protected: list[_Block], blocks: list[_Block], limit: int) -> str:
    """Join the blocks, cutting the least important lines first until the text fits `limit`."""
    def total() -> int:
        parts = [len(b.render()) for b in (*protected, *blocks)]
        return sum(parts) + 2 * (len(parts) - 1)  # blank line between blocks

    def rank(block: _Block) -> int:
        return _CUT_ORDER.index(block.name) if block.name in _CUT_ORDER else len(_CUT_ORDER)

    dropped: list[_Block] = []
    length = total()
    while length > limit:
        trimmable = [b for b in blocks if b.items]
        if trimmable:
            least = min(trimmable, key=rank)
            # Drop several lines at once when far over, one at a time when close.
            excess_lines = max(1, min(len(least.items),
                                      (length - limit) // max(1, _mean_len(least.items))))
            del least.items[-excess_lines:]
            least.omitted += excess_lines
        elif blocks:
            # Lists are empty and it still does not fit: drop whole sections, least important first.
            victim = min(blocks, key=rank)
            blocks.remove(victim)
            dropped.append(_Block(f"({victim.heading}: omitted, too long)", [], empty=""))
        else:
            # Only the trigger, risks and recommendation are left: a recommendation longer
            # than the CRM field is the one thing that has to be shortened.
            text = "\n\n".join(b.render() for b in (*protected, *dropped))
            return text[: limit - 40] + "\n(truncated: full brief in Handoff)"
        length = total() + sum(len(b.render()) + 2 for b in dropped)
    return "\n\n".join(b.render() for b in (*protected, *blocks, *dropped))


def _mean_len(items: list[str]) -> int:
    return sum(len(i) + 1 for i in items) // len(items)


def _trigger_lines(data: Mapping[str, Any], now: datetime) -> list[str]:
    trigger = data["trigger"]
    if trigger is None:
        lines = ["- No triggering signal (started by schedule or by an operator)."]
    elif trigger.get("type") is None:
        lines = ["- No triggering signal."]
    else:
        at = datetime.fromisoformat(trigger["occurred_at"])
        label = trigger.get("label") or trigger["type"]
        lines = [f"- Signal: {label} ({trigger['type']}) at {_show_time(trigger['occurred_at'])}, "
                 f"{relative_day(at, now)} (source: {trigger['source']})"]
        if trigger.get("stale"):
            lines.append(f"- Signal age: {trigger['age_days']} days. It happened on {at:%Y-%m-%d}: "
                         "check it still applies before acting on it.")
        shown = trigger.get("fields")
        if shown is None:  # a brief stored before fields were rendered
            shown = [{"label": key, "shown": _short(_show(value), _MAX_VALUE_CHARS)}
                     for key, value in trigger["values"].items()]
        for item in shown[:_MAX_TRIGGER_VALUES]:
            lines.append(f"- {item['label']}: {item['shown']}")
        if len(shown) > _MAX_TRIGGER_VALUES:
            lines.append(f"- ({len(shown) - _MAX_TRIGGER_VALUES} more values omitted)")
    rule = trigger.get("rule") if trigger else None
    if rule:
        version = f" version {rule['version']}" if rule.get("version") else ""
        step = f", step {rule['step_id']}" if rule.get("step_id") else ""
        lines.append(f"- Made by: playbook {rule['playbook_id']}{version}{step}")
    elif trigger and trigger.get("why"):
        lines.append(f"- Made by: {trigger['why']}")
    if data.get("assigned"):
        lines.append(f"- Why you: {data['assigned']} (the step's assignment rule)")
    priority = data.get("priority")
    if priority:
        reasons = "; ".join(priority.get("reasons") or ()) or "nothing raised or lowered it"
        lines.append(f"- Priority {priority['level']}: {reasons}")
    live = data.get("live")
    if live:
        since = _show_time(live["since"])
        lines.append(f"- Live view as of {_show_time(data['generated_at'])}: {live['new_signals']} new signal(s) "
                     f"since the task was created ({since}), marked [new]; the CRM task holds the brief as created.")
    return lines


def _new(item: Mapping[str, Any]) -> str:
    return "[new] " if item.get("new") else ""


def _section_block(name: str, value: Any, now: datetime) -> _Block:
    heading = _HEADINGS[name]
    if name == "account":
        a = value
        owner = a["owner"]
        lines = [
            f"- Name: {a['name']}" + (f" ({a['domain']})" if a["domain"] else ""),
            f"- Segment: {a['segment'] or '-'} | Industry: {a['industry'] or '-'}",
            f"- ARR: {_money(a['arr']) if a['arr'] else 'not known yet'} | Health: {_show(a['health'])}",
            f"- Stage: {a['stage']}, {_show(a['days_in_stage'])} days in stage",
            f"- Owner: {owner['name']} <{owner['email']}>" if owner else "- Owner: none",
        ]
        if a["renewal_date"]:
            relative = a.get("renewal_relative") or relative_day(datetime.fromisoformat(a["renewal_date"]), now)
            lines.append(f"- Renewal: {a['renewal_date'][:10]} ({relative})")
        return _Block(heading, lines, name=name)
    if name == "contacts":
        items = []
        for c in value["items"]:
            tags = ", ".join(t for t in ("primary" if c["primary"] else "", c["role"] or "") if t)
            parts = [c["name"] + (f" ({tags})" if tags else ""), c["title"] or "", c["email"] or ""]
            items.append("- " + " | ".join(p for p in parts if p))
        fixed = []
        if not value["items"] and "fill_in" in value:
            fixed.append(f"- No contacts on file: add them on {value['fill_in']}, so the next brief names them.")
            for person in value.get("from_trigger", ()):
                who = " ".join(p for p in (person["name"] or "", f"<{person['email']}>" if person["email"] else "")
                               if p)
                fixed.append(_line(f"- From the trigger: {who} ({person['role']})"))
        block = _Block(heading, fixed, items, empty="- no contacts on file", name=name)
        block.omitted = max(0, value["total"] - len(items))
        return block
    if name == "recent_signals":
        return _activity_block(heading, value, now)
    if name == "journey":
        items = []
        for j in value["items"]:
            ended = f", ended {_show_time(j['ended_at'])}" if j["ended_at"] else ""
            state = j.get("state") or j["status"]
            items.append(_line(f"- {j['playbook_id']}: {state}, enrolled {_show_time(j['enrolled_at'])}{ended}"))
            for s in j["steps"]:
                reason = f" - {s['reason']}" if s["reason"] else ""
                items.append(_line(f"  - {s['step_id']} ({s['kind']}): {s['status']} "
                                   f"{_show_time(s['finished_at'] or s['started_at'])}{reason}"))
        return _Block(heading, [], items, empty="- no journeys yet", name=name)
    if name == "automations":
        items = [_line(f"- {_show_time(s['at'])} {s['playbook_id']}/{s['step_id']}: {s['status']}"
                       + (f" ({s['oversight']})" if s["oversight"] else "")
                       + (f" - {s['reason']}" if s["reason"] else ""))
                 for s in value["steps"]]
        touches = value["customer_touches_30d"]
        fixed = [f"- Customer touches in the last 30 days: {len(touches)}"]
        items += [_line(f"- touch {_show_time(t['at'])} {t['action']} ({t['playbook_id'] or '-'}/{t['step_id']})")
                  for t in touches]
        return _Block(heading, fixed, items, name=name)
    if name == "deal":
        if value is None:
            return _Block(heading, ["- no deal linked"], name=name)
        owner = value["owner"]
        close = "-"
        if value["close_date"]:
            close = f"{value['close_date'][:10]} ({relative_day(datetime.fromisoformat(value['close_date']), now)})"
        return _Block(heading, [
            f"- {value['name']}: {_money(value['amount'])}, stage {value['stage'] or '-'} ({value['kind']})",
            f"- Close date: {close}",
            f"- Deal owner: {owner['name']} <{owner['email']}>" if owner else "- Deal owner: none",
        ], name=name)
    raise AssertionError(f"no renderer for section {name}")  # pragma: no cover - SECTIONS is checked


def _activity_block(heading: str, value: Mapping[str, Any], now: datetime) -> _Block:
    days = value.get("window_days", 30)
    fixed: list[str] = []
    usage = value.get("usage")
    if usage:
        at = datetime.fromisoformat(usage["at"])
        parts = [f"- {_new(usage)}Product usage: {_plain_number(usage['active_users'])} active users on "
                 f"{at:%Y-%m-%d} ({relative_day(at, now)})"]
        for span, change in (("7 days", usage["week"]), ("30 days", usage["month"])):
            parts.append(f"{span}: {_trend(change)}" if change else f"{span}: no earlier reading")
        parts.append(f"{usage['readings']} readings in {days} days")
        fixed.append("; ".join(parts))
    items = []
    for t in value.get("tickets", ()):
        at = datetime.fromisoformat(t["occurred_at"])
        what = t["label"] + (f" {t['ticket']}" if t["ticket"] else "")
        details = [f"severity {t['severity']}" if t["severity"] else "",
                   ("open" if t["open"] else "closed") if t["type"].startswith("support.") else "",
                   f"via {t['channel']}" if t.get("channel") else "",
                   f"score {_show(t['score'])}" if t.get("score") is not None else ""]
        shown = ", ".join(d for d in details if d)
        excerpt = f': "{t["excerpt"]}"' if t["excerpt"] else ""
        items.append(_line(f"- {_new(t)}{at:%Y-%m-%d} ({relative_day(at, now)}) {what}"
                           + (f" [{shown}]" if shown else "") + excerpt))
    for s in value.get("other", ()):
        at = datetime.fromisoformat(s["occurred_at"])
        items.append(_line(f"- {_new(s)}{at:%Y-%m-%d} ({relative_day(at, now)}) {s['label']}"
                           + (f": {s['summary']}" if s["summary"] else "")))
    if not fixed and not items:
        return _Block(heading, [], empty=f"- nothing in the last {days} days", name="recent_signals")
    return _Block(heading, fixed, items, name="recent_signals")


def _trend(change: Mapping[str, Any]) -> str:
    delta = change["delta"]
    word = "up" if delta > 0 else "down" if delta < 0 else "no change"
    amount = "" if delta == 0 else f" {_plain_number(abs(delta))}"
    pct = f" ({change['pct']:+.1f}%)" if change.get("pct") is not None and delta else ""
    return f"{word}{amount}{pct} from {_plain_number(change['from'])}"


# -- formatting -------------------------------------------------------------------


def relative_day(when: datetime, now: datetime) -> str:
    """ "today", "tomorrow", "in 3 days", "yesterday", "2 days ago": by UTC calendar day, either side of now."""
    days = (when.astimezone(UTC).date() - now.astimezone(UTC).date()).days
    if days == 0:
        return "today"
    if days == 1:
        return "tomorrow"
    if days == -1:
        return "yesterday"
    return f"in {days} days" if days > 0 else f"{-days} days ago"


def _label(catalog: Catalog, signal_type: str) -> str:
    spec = catalog.signal(signal_type)
    return spec.label if spec is not None else signal_type


def _json(value: Any) -> Any:
    """Datetimes to ISO strings and Decimals to floats, recursively."""
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return value


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _show_time(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return ", ".join(f"{k}={_show(v)}" for k, v in value.items()) if isinstance(value, dict) \
            else ", ".join(_show(v) for v in value)
    return str(value)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.replace(",", "").strip())
        except ValueError:
            return None
    return None


def _plain_number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.2f}".rstrip("0").rstrip(".")


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _is_date_only(value: Any) -> bool:
    return (isinstance(value, date) and not isinstance(value, datetime)) or (
        isinstance(value, str) and len(value.strip()) == 10)


def _summary(payload: Mapping[str, Any]) -> str:
    """One line from a payload: its scalar values as key=value, shortened."""
    parts = [f"{k}={_show(v)}" for k, v in payload.items() if not isinstance(v, (dict, list))]
    return _short(", ".join(parts), _MAX_SUMMARY_CHARS)


def _money(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:,.0f}" if float(value).is_integer() else f"${value:,.2f}"


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())  # one line: CRM descriptions keep our line structure only
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _line(text: str) -> str:
    """One bullet on one line (reasons may hold newlines), keeping its indent, shortened."""
    indent = text[: len(text) - len(text.lstrip(" "))]
    return indent + _short(text, _MAX_LINE_CHARS - len(indent))
