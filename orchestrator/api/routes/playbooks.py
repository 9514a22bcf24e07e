"""/playbooks: what is active, version history and diffs, validation with located findings, and the
lifecycle levers (apply, activate a stored version, pause, resume): admins change, leaders read."""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import request
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select

from orchestrator.api.access import READERS, actor_name, principal, roles
from orchestrator.api.app import page_of, runtime
from orchestrator.api.problems import first_field, problem
from orchestrator.apikeys import Role
from orchestrator.db import unit_of_work
from orchestrator.errors import NotFound
from orchestrator.journeys.pausing import pause_playbook, resume_playbook
from orchestrator.models import JourneyStage, PlaybookPause, PlaybookVersion
from orchestrator.playbook.store import (
    activate_version,
    apply_text,
    check_with_templates,
    compiled,
    playbook_history,
    version_diff,
)

blp = Blueprint("playbooks", __name__, url_prefix="/playbooks", description="Versioned playbooks.")

MAX_PLAYBOOK_BYTES = 256 * 1024
MAX_TEMPLATE_BYTES = 64 * 1024
MAX_TEMPLATES = 50
TEMPLATE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class VersionOut(Schema):
    playbook_id = fields.String()
    version = fields.Integer()
    name = fields.String()
    stage = fields.String()
    active = fields.Boolean()
    checksum = fields.String()
    applied_at = fields.AwareDateTime()
    applied_by = fields.String()


class PlaybookOut(VersionOut):
    source_text = fields.String()
    history = fields.List(fields.Nested(VersionOut))


class FindingOut(Schema):
    path = fields.String()
    line = fields.Integer()
    column = fields.Integer()
    severity = fields.String()
    rule = fields.String()
    message = fields.String()
    text = fields.String(metadata={"description": "path:line:col: severity: [rule] message"})


class ValidationOut(Schema):
    valid = fields.Boolean(required=True)
    findings = fields.List(fields.Nested(FindingOut), required=True)


class PlaybookSummary(VersionOut):
    maintainer = fields.String(metadata={"description": "who reviews it (a person's email or a team)"})
    paused = fields.Boolean(metadata={"description": "no new enrollments until resumed"})


class PlaybookList(Schema):
    items = fields.List(fields.Nested(PlaybookSummary), required=True)
    next = fields.String(allow_none=True, metadata={"description": "cursor of the next page (pass as `after`)"})


class PlaybookQuery(Schema):
    stage = fields.String(validate=validate.OneOf([s.value for s in JourneyStage]))
    status = fields.String(validate=validate.OneOf(["active", "paused"]),
                           metadata={"description": "active: taking enrollments; paused: not"})
    maintainer = fields.String(validate=validate.Length(min=1, max=320),
                               metadata={"description": "the maintainer's email or team (any case)"})
    after = fields.String(validate=validate.Length(min=1, max=100),
                          metadata={"description": "cursor: the playbook id the previous page ended with"})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


@blp.route("", methods=["GET"])
@blp.arguments(PlaybookQuery, location="query")
@blp.response(200, PlaybookList)
@roles(*READERS)
def list_playbooks(query: dict[str, Any]) -> Any:
    """The active version of each playbook, by id, with its maintainer and whether it is paused."""
    paused = select(PlaybookPause.playbook_id)
    statement = select(PlaybookVersion).where(PlaybookVersion.active.is_(True)).order_by(PlaybookVersion.playbook_id)
    if "stage" in query:
        statement = statement.where(PlaybookVersion.stage == query["stage"])
    if "status" in query:
        in_pause = PlaybookVersion.playbook_id.in_(paused)
        statement = statement.where(in_pause if query["status"] == "paused" else ~in_pause)
    if "after" in query:
        statement = statement.where(PlaybookVersion.playbook_id > query["after"])
    wanted = query.get("maintainer", "").strip().lower()
    if not wanted:
        statement = statement.limit(query["limit"] + 1)  # the maintainer is in the text: filtered below
    with unit_of_work(runtime().sessions, read_only=True) as session:
        paused_ids = set(session.scalars(paused))
        items: list[dict[str, Any]] = []
        for version in session.scalars(statement):
            maintainer = compiled(version).maintainer
            if wanted and maintainer.strip().lower() != wanted:
                continue
            items.append({**{name: getattr(version, name) for name in VersionOut().fields},
                          "maintainer": maintainer, "paused": version.playbook_id in paused_ids})
            if len(items) > query["limit"]:
                break
        return page_of(items, limit=query["limit"], key=lambda item: item["playbook_id"])


@blp.route("/<string:playbook_id>", methods=["GET"])
@blp.response(200, PlaybookOut)
@roles(*READERS)
def get_playbook(playbook_id: str) -> Any:
    """The active version with its source, and every version applied before it."""
    with unit_of_work(runtime().sessions, read_only=True) as session:
        versions = list(session.scalars(select(PlaybookVersion).where(PlaybookVersion.playbook_id == playbook_id)
                                        .order_by(PlaybookVersion.version.desc())))
        if not versions:
            raise NotFound(f"no playbook {playbook_id!r}")
        current = next((v for v in versions if v.active), versions[0])
        # The response schema dumps this once: values as stored, never already dumped (a string date).
        version = {name: getattr(current, name) for name in VersionOut().fields}
        return {**version, "source_text": current.source_text, "history": versions}


