"""/dashboard: the leadership reports as server-rendered HTML with SVG charts (no CDN, works offline).

Browsers cannot send an API key header, so /dashboard/login exchanges a leader or admin key for a
signed session cookie (HttpOnly, SameSite=Strict, 8 hours) that names the key; every request
checks the key again, so revoking it ends the session. Everything else is GET and changes
nothing, so the only form that writes (the login) is the only one SameSite has to guard.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
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
from orchestrator.reports.catalog import REPORTS, run_report
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


# The dashboard's "group by" choices; each report takes the one it has and keeps its default otherwise.
GROUP_BY = ("team", "owner", "stage", "playbook", "segment", "week")
DEFAULT_BY = {"sla": "team"}  # the others' default is their catalog default (None)
# The reports grouped over step runs: a group's numbers drill down with group_by and group.
RUN_REPORTS = ("oversight", "noise", "routing", "automation", "time-saved")
# Each report's default grouping keys (the row's columns naming its group).
DEFAULT_KEYS = {"oversight": ("playbook", "step"), "noise": ("playbook", "step"), "routing": ("playbook", "step"),
                "automation": ("stage",), "time-saved": ("playbook",), "sla": ("group",), "loop": ("stage",),
                "exceptions": ("category",), "experiments": ("playbook", "experiment", "variant")}


def _filters() -> dict[str, Any]:
    period = request.args.get("period", "30d")
    if period not in PERIODS:
        period = "30d"
    by = request.args.get("by", "")
    until = runtime().clock.now()
    found: dict[str, Any] = {"period": period, "since": until - timedelta(days=PERIODS[period]), "until": until,
             "playbook": request.args.get("playbook", "")[:100], "stage": request.args.get("stage", "")[:20],
             "team": request.args.get("team", "")[:100], "by": by if by in GROUP_BY else ""}
    found["scope"] = Scope(team=found["team"], stage=found["stage"], playbook=found["playbook"])
    return found


def grouping(report: str, by: str) -> str | None:
    """The grouping `report` is shown by under the dashboard's `by`: that one when the report has it."""
    return by if by and by in REPORTS[report].groupings else DEFAULT_BY.get(report)


def row_keys(report: str, by: str | None) -> tuple[str, ...]:
    """The columns of a row of `report` under grouping `by` that name its group."""
    if report == "sla":
        return ("group",)
    return DEFAULT_KEYS[report] if by is None else (by,)


def _url(page: str, filters: dict[str, Any], **params: Any) -> str:
    """A drill-down link keeping the period and filters; `params` win over them ("" drops one)."""
    query = {"period": filters["period"], "team": filters["team"], "stage": filters["stage"],
             "playbook": filters["playbook"], **params}
    return f"/dashboard/{page}?" + urlencode({k: v for k, v in query.items() if v not in ("", None)})


def _at(report: str, row: dict[str, Any], by: str | None) -> dict[str, Any]:
    """The drill-down parameters naming a row's group."""
    if by is None:
        return {key: row[key] for key in DEFAULT_KEYS[report] if key in ("playbook", "step", "stage", "category")}
    return {"group_by": by, "group": row[by]}


