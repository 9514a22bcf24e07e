"""/playbooks: what is active, each one's version history, and validation with located findings."""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import request
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import select

from orchestrator.api.access import READERS, roles
from orchestrator.api.app import runtime
from orchestrator.api.problems import problem
from orchestrator.apikeys import Role
from orchestrator.db import unit_of_work
from orchestrator.errors import NotFound
from orchestrator.models import PlaybookVersion
from orchestrator.playbook import check_text

blp = Blueprint("playbooks", __name__, url_prefix="/playbooks", description="Versioned playbooks.")

MAX_PLAYBOOK_BYTES = 256 * 1024


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


class PlaybookList(Schema):
    items = fields.List(fields.Nested(VersionOut), required=True)


@blp.route("", methods=["GET"])
@blp.response(200, PlaybookList)
@roles(*READERS)
def list_playbooks() -> Any:
    """The active version of each playbook."""
    with unit_of_work(runtime().sessions, read_only=True) as session:
        return {"items": list(session.scalars(select(PlaybookVersion).where(PlaybookVersion.active.is_(True))
                                              .order_by(PlaybookVersion.playbook_id)))}


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
        return {**VersionOut().dump(current), "source_text": current.source_text, "history": versions}


@blp.route("/validate", methods=["POST"])
@blp.doc(requestBody={"required": True, "content": {"application/yaml": {"schema": {"type": "string"}}}})
@blp.response(200, ValidationOut)
@roles(Role.ADMIN)
def validate_playbook() -> Any:
    """Validate playbook YAML (the body) and return every finding with its line and column."""
    raw = request.get_data(cache=False)
    if len(raw) > MAX_PLAYBOOK_BYTES:
        return problem(status=413, title="Payload Too Large",
                       detail=f"a playbook is at most {MAX_PLAYBOOK_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return problem(status=400, title="Bad Request", detail="the playbook is not UTF-8 text")
    playbook, findings = check_text(text, request.args.get("path", "playbook.yaml")[:200])
    return {"valid": playbook is not None and not any(f.severity == "error" for f in findings),
            "findings": [{**dataclasses.asdict(f), "text": str(f)} for f in findings]}