def _at_most_templates(given: dict[str, str]) -> None:
    # Not validate.Length: apispec would publish it as maxLength, which an object does not have.
    if len(given) > MAX_TEMPLATES:
        raise ValidationError(f"at most {MAX_TEMPLATES} templates")


class PlaybookIn(Schema):
    playbook = fields.String(required=True, validate=validate.Length(min=1, max=MAX_PLAYBOOK_BYTES),
                             metadata={"description": "the playbook YAML"})
    templates = fields.Dict(
        keys=fields.String(validate=validate.Regexp(TEMPLATE_NAME, error="a template name is letters, digits, "
                                                    "'-', '_' or '.' (the NAME of templates/NAME.yaml)")),
        values=fields.String(validate=validate.Length(max=MAX_TEMPLATE_BYTES)),
        load_default=dict, validate=_at_most_templates,
        metadata={"description": "the named templates beside it: NAME -> the YAML of templates/NAME.yaml",
                  "maxProperties": MAX_TEMPLATES})


# Either form: YAML alone (as before), or JSON carrying the templates the playbook names.
PLAYBOOK_BODY = {"required": True, "content": {
    "application/yaml": {"schema": {"type": "string"}},
    "application/json": {"schema": PlaybookIn},
}}


@blp.route("/validate", methods=["POST"])
@blp.doc(requestBody=PLAYBOOK_BODY)
@blp.response(200, ValidationOut)
@roles(Role.ADMIN)
def validate_playbook() -> Any:
    """Validate playbook YAML (the body, or JSON with its templates): every finding with its line and column."""
    body = _body()
    if not isinstance(body, tuple):
        return body
    text, templates = body
    playbook, findings, _ = check_with_templates(text, request.args.get("path", "playbook.yaml")[:200], templates)
    return {"valid": playbook is not None, "findings": _findings(findings)}


def _body() -> Any:
    """The playbook text and templates of the request, or the problem response saying why there are none."""
    raw = request.get_data(cache=True)
    limit = MAX_PLAYBOOK_BYTES + MAX_TEMPLATES * MAX_TEMPLATE_BYTES if request.is_json else MAX_PLAYBOOK_BYTES
    if len(raw) > limit:
        return problem(status=413, title="Payload Too Large",
                       detail=f"a playbook is at most {MAX_PLAYBOOK_BYTES} bytes, a template {MAX_TEMPLATE_BYTES}")
    if request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return problem(status=422, title="Unprocessable Entity", field="playbook",
                           detail='the body is a JSON object: {"playbook": YAML, "templates": {NAME: YAML}}')
        try:
            loaded = PlaybookIn().load(data)
        except ValidationError as error:
            return problem(status=422, title="Unprocessable Entity", detail="the body is not a playbook with "
                           "its templates", field=first_field(error.messages), errors=error.messages)
        return loaded["playbook"], loaded["templates"]
    try:
        return raw.decode("utf-8"), {}
    except UnicodeDecodeError:
        return problem(status=400, title="Bad Request", detail="the playbook is not UTF-8 text")


def _findings(findings: list[Any]) -> list[dict[str, Any]]:
    return [{**dataclasses.asdict(f), "text": str(f)} for f in findings]


class ChangeOut(Schema):
    playbook_id = fields.String()
    kind = fields.String(metadata={"description": "new, changed or unchanged"})
    old_version = fields.Integer(allow_none=True)
    new_version = fields.Integer(allow_none=True)
    summary = fields.List(fields.String(), metadata={"description": "steps, settings and templates that changed"})
    diff = fields.String(metadata={"description": "unified diff of the playbook and its named templates"})


class ApplyOut(Schema):
    applied = fields.Boolean(required=True)
    findings = fields.List(fields.Nested(FindingOut), required=True)
    change = fields.Nested(ChangeOut, allow_none=True)


class DiffQuery(Schema):
    from_ = fields.Integer(data_key="from", required=True, validate=validate.Range(min=1))
    to = fields.Integer(required=True, validate=validate.Range(min=1))


class ActivateIn(Schema):
    version = fields.Integer(required=True, validate=validate.Range(min=1))


class PauseIn(Schema):
    reason = fields.String(load_default="", validate=validate.Length(max=1000))
    running = fields.String(load_default="continue", validate=validate.OneOf(["continue", "park"]),
                            metadata={"description": "running journeys continue, or park until resume"})


class ResumeIn(Schema):
    leave_parked = fields.Boolean(load_default=False)


class PauseOut(Schema):
    playbook_id = fields.String()
    paused = fields.Boolean()
    parked = fields.List(fields.Integer(), metadata={"description": "journeys parked by the pause"})
    resumed = fields.List(fields.Integer(), metadata={"description": "parked journeys waiting again"})
    left = fields.List(fields.Integer(), metadata={"description": "parked journeys left for a person"})
    running = fields.Integer(metadata={"description": "open journeys left running"})