def _links(report: str, row: dict[str, Any], f: dict[str, Any], by: str | None = None) -> dict[str, str]:
    """For each number of a report row (grouped by `by`; None: its default), the drill-down listing what it
    counts."""
    at = _at(report, row, by) if report in RUN_REPORTS + ("exceptions",) else {}
    if report in ("oversight", "noise"):
        grouped = by is not None  # a group mixes levels: decisions are in-the-loop, overrides on-the-loop
        decided = {"level": "in_the_loop"} if grouped and report == "oversight" else {}
        tasks = {name: _url("tasks", f, which=which, **at, **(decided if name in _DECIDED else {}))
                 for name, which in (
            ("tasks", "tasks"), ("decisions", "decisions"), ("approval_rate", "approved"),
            ("rejection_rate", "rejected"), ("quick_share", "quick"), ("decide_median_s", "decisions"),
            ("closed_without_action", "closed_without_action"), ("rated", "rated"), ("not_useful", "not_useful"))}
        levels = {"runs": "loop", "override_rate": "on_the_loop"} if grouped and report == "oversight" else {}
        runs = {name: _url("runs", f, which=which, level=levels.get(name, ""), **at) for name, which in (
            ("runs", "runs"), ("skipped", "skipped"), ("override_rate", "overridden"), ("noise_rate", "runs"))}
        return {**tasks, **runs}
    if report == "routing":
        runs = {name: _url("runs", f, which=f"routed_{which}", **at) for name, which in (
            ("decisions", "decisions"), ("automated", "automated"), ("human", "human"), ("human_share", "human"),
            ("below_threshold", "below_threshold"), ("novel_category", "novel_category"), ("unscored", "unscored"))}
        tasks = {name: _url("tasks", f, which=f"route_{which}", **at) for name, which in (
            ("proposed", "proposed"), ("confirmed", "confirmed"), ("overturned", "overturned"),
            ("undecided", "undecided"), ("no_proposal", "no_proposal"), ("overturn_rate", "overturned"))}
        return {**runs, **tasks}
    if report == "experiments":
        at = {key: row[key] for key in DEFAULT_KEYS[report]}
        journeys = {name: _url("journeys", f, which=which, **at) for name, which in (
            ("journeys", "journeys"), ("completed", "completed"), ("dropped", "dropped"), ("stalled", "stalled"),
            ("open", "open"), ("converted", "converted"), ("conversion_rate", "converted"),
            ("convert_median_days", "converted"))}
        tasks = {name: _url("tasks", f, which=name, **at) for name in ("tasks", "rated", "useful", "not_useful")}
        return {**journeys, **tasks}
    if report == "sla":
        at = {"by": by or "team", "group": row["group"], **({"team": ""} if by in (None, "team") else {})}
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
        return {name: _url("runs", f, which=which, **at) for name, which in (
            ("runs", "automation_runs"), ("automated", "automated"), ("human", "human"), ("hybrid", "hybrid"),
            ("automated_share", "automated"))}
    if report == "exceptions":
        return {name: _url("items", f, which=which, **at) for name, which in (
            ("raised", "raised"), ("occurrences", "raised"), ("open", "open"), ("overdue", "overdue"),
            ("overdue_share", "overdue"), ("open_median_age_h", "open"), ("oldest_open_age_h", "open"))}
    if report == "time-saved":
        return {**{name: _url("runs", f, which="automated_actions", **at)
                   for name in ("automated_actions", "automated_minutes")},
                **{name: _url("tasks", f, which="human_tasks", **at)
                   for name in ("human_estimate_minutes", "human_elapsed_minutes")}}
    return {}


_DECIDED = ("decisions", "approval_rate", "rejection_rate", "quick_share", "decide_median_s")

# Figures that count the rows their drill-down lists (the others are rates, sums or times over them;
# breaches count verdicts, two for a task that missed both deadlines, and list the tasks).
COUNTS = frozenset({"runs", "decisions", "tasks", "skipped", "closed_without_action", "rated", "not_useful",
                    "entered", "moved_on", "signal_journeys", "touched", "automated", "human",
                    "hybrid", "raised", "open", "overdue", "automated_actions",
                    "below_threshold", "novel_category", "unscored", "proposed", "confirmed", "overturned",
                    "undecided", "no_proposal", "journeys", "completed", "dropped", "stalled", "converted",
                    "useful"})


def is_count(name: str) -> bool:
    return name in COUNTS or name.startswith("escalations_rung_")


@dataclass(frozen=True)
class Section:
    report: str
    title: str
    chart: str      # the SVG's id
    figure: str     # what its bars show
    caption: str
    color: str


