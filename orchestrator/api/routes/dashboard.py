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

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from werkzeug.wrappers import Response

from orchestrator.api.app import runtime
from orchestrator.apikeys import Principal, Role, authenticate
from orchestrator.db import unit_of_work
from orchestrator.errors import Forbidden
from orchestrator.models import ApiKey, Journey, Owner, PlaybookVersion, StepRun, Task
from orchestrator.reports.catalog import run_report

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
    return {"period": period, "since": until - timedelta(days=PERIODS[period]), "until": until,
            "playbook": request.args.get("playbook", "")[:100], "stage": request.args.get("stage", "")[:20],
            "team": request.args.get("team", "")[:100]}


def _keep(row: dict[str, Any], filters: dict[str, Any], stages: dict[str, str]) -> bool:
    if filters["playbook"] and row.get("playbook") != filters["playbook"]:
        return False
    return not (filters["stage"] and stages.get(row.get("playbook", "")) != filters["stage"])


@blp.route("")
def overview() -> Any:
    """Oversight calibration and noise, with filters and drill-down links."""
    who = _require()
    if isinstance(who, Response):
        return who
    filters = _filters()
    sessions = runtime().sessions
    with unit_of_work(sessions, read_only=True) as session:
        stages: dict[str, str] = {playbook: stage for playbook, stage in session.execute(
            select(PlaybookVersion.playbook_id, PlaybookVersion.stage).distinct())}
    oversight = [row for row in run_report("oversight", sessions=sessions, since=filters["since"],
                                           until=filters["until"]) if _keep(row, filters, stages)]
    noise = [row for row in run_report("noise", sessions=sessions, since=filters["since"], until=filters["until"])
             if _keep(row, filters, stages)]
    sla = run_report("sla", sessions=sessions, since=filters["since"], until=filters["until"], by="team")
    if filters["team"]:
        sla = [row for row in sla if row["group"] == filters["team"]]
    more = {title: rows for title, rows in (
        ("The Loop", run_report("loop", sessions=sessions, since=filters["since"], until=filters["until"])),
        ("Automation mix", [row for row in run_report("automation", sessions=sessions, since=filters["since"],
                                                      until=filters["until"])
                            if not filters["stage"] or row["stage"] == filters["stage"]]),
        ("Exceptions", run_report("exceptions", sessions=sessions, since=filters["since"], until=filters["until"])),
        ("Time saved", [row for row in run_report("time-saved", sessions=sessions, since=filters["since"],
                                                  until=filters["until"],
                                                  estimates=runtime().settings.action_estimates)
                        if _keep(row, filters, stages)]))}
    return render_template("dashboard.html", filters=filters, periods=list(PERIODS),
                           stages=sorted(set(stages.values())), playbooks=sorted(stages),
                           oversight=oversight, noise=noise, sla=sla, more=more,
                           approval_bars=_bars(oversight, "approval_rate"), noise_bars=_bars(noise, "noise_rate"))


def _bars(rows: list[dict[str, Any]], figure: str) -> list[dict[str, Any]]:
    """One horizontal bar per row with a value: its label, share and width in a 300-unit chart."""
    return [{"label": f"{row['playbook']}/{row['step']}", "value": row[figure], "width": round(300 * row[figure]),
             "y": 24 * index} for index, row in enumerate(r for r in rows if r.get(figure) is not None)]


@blp.route("/tasks")
def tasks() -> Any:
    """The tasks behind a number: those of one playbook step's runs in the period."""
    who = _require()
    if isinstance(who, Response):
        return who
    filters = _filters()
    step = request.args.get("step", "")[:100]
    query = (select(Task.id, Task.title, Task.kind, Task.status, Task.outcome, Task.created_at, Task.completed_at,
                    Owner.email, Journey.playbook_id, StepRun.step_id)
             .join(StepRun, StepRun.id == Task.step_run_id).join(Journey, Journey.id == StepRun.journey_id)
             .join(Owner, Owner.id == Task.owner_id)
             .where(StepRun.started_at >= filters["since"], StepRun.started_at < filters["until"])
             .order_by(Task.id).limit(500))
    if filters["playbook"]:
        query = query.where(Journey.playbook_id == filters["playbook"])
    if step:
        query = query.where(StepRun.step_id == step)
    with unit_of_work(runtime().sessions, read_only=True) as session:
        rows = session.execute(query).all()
    return render_template("tasks.html", filters=filters, step=step, rows=rows, when=_when)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at else "-"
