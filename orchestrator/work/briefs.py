"""Decision briefs: everything a person needs to act on a task, in one view.

A brief is built once, when the task is created, and stored twice: as JSON (`data`,
for the API and dashboards) and as plain text (`text`, for the CRM task's
description field). The text must fit Salesforce's 32,000-character Task
Description, so when it is too long the longest lists lose their oldest entries
first, with "(N more omitted)"; the trigger and the recommendation are never cut.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.models import Account, Contact, CustomerTouch, Deal, Journey, Signal, StepRun
from orchestrator.playbook.context import account_view
from orchestrator.playbook.model import BRIEF_SECTIONS

__all__ = ["MAX_TEXT_LENGTH", "SECTIONS", "Brief", "build_brief"]

MAX_TEXT_LENGTH = 32_000  # Salesforce Task.Description
SECTIONS = BRIEF_SECTIONS

_MAX_CONTACTS = 5
_MAX_SIGNALS = 10
_MAX_JOURNEYS = 20
_MAX_AUTOMATIONS = 50
_MAX_TOUCHES = 50
_TOUCH_WINDOW = timedelta(days=30)
_MAX_TRIGGER_VALUES = 25
_MAX_VALUE_CHARS = 200
_MAX_SUMMARY_CHARS = 160
_MAX_LINE_CHARS = 500
# Key contacts first: who decides and who champions before who administers.
_CONTACT_ROLE_ORDER = {"champion": 0, "economic_buyer": 1, "admin": 2}
_HEADINGS = {
    "account": "Account",
    "contacts": "Key contacts",
    "recent_signals": "Recent signals",
    "journey": "Journey history",
    "automations": "What automation already did",
    "deal": "Deal",
}


@dataclass(frozen=True)
class Brief:
    """The structured brief (JSON-serializable) and its plain-text rendering."""

    data: dict[str, Any]
    text: str


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
) -> Brief:
    """Collect the sections the playbook asked for, in its order, and render them."""
    unknown = [name for name in sections if name not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown brief section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    if deal is None:
        deal_id = (journey.deal_id if journey is not None else None) or (
            trigger.deal_id if trigger is not None else None
        )
        deal = session.get(Deal, deal_id) if deal_id is not None else None

    trigger_data = _trigger(trigger, journey)
    data: dict[str, Any] = {
        "trigger": trigger_data,
        "recommendation": recommendation,
        "assigned": assignee_how,
        "sections": [name for name in sections if name != "trigger"],
        "generated_at": _iso(now),
    }
    collectors: dict[str, Callable[[], Any]] = {
        "account": lambda: _account(account, now),
        "contacts": lambda: _contacts(session, account),
        "recent_signals": lambda: _recent_signals(session, account),
        "journey": lambda: _journeys(session, account),
        "automations": lambda: _automations(session, account, now),
        "deal": lambda: _deal(deal),
    }
    for name in sections:
        if name != "trigger":
            data[name] = collectors[name]()
    return Brief(data=data, text=_render(data))


# -- collectors (each returns JSON-ready data) -------------------------------------


def _trigger(signal: Signal | None, journey: Journey | None) -> dict[str, Any] | None:
    why = ""
    if journey is not None:
        why = f"playbook {journey.playbook_id}"
        if journey.current_step_id:
            why += f", step {journey.current_step_id}"
    if signal is None:
        return {"type": None, "why": why} if why else None
    return {
        "signal_id": signal.id,
        "type": signal.type,
        "occurred_at": _iso(signal.occurred_at),
        "source": signal.source,
        "values": _json(signal.payload or {}),
        "summary": _summary(signal.payload or {}),
        "why": why,
    }


def _account(account: Account, now: datetime) -> dict[str, Any]:
    view = account_view(account, now=now)
    return _json({key: view[key] for key in (
        "id", "name", "domain", "segment", "industry", "arr", "health", "stage", "stage_entered_at",
        "days_in_stage", "renewal_date", "days_to_renewal", "owner")})


def _contacts(session: Session, account: Account) -> dict[str, Any]:
    contacts = session.scalars(select(Contact).where(Contact.account_id == account.id)).all()
    ranked = sorted(contacts, key=lambda c: (not c.is_primary, _CONTACT_ROLE_ORDER.get(c.role or "", 9),
                                             c.name.lower(), c.id))
    return {
        "items": [{"name": c.name, "title": c.title, "email": c.email, "role": c.role,
                   "primary": c.is_primary} for c in ranked[:_MAX_CONTACTS]],
        "total": len(contacts),
    }


def _recent_signals(session: Session, account: Account) -> dict[str, Any]:
    rows = session.scalars(
        select(Signal).where(Signal.account_id == account.id)
        .order_by(Signal.occurred_at.desc(), Signal.id.desc()).limit(_MAX_SIGNALS)
    ).all()
    return {"items": [{"type": s.type, "occurred_at": _iso(s.occurred_at), "source": s.source,
                       "summary": _summary(s.payload or {})} for s in rows]}


def _journeys(session: Session, account: Account) -> dict[str, Any]:
    journeys = session.scalars(
        select(Journey).where(Journey.account_id == account.id)
        .order_by(Journey.enrolled_at.desc(), Journey.id.desc()).limit(_MAX_JOURNEYS)
    ).all()
    runs = _step_runs(session, [j.id for j in journeys])
    return {"items": [{
        "playbook_id": j.playbook_id,
        "status": j.status,
        "enrolled_at": _iso(j.enrolled_at),
        "ended_at": _iso(j.ended_at),
        "current_step": j.current_step_id,
        "steps": [{"step_id": r.step_id, "kind": r.kind, "status": r.status, "started_at": _iso(r.started_at),
                   "finished_at": _iso(r.finished_at), "reason": r.reason}
                  for r in reversed(runs.get(j.id, []))],  # newest first
    } for j in journeys]}


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

    def render(self) -> str:
        lines = [self.heading, *self.fixed, *self.items]
        if self.omitted:
            lines.append(f"- ({self.omitted} more omitted)")
        if len(lines) == 1:
            lines.append(self.empty)
        return "\n".join(lines)


def _render(data: dict[str, Any]) -> str:
    head = _Block("Why you got this", _trigger_lines(data["trigger"], data.get("assigned", "")))
    recommendation = _Block("Recommendation", [data["recommendation"] or "(none given)"])
    blocks = [_section_block(name, data[name]) for name in data["sections"]]
    return _fit([head, recommendation], blocks, MAX_TEXT_LENGTH)


def _fit(protected: list[_Block], blocks: list[_Block], limit: int) -> str:
    """Join the blocks, trimming the longest lists first until the text fits `limit`."""
    def total() -> int:
        parts = [len(b.render()) for b in (*protected, *blocks)]
        return sum(parts) + 2 * (len(parts) - 1)  # blank line between blocks

    length = total()
    while length > limit:
        trimmable = [b for b in blocks if b.items]
        if trimmable:
            longest = max(trimmable, key=lambda b: (len(b.items), len("".join(b.items))))
            # Drop several lines at once when far over, one at a time when close.
            excess_lines = max(1, min(len(longest.items) // 2,
                                      (length - limit) // max(1, _mean_len(longest.items))))
            del longest.items[-excess_lines:]
            longest.omitted += excess_lines
        elif blocks:
            # Lists are empty and it still does not fit: drop whole sections, last first.
            dropped = blocks.pop()
            protected.append(_Block(f"({dropped.heading}: omitted, too long)", [], empty=""))
        else:
            # Only the trigger and recommendation are left: a recommendation longer
            # than the CRM field is the one thing that has to be shortened.
            text = "\n\n".join(b.render() for b in protected)
            return text[: limit - 40] + "\n(truncated: full brief in Handoff)"
        length = total()
    return "\n\n".join(b.render() for b in (*protected, *blocks))


def _mean_len(items: list[str]) -> int:
    return sum(len(i) + 1 for i in items) // len(items)


def _trigger_lines(trigger: dict[str, Any] | None, assigned: str) -> list[str]:
    if trigger is None:
        lines = ["- No triggering signal (started by schedule or by an operator)."]
    elif trigger.get("type") is None:
        lines = ["- No triggering signal."]
    else:
        lines = [f"- Signal: {trigger['type']} at {_show_time(trigger['occurred_at'])} (source: {trigger['source']})"]
        values = list(trigger["values"].items())
        for key, value in values[:_MAX_TRIGGER_VALUES]:
            lines.append(f"- {key}: {_short(_show(value), _MAX_VALUE_CHARS)}")
        if len(values) > _MAX_TRIGGER_VALUES:
            lines.append(f"- ({len(values) - _MAX_TRIGGER_VALUES} more values omitted)")
    if trigger and trigger.get("why"):
        lines.append(f"- Why it matters: {trigger['why']}")
    if assigned:
        lines.append(f"- Assigned to you: {assigned}")
    return lines


def _section_block(name: str, value: Any) -> _Block:
    heading = _HEADINGS[name]
    if name == "account":
        a = value
        owner = a["owner"]
        fixed = [
            f"- Name: {a['name']}" + (f" ({a['domain']})" if a["domain"] else ""),
            f"- Segment: {a['segment'] or '-'} | Industry: {a['industry'] or '-'}",
            f"- ARR: {_money(a['arr'])} | Health: {_show(a['health'])}",
            f"- Stage: {a['stage']}, {_show(a['days_in_stage'])} days in stage",
            f"- Owner: {owner['name']} <{owner['email']}>" if owner else "- Owner: none",
        ]
        if a["renewal_date"]:
            fixed.append(f"- Renewal: {a['renewal_date'][:10]} (in {a['days_to_renewal']} days)")
        return _Block(heading, fixed)
    if name == "contacts":
        items = []
        for c in value["items"]:
            tags = ", ".join(t for t in ("primary" if c["primary"] else "", c["role"] or "") if t)
            parts = [c["name"] + (f" ({tags})" if tags else ""), c["title"] or "", c["email"] or ""]
            items.append("- " + " | ".join(p for p in parts if p))
        block = _Block(heading, [], items, empty="- no contacts on file")
        block.omitted = max(0, value["total"] - len(items))
        return block
    if name == "recent_signals":
        items = [_line(f"- {_show_time(s['occurred_at'])} {s['type']}" + (f": {s['summary']}" if s["summary"] else ""))
                 for s in value["items"]]
        return _Block(heading, [], items)
    if name == "journey":
        items = []
        for j in value["items"]:
            ended = f", ended {_show_time(j['ended_at'])}" if j["ended_at"] else ""
            items.append(_line(f"- {j['playbook_id']}: {j['status']}, enrolled {_show_time(j['enrolled_at'])}{ended}"))
            for s in j["steps"]:
                reason = f" - {s['reason']}" if s["reason"] else ""
                items.append(_line(f"  - {s['step_id']} ({s['kind']}): {s['status']} "
                                   f"{_show_time(s['finished_at'] or s['started_at'])}{reason}"))
        return _Block(heading, [], items, empty="- no journeys yet")
    if name == "automations":
        items = [_line(f"- {_show_time(s['at'])} {s['playbook_id']}/{s['step_id']}: {s['status']}"
                       + (f" ({s['oversight']})" if s["oversight"] else "")
                       + (f" - {s['reason']}" if s["reason"] else ""))
                 for s in value["steps"]]
        touches = value["customer_touches_30d"]
        fixed = [f"- Customer touches in the last 30 days: {len(touches)}"]
        items += [_line(f"- touch {_show_time(t['at'])} {t['action']} ({t['playbook_id'] or '-'}/{t['step_id']})")
                  for t in touches]
        return _Block(heading, fixed, items)
    if name == "deal":
        if value is None:
            return _Block(heading, ["- no deal linked"])
        owner = value["owner"]
        return _Block(heading, [
            f"- {value['name']}: {_money(value['amount'])}, stage {value['stage'] or '-'} ({value['kind']})",
            f"- Close date: {value['close_date'][:10] if value['close_date'] else '-'}",
            f"- Deal owner: {owner['name']} <{owner['email']}>" if owner else "- Deal owner: none",
        ])
    raise AssertionError(f"no renderer for section {name}")  # pragma: no cover - SECTIONS is checked


# -- formatting -------------------------------------------------------------------


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


def _summary(payload: dict[str, Any]) -> str:
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