SECTIONS = (
    Section("oversight", "Oversight calibration", "approval-chart", "approval_rate", "approval rate", "#2a7ab0"),
    Section("noise", "Noise", "noise-chart", "noise_rate", "noise rate", "#c0602a"),
    Section("sla", "SLA adherence", "sla-chart", "due_adherence", "due adherence", "#3a8a4a"),
    Section("loop", "The Loop", "loop-chart", "entered", "accounts entered", "#7a4ab0"),
    Section("automation", "Automation mix", "automation-chart", "automated_share", "automated share", "#2a7ab0"),
    Section("exceptions", "Exceptions", "exceptions-chart", "open", "open items", "#b03a3a"),
    Section("time-saved", "Time saved", "time-saved-chart", "automated_minutes", "automated minutes", "#8a7a2a"),
    Section("routing", "Confidence routing", "routing-chart", "human_share", "share routed to a person",
            "#4a6a8a"),
    Section("experiments", "Play experiments", "experiments-chart", "conversion_rate", "conversion rate",
            "#6a8a3a"),
)


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
    found, links, charts, by_of = {}, {}, {}, {}
    for section in SECTIONS:
        name = section.report
        by_of[name] = by = grouping(name, filters["by"])
        found[name] = rows = run_report(name, sessions=sessions, since=filters["since"], until=filters["until"],
                                        scope=scope, estimates=runtime().settings.action_estimates, by=by)
        links[name] = [_links(name, row, filters, by if by != DEFAULT_BY.get(name) else None) for row in rows]
        charts[name] = _bars(rows, section.figure, keys=row_keys(name, by if by != DEFAULT_BY.get(name) else None))
    return render_template("dashboard.html", filters=filters, periods=list(PERIODS), stages=stages,
                           playbooks=playbooks, teams=teams, groupings=GROUP_BY, found=found, links=links,
                           sections=SECTIONS, charts=charts, by_of=by_of, is_count=is_count)


def _bars(rows: list[dict[str, Any]], figure: str, *, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """One horizontal bar per row with a value: its label, value and width in a 300-unit chart (shares
    at their size, counts against the largest)."""
    shown = [r for r in rows if r.get(figure) is not None]
    share = figure.endswith(("_rate", "_share", "_adherence"))
    top = max((float(r[figure]) for r in shown), default=0.0) or 1.0
    return [{"label": "/".join(str(row[key]) for key in keys), "value": row[figure],
             "share": share, "width": round(300 * (float(row[figure]) if share else float(row[figure]) / top)),
             "y": 24 * index} for index, row in enumerate(shown)]


def _drill_args() -> tuple[dict[str, Any], dict[str, Any]]:
    filters = _filters()
    return {"sessions": runtime().sessions, "since": filters["since"], "until": filters["until"],
            "scope": filters["scope"], "which": request.args.get("which", "")[:40]}, filters


def _arg(name: str, limit: int = 200) -> str:
    return request.args.get(name, "")[:limit]


@blp.route("/tasks")
def tasks() -> Any:
    """The tasks behind a number: a step's or a group's (`group_by`, `group`), an SLA group's (`by`, `group`),
    or an experiment variant's (`experiment`, `variant`)."""
    who = _require()
    if isinstance(who, Response):
        return who
    args, filters = _drill_args()
    args["which"] = args["which"] or "tasks"
    rung = _arg("rung")
    try:
        rows = drill.tasks(**args, step=_arg("step"), by=_arg("by", 40), group=_arg("group"),
                           rung=int(rung) if rung.isdigit() else None, group_by=_arg("group_by", 40),
                           level=_arg("level", 40), experiment=_arg("experiment"), variant=_arg("variant"))
    except ValueError as exc:
        raise Invalid(str(exc), field="which") from None
    return render_template("tasks.html", filters=filters, step=_arg("step"), which=args["which"],
                           group=_arg("group") or _arg("variant"), rows=rows, when=_when)


@blp.route("/<any(runs, items, changes, journeys):page>")
def listing(page: str) -> Any:
    """The step runs, exception items, stage changes or journeys behind a number."""
    who = _require()
    if isinstance(who, Response):
        return who
    args, filters = _drill_args()
    group_by, group = _arg("group_by", 40), _arg("group")
    try:
        if page == "runs":
            rows = drill.runs(**args, step=_arg("step", 100), level=_arg("level", 40), group_by=group_by, group=group)
        elif page == "items":
            rows = drill.items(**args, category=_arg("category", 60), group_by=group_by, group=group)
        elif page == "journeys":
            rows = drill.journeys(**args, experiment=_arg("experiment"), variant=_arg("variant"))
        else:
            rows = drill.changes(**{**args, "scope": Scope(team=filters["team"], playbook=filters["playbook"])},
                                 stage=filters["stage"])
    except ValueError as exc:
        raise Invalid(str(exc), field="which") from None
    return render_template("listing.html", filters=filters, page=page, which=args["which"], rows=rows,
                           when=_when)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at else "-"
