"""/reports/<name>: the leadership reports as JSON or CSV, the same rows `handoff report` prints."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from flask import Response
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from orchestrator.api.access import roles
from orchestrator.api.app import runtime
from orchestrator.apikeys import Role
from orchestrator.errors import Invalid, NotFound
from orchestrator.reports.catalog import REPORTS, run_report, to_csv
from orchestrator.reports.scope import Scope

blp = Blueprint("reports", __name__, url_prefix="/reports", description="Leadership reports (leader and admin).")

DEFAULT_PERIOD = timedelta(days=30)
MAX_PERIOD = timedelta(days=3660)  # ten years: a bound on the work one request may ask for


class ReportQuery(Schema):
    since = fields.AwareDateTime(metadata={"description": "start of the period (default: until - 30 days)"})
    until = fields.AwareDateTime(metadata={"description": "end of the period, exclusive (default: now)"})
    by = fields.String(validate=validate.Length(max=40),
                       metadata={"description": "grouping (sla: owner, team, stage, playbook, step, segment, week; "
                                                "noise and time-saved: playbook, team, owner, stage, segment, week; "
                                                "or one and week, e.g. team,week)"})
    team = fields.String(load_default="", validate=validate.Length(max=100),
                         metadata={"description": "only this team"})
    stage = fields.String(load_default="", validate=validate.Length(max=20),
                          metadata={"description": "only this stage"})
    playbook = fields.String(load_default="", validate=validate.Length(max=100),
                             metadata={"description": "only this playbook"})
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "csv"]))


_REPORT_JSON = {"type": "object", "required": ["report", "since", "until", "rows"], "properties": {
    "report": {"type": "string"}, "since": {"type": "string", "format": "date-time"},
    "until": {"type": "string", "format": "date-time"}, "by": {"type": "string", "nullable": True},
    "rows": {"type": "array", "items": {"type": "object"}}}}


@blp.route("/<name>", methods=["GET"])
@blp.arguments(ReportQuery, location="query")
@blp.doc(responses={"200": {"description": "the report's rows (figures defined in the README, Reporting)",
                            "content": {"application/json": {"schema": _REPORT_JSON},
                                        "text/csv": {"schema": {"type": "string"}}}}})
@roles(Role.ADMIN, Role.LEADER)
def get_report(query: dict[str, Any], name: str) -> Response:
    """One report over a period, as JSON or CSV."""
    if name not in REPORTS:
        raise NotFound(f"no report {name!r} (known: {', '.join(REPORTS)})")
    until = query.get("until") or runtime().clock.now()
    try:
        since = query.get("since") or until - DEFAULT_PERIOD
    except OverflowError:
        raise Invalid("until: too early for a default period; give since", field="until") from None
    if since >= until or until - since > MAX_PERIOD:
        raise Invalid("since: must be before until, at most ten years before", field="since")
    try:
        rows = run_report(name, sessions=runtime().sessions, since=since, until=until, by=query.get("by"),
                          scope=Scope(team=query["team"], stage=query["stage"], playbook=query["playbook"]),
                          estimates=runtime().settings.action_estimates)
    except ValueError as exc:
        raise Invalid(str(exc), field="by") from None
    if query["format"] == "csv":
        return Response(to_csv(rows), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    body = {"report": name, "since": since.isoformat(), "until": until.isoformat(), "by": query.get("by"),
            "rows": rows}
    return Response(json.dumps(body), mimetype="application/json")
