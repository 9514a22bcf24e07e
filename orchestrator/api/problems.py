"""Errors as RFC 9457 problem+json, naming the field at fault where there is one."""

from __future__ import annotations

from typing import Any

from flask import Response, json

from orchestrator.errors import HandoffError, Invalid

PROBLEM_TYPE = "application/problem+json"


def problem(*, status: int, title: str, detail: str = "", type_: str = "about:blank",
            field: str | None = None, errors: Any = None, extra: dict[str, Any] | None = None) -> Response:
    """A problem+json response; `extra` adds members of its own (RFC 9457 extensions)."""
    body: dict[str, Any] = {**(extra or {}), "type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if field:
        body["field"] = field
    if errors:
        body["errors"] = errors
    return Response(json.dumps(body), status=status, mimetype=PROBLEM_TYPE)


def from_handoff_error(exc: HandoffError) -> Response:
    """Each error kind already knows its status and problem type (orchestrator.errors)."""
    return problem(status=exc.status, title=type(exc).__name__, detail=str(exc), type_=exc.problem,
                   field=exc.field if isinstance(exc, Invalid) else None)


def first_field(messages: Any, path: tuple[str, ...] = ()) -> str | None:
    """The dotted path of the first field marshmallow complained about."""
    if isinstance(messages, dict) and messages:
        key, value = next(iter(messages.items()))
        if key in ("json", "query", "headers", "form", "_schema") and not path:
            return first_field(value, path)
        return first_field(value, (*path, str(key)))
    return ".".join(path) or None
