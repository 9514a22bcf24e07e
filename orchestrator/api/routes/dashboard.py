"""/dashboard: the leadership reports as server-rendered HTML with SVG charts (no CDN, works offline).

Browsers cannot send an API key header, so /dashboard/login exchanges a leader or admin key for a
signed session cookie (HttpOnly, SameSite=Strict, 8 hours) that names the key; every request
checks the key again, so revoking it ends the session. Everything else is GET and changes
nothing, so the only form that writes (the login) is the only one SameSite has to guard.
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from werkzeug.wrappers import Response

from orchestrator.api.app import runtime
from orchestrator.apikeys import Principal, Role, authenticate
from orchestrator.db import unit_of_work
from orchestrator.errors import Forbidden, Invalid
from orchestrator.models import ApiKey, Owner, PlaybookVersion
from orchestrator.reports import drill
from orchestrator.reports.catalog import run_report
from orchestrator.reports.scope import Scope

blp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="../templates")

COOKIE = "handoff_session"
SESSION_AGE = timedelta(hours=8)
ALLOWED = (Role.ADMIN, Role.LEADER)
PERIODS = {"7d": 7, "30d": 30, "90d": 90, "365d": 365}


def _serializer() -> URLSafeTimedSerializer:
    secret = current_app.config.setdefault(
        "HANDOFF_SESSION_SECRET", os.environ.get("HANDOFF_SESSION_SECRET") or secrets.token_hex(32))
    return URLSafeTimedSerializer(secret, salt="handoff-dashboard")


def _viewer() -> Principal | None:
    """The caller: an API key header (as everywhere) or a live session cookie."""
    found: Principal | None = g.get("principal")
    if found is not None:
        return found
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        key_id = _serializer().loads(raw, max_age=int(SESSION_AGE.total_seconds()))["k"]
    except (BadSignature, KeyError, TypeError):
        return None
    with unit_of_work(runtime().sessions, read_only=True) as session:
        key = session.get(ApiKey, int(key_id))
        if key is None or key.revoked_at is not None:
            return None
        return Principal(key_id=key.id, name=key.name, role=Role(key.role), owner_id=key.owner_id)


def _require() -> Principal | Response:
    who = _viewer()
    if who is None:
        return redirect(url_for("dashboard.login"))
    if who.role not in ALLOWED:
        raise Forbidden(f"a {who.role} key may not see the dashboard")
    return who


@blp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """A form for an API key; a leader or admin key becomes a session cookie."""
    error = ""
    if request.method == "POST":
        presented = request.form.get("key", "")[:200]
        with unit_of_work(runtime().sessions, read_only=True) as session:
            who = authenticate(session, presented=presented, now=runtime().clock.now()) if presented else None
        if who is not None and who.role in ALLOWED:
            response = redirect(url_for("dashboard.overview"))
            response.set_cookie(COOKIE, _serializer().dumps({"k": who.key_id}),
                                max_age=int(SESSION_AGE.total_seconds()), httponly=True, samesite="Strict",
                                secure=request.is_secure, path="/dashboard")
            return response
        error = "That key is unknown, revoked, or not a leader or admin key."
    return render_template("login.html", error=error), 401 if error else 200


def _filters() -> dict[str, Any]:
    period = request.args.get("period", "30d")
    if period not in PERIODS:
        period = "30d"
    until = runtime().clock.now()
    found: dict[str, Any] = {"period": period, "since": until - timedelta(days=PERIODS[period]), "until": until,
             "playbook": request.args.get("playbook", "")[:100], "stage": request.args.get("stage", "")[:20],
             "team": request.args.get("team", "")[:100]}
    found["scope"] = Scope(team=found["team"], stage=found["stage"], playbook=found["playbook"])
    return found


def _url(page: str, filters: dict[str, Any], **params: Any) -> str:
    """A drill-down link keeping the period and filters; `params` win over them ("" drops one)."""
    query = {"period": filters["period"], "team": filters["team"], "stage": filters["stage"],
             "playbook": filters["playbook"], **params}
    return f"/dashboard/{page}?" + urlencode({k: v for k, v in query.items() if v not in ("", None)})


def _links(report: str, row: dict[str, Any], f: dict[str, Any]) -> dict[str, str]:
    """For each number of a report row, the drill-down listing what it counts."""
    if report in ("oversight", "noise"):
        at = {"playbook": row["playbook"], "step": row["step"]}
        tasks = {name: _url("tasks", f, which=which, **at) for name, which in (
            ("tasks", "tasks"), ("decisions", "decisions"), ("approval_rate", "approved"),
            ("rejection_rate", "rejected"), ("quick_share", "quick"), ("decide_median_s", "decisions"),
            ("closed_without_action", "closed_without_action"), ("rated", "rated"), ("not_useful", "not_useful"))}
        runs = {name: _url("runs", f, which=which, **at) for name, which in (
            ("runs", "runs"), ("skipped", "skipped"), ("override_rate", "overridden"), ("noise_rate", "runs"))}
        return {**tasks, **runs}
    if report == "sla":
        at = {"by": "team", "group": row["group"], "team": ""}
        links = {name: _url("tasks", f, which=which, **at) for name, which in (
            ("tasks", "tasks"), ("ack_adherence", "ack_breached"), ("due_adherence", "due_breached"),
            ("breaches", "breaches"), ("paused_hours", "paused"), ("ack_median_min", "tasks"),
            ("done_median_min", "tasks"))}
        links.update({name: _url("tasks", f, which="escalated", rung=name.rsplit("_", 1)[1], **at) for name in row
                      if name.startswith("escalations_rung_")})
        return links
    if report == "loop":
        at = {"stage": row["stage"]}
        return {name: _url("changes", f, which=which, **at) for name, which in (
            ("entered", "entered"), ("moved_on", "moved_on"), ("drop_off", "entered"), ("skipped", "skipped"),
            ("signal_journeys", "signal_journeys"), ("touched", "touched"), ("touch_median_min", "touched"),
            ("touch_p90_min", "touched"))}
    if report == "automation":
        at = {"stage": row["stage"]}
        return {name: _url("runs", f, which=which, **at) for name, which in (
            ("runs", "runs"), ("automated", "automated"), ("human", "human"), ("hybrid", "hybrid"),
            ("automated_share", "automated"))}
    if report == "exceptions":
        at = {"category": row["category"]}
        return {name: _url("items", f, which=which, **at) for name, which in (
            ("raised", "raised"), ("occurrences", "raised"), ("open", "open"), ("overdue", "overdue"),
            ("overdue_share", "overdue"), ("open_median_age_h", "open"), ("oldest_open_age_h", "open"))}
    if report == "time-saved":
        at = {"playbook": row["playbook"]}
        return {**{name: _url("runs", f, which="automated_actions", **at)
                   for name in ("automated_actions", "automated_minutes")},
                **{name: _url("tasks", f, which="human_tasks", **at)
                   for name in ("human_estimate_minutes", "human_elapsed_minutes")}}
    return {}


# Figures that count the rows their drill-down lists (the others are rates, sums or times over them;
# breaches count verdicts, two for a task that missed both deadlines, and list the tasks).
COUNTS = frozenset({"runs", "decisions", "tasks", "skipped", "closed_without_action", "rated", "not_useful",
                    "entered", "moved_on", "signal_journeys", "touched", "automated", "human",
                    "hybrid", "raised", "open", "overdue", "automated_actions"})


def is_count(name: str) -> bool:
    return name in COUNTS or name.startswith("escalations_rung_")


# What each section shows, in order: (report, title).
SECTIONS = (("sla", "SLA adherence by team"), ("loop", "The Loop"), ("automation", "Automation mix"),
            ("exceptions", "Exceptions"), ("time-saved", "Time saved"))


@blp.route("")
def overview() -> Any:
    """Every report within the filters, charts and tables, each number a link to what it counts."""
    who = _require()
    if isinstance(who, Response):
        return who
    filters = _filters()
    sessions, scope = runtime().sessions, filters["scope"]
    with unit_of_work(sessions, read_only=True) as session:
        stages = sorted(set(session.scalars(select(PlaybookVersion.stage).distinct())))
        playbooks = sorted(set(session.scalars(select(PlaybookVersion.playbook_id).distinct())))
        teams = sorted(team for team in session.scalars(select(Owner.team).distinct()) if team)

    def rows(name: str, **kwargs: Any) -> list[dict[str, Any]]:
        return run_report(name, sessions=sessions, since=filters["since"], until=filters["until"], scope=scope,
                          estimates=runtime().settings.action_estimates, **kwargs)

    found = {"oversight": rows("oversight"), "noise": rows("noise"), "sla": rows("sla", by="team"),
             "loop": rows("loop"), "automation": rows("automation"), "exceptions": rows("exceptions"),
             "time-saved": rows("time-saved")}
    links = {name: [_links(name, row, filters) for row in report] for name, report in found.items()}
    charts = {
        "sla-chart": _bars(found["sla"], "due_adherence", label="group"),
        "loop-chart": _bars(found["loop"], "entered", label="stage"),
        "automation-chart": _bars(found["automation"], "automated_share", label="stage"),
        "exceptions-chart": _bars(found["exceptions"], "open", label="category"),
        "time-saved-chart": _bars(found["time-saved"], "automated_minutes", label="playbook"),
    }
    return render_template("dashboard.html", filters=filters, periods=list(PERIODS), stages=stages,
                           playbooks=playbooks, teams=teams, found=found, links=links, sections=SECTIONS,
                           approval_bars=_bars(found["oversight"], "approval_rate"),
                           noise_bars=_bars(found["noise"], "noise_rate"), charts=charts, is_count=is_count)


def _bars(rows: list[dict[str, Any]], figure: str, *, label: str = "") -> list[dict[str, Any]]:
    """One horizontal bar per row with a value: its label, value and width in a 300-unit chart (shares
    at their size, counts against the largest)."""
    shown = [r for r in rows if r.get(figure) is not None]
    share = figure.endswith(("_rate", "_share", "_adherence"))
    top = max((float(r[figure]) for r in shown), default=0.0) or 1.0
    return [{"label": row[label] if label else f"{row['playbook']}/{row['step']}", "value": row[figure],
             "share": share, "width": round(300 * (float(row[figure]) if share else float(row[figure]) / top)),
             "y": 24 * index} for index, row in enumerate(shown)]


def _drill_args() -> tuple[dict[str, Any], dict[str, Any]]:
    filters = _filters()
    return {"sessions": runtime().sessions, "since": filters["since"], "until": filters["until"],
            "scope": filters["scope"], "which": request.args.get("which", "")[:40]}, filters


@blp.route("/tasks")
def tasks() -> Any:
    """The tasks behind a number (a step's, or an SLA group's when `by` and `group` are given)."""
    who = _require()
    if isinstance(who, Response):
        return who
    args, filters = _drill_args()
    args["which"] = args["which"] or "tasks"
    step, by, group, rung = (request.args.get(name, "")[:200] for name in ("step", "by", "group", "rung"))
    try:
        rows = drill.tasks(**args, step=step, by=by, group=group, rung=int(rung) if rung.isdigit() else None)
    except ValueError as exc:
        raise Invalid(str(exc), field="which") from None
    return render_template("tasks.html", filters=filters, step=step, which=args["which"], group=group, rows=rows,
                           when=_when)


@blp.route("/<any(runs, items, changes):page>")
def listing(page: str) -> Any:
    """The step runs, exception items or stage changes (or journeys) behind a number."""
    who = _require()
    if isinstance(who, Response):
        return who
    args, filters = _drill_args()
    try:
        if page == "runs":
            rows = drill.runs(**args, step=request.args.get("step", "")[:100])
        elif page == "items":
            rows = drill.items(**args, category=request.args.get("category", "")[:60])
        else:
            rows = drill.changes(**{**args, "scope": Scope(team=filters["team"], playbook=filters["playbook"])},
                                 stage=filters["stage"])
    except ValueError as exc:
        raise Invalid(str(exc), field="which") from None
    return render_template("listing.html", filters=filters, page=page, which=args["which"], rows=rows,
                           when=_when)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at else "-"