class HistoryOut(Schema):
    items = fields.List(fields.Nested(VersionOut), required=True)


@blp.route("/apply", methods=["POST"])
@blp.doc(requestBody=PLAYBOOK_BODY)
@blp.response(200, ApplyOut)
@blp.alt_response(422, description="Invalid playbook or template: nothing stored; `findings` (as in 200) say where")
@roles(Role.ADMIN)
def apply_playbook() -> Any:
    """Store playbook YAML (the body, or JSON with its templates) as the new active version when it changed.

    The templates it uses are stored with the version, as `handoff playbooks apply` stores them. An
    invalid playbook or template stores nothing: a 422 problem with `applied` false and the located `findings`.
    """
    body = _body()
    if not isinstance(body, tuple):
        return body
    text, templates = body
    rt = runtime()
    with unit_of_work(rt.sessions) as session:
        report = apply_text(session=session, text=text, path=request.args.get("path", "playbook.yaml")[:200],
                            now=rt.clock.now(), actor=actor_name(session, principal()), templates=templates)
    change = report.changes[0] if report.changes else None
    answer = {"applied": report.applied, "findings": _findings(report.findings),
              "change": dataclasses.asdict(change) if change else None}
    if report.applied:
        return answer
    errors = [f for f in report.findings if f.is_error]
    first = errors[0] if errors else None
    # The body member at fault: a template's findings are located in templates/NAME.yaml.
    field = "playbook" if first is None or not first.path.startswith("templates/") else \
        "templates." + first.path.removeprefix("templates/").removesuffix(".yaml")
    return problem(status=422, title="Unprocessable Entity", type_="/problems/invalid-playbook", field=field,
                   detail=f"nothing stored: {len(errors)} error(s), the first: {first}" if first else "nothing stored",
                   extra=ApplyOut().dump(answer))


@blp.route("/<string:playbook_id>/history", methods=["GET"])
@blp.response(200, HistoryOut)
@roles(Role.ADMIN, Role.LEADER)
def history(playbook_id: str) -> Any:
    """Every stored version, newest first, with who applied it and when."""
    with unit_of_work(runtime().sessions, read_only=True) as session:
        return {"items": playbook_history(session=session, playbook_id=playbook_id)}


@blp.route("/<string:playbook_id>/diff", methods=["GET"])
@blp.arguments(DiffQuery, location="query")
@blp.response(200, ChangeOut)
@roles(Role.ADMIN, Role.LEADER)
def diff(query: dict[str, Any], playbook_id: str) -> Any:
    """What changed between stored versions `from` and `to`: steps, settings, templates and the text diff."""
    with unit_of_work(runtime().sessions, read_only=True) as session:
        change = version_diff(session=session, playbook_id=playbook_id, from_version=query["from_"],
                              to_version=query["to"])
    return dataclasses.asdict(change)


@blp.route("/<string:playbook_id>/activate", methods=["POST"])
@blp.arguments(ActivateIn)
@blp.response(200, VersionOut)
@roles(Role.ADMIN)
def activate(body: dict[str, Any], playbook_id: str) -> Any:
    """Make a stored version active again (a rollback without a copy); running journeys keep theirs."""
    rt = runtime()
    with unit_of_work(rt.sessions) as session:
        version = activate_version(session=session, playbook_id=playbook_id, version=body["version"],
                                   now=rt.clock.now(), actor=actor_name(session, principal()))
        return {name: getattr(version, name) for name in VersionOut().fields}


@blp.route("/<string:playbook_id>/pause", methods=["POST"])
@blp.arguments(PauseIn)
@blp.response(200, PauseOut)
@roles(Role.ADMIN)
def pause(body: dict[str, Any], playbook_id: str) -> Any:
    """No new enrollments; running journeys continue or park (`running`); audited. 409 when already paused."""
    rt = runtime()
    with unit_of_work(rt.sessions) as session:
        report = pause_playbook(session=session, settings=rt.settings, playbook_id=playbook_id,
                                actor=actor_name(session, principal()), now=rt.clock.now(),
                                reason=body["reason"], park_running=body["running"] == "park")
    return {**dataclasses.asdict(report), "paused": True}


@blp.route("/<string:playbook_id>/resume", methods=["POST"])
@blp.arguments(ResumeIn)
@blp.response(200, PauseOut)
@roles(Role.ADMIN)
def resume(body: dict[str, Any], playbook_id: str) -> Any:
    """Enrollments open again; journeys the pause parked wait again where they were; audited. 409 if not paused."""
    rt = runtime()
    with unit_of_work(rt.sessions) as session:
        report = resume_playbook(session=session, playbook_id=playbook_id, actor=actor_name(session, principal()),
                                 now=rt.clock.now(), restore_parked=not body["leave_parked"])
    return {**dataclasses.asdict(report), "paused": False}
