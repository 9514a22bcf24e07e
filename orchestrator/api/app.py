"""The app factory: nothing is built at import time; every request gets its own unit of work."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter
from flask_smorest import Api
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from orchestrator.api.access import authenticate_request
from orchestrator.api.problems import first_field, from_handoff_error, problem
from orchestrator.db import unit_of_work
from orchestrator.errors import HandoffError
from orchestrator.intake.values import json_problem
from orchestrator.runtime import Runtime

log = logging.getLogger("orchestrator.api")

MAX_BODY_BYTES = 4 * 1024 * 1024  # a batch of 1,000 signals fits; anything larger is refused unread
DEFAULT_RATE = "1200 per minute"


MAX_ID = 2**31 - 1


class IdConverter(IntegerConverter):
    """`<id:name>`: a positive integer that fits the database's integer columns."""

    def __init__(self, url_map: Any) -> None:
        super().__init__(url_map, min=1, max=MAX_ID)


class _ProblemApi(Api):
    """flask-smorest's Api, answering HTTP errors (including its 422s) as problem+json."""

    def handle_http_exception(self, error: HTTPException) -> Response:
        data = getattr(error, "data", None) or {}
        messages = data.get("messages")
        return problem(status=error.code or 500, title=error.name, detail=error.description or "",
                       field=first_field(messages) if messages else None, errors=messages)


def runtime() -> Runtime:
    """The runtime this app serves."""
    found: Runtime = current_app.extensions["handoff.runtime"]
    return found


def create_app(*, runtime: Runtime | None = None, rate_limit: str = DEFAULT_RATE) -> Flask:
    """A Flask app serving the Handoff API over `runtime` (built from the environment if not given)."""
    if runtime is None:
        from orchestrator.config import load_settings
        from orchestrator.runtime import build_runtime
        settings = load_settings()
        settings.require_exception_owner()  # as every command does: no placeholder owner in production
        runtime = build_runtime(settings)
    app = Flask("handoff", static_folder=None)  # nothing is served from disk but the packaged docs page
    app.config.update(
        API_TITLE="Handoff", API_VERSION="v1", OPENAPI_VERSION="3.0.3", OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json", MAX_CONTENT_LENGTH=MAX_BODY_BYTES, JSON_SORT_KEYS=False,
    )
    app.extensions["handoff.runtime"] = runtime
    api = _ProblemApi(app, spec_kwargs={"components": {"securitySchemes": {
        "apiKey": {"type": "http", "scheme": "bearer", "description": "hk_... from `handoff apikeys create`"}}},
        "security": [{"apiKey": []}]})
    # Ids are database integers: one outside their range is simply not found (never an overflow).
    app.url_map.converters["id"] = IdConverter
    api.register_converter(IdConverter, lambda _converter: {"type": "integer", "minimum": 1, "maximum": MAX_ID})
    # Before the limiter's own hook: the budget is the authenticated key's, so a request that
    # merely names another key's (visible) prefix spends its address's budget, not that key's.
    app.before_request(_begin)
    Limiter(key_func=_rate_key, app=app, default_limits=[rate_limit], storage_uri="memory://",
            headers_enabled=True)

    from orchestrator.api.routes import (
        accounts,
        dashboard,
        docs,
        exceptions,
        health,
        journeys,
        playbooks,
        reports,
        signals,
        tasks,
        webhooks,
    )
    for module in (signals, webhooks, tasks, journeys, exceptions, accounts, playbooks, reports, health):
        api.register_blueprint(module.blp)
    app.register_blueprint(docs.blp)
    app.register_blueprint(dashboard.blp)
    _document_problems(api)

    app.after_request(_log_request)
    app.register_error_handler(HandoffError, from_handoff_error)
    return app


_PROBLEM_SCHEMA = {
    "type": "object", "required": ["type", "title", "status"],
    "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                   "detail": {"type": "string"}, "field": {"type": "string", "nullable": True},
                   "errors": {}},
}


def _document_problems(api: Api) -> None:
    """Every operation may answer a problem+json error; say so in the OpenAPI document."""
    api.spec.components.schema("Problem", _PROBLEM_SCHEMA)
    problem_response = {"description": "a problem (RFC 9457), naming the field at fault where there is one",
                        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    # apispec has no public way to amend registered paths; flask-smorest has registered them all by now.
    for operations in api.spec._paths.values():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            for code in [code for code in responses if str(code)[0] in "45"]:
                responses[code] = {**problem_response, "description": responses[code].get("description", "")
                                   if isinstance(responses[code], dict) else problem_response["description"]}
            responses["default"] = problem_response


def _rate_key() -> str:
    # Per authenticated key (its id, never the secret); anyone else shares their address's budget.
    who = g.get("principal")
    return f"key:{who.key_id}" if who is not None else f"ip:{request.remote_addr}"


def _begin() -> Response | None:
    g.request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
    g.started = time.monotonic()
    # No text column takes a NUL (PostgreSQL refuses it): answer before any query sees one.
    for name, value in request.args.items(multi=True):
        if "\x00" in name or "\x00" in value:
            return problem(status=400, title="Bad Request", detail="a query parameter contains a NUL character",
                           field=name.replace("\x00", ""), type_="/problems/invalid")
    if "\x00" in request.path:
        return problem(status=404, title="Not Found", detail="no such resource")
    refused = _body_problem()
    if refused is not None:
        return refused
    with unit_of_work(runtime().sessions, read_only=True) as session:
        g.principal = authenticate_request(session, now=runtime().clock.now())
    return None


# These parse their raw bodies with the intake's own checks, a result per item of a batch.
_RAW_BODY_BLUEPRINTS = frozenset({"signals", "webhooks"})


def _body_problem() -> Response | None:
    # A NUL or a lone surrogate in a JSON string reaches no column (PostgreSQL refuses both, SQLite
    # cannot encode the second): refused here, naming the field, before any route stores a thing.
    if request.blueprint in _RAW_BODY_BLUEPRINTS or not request.is_json:
        return None
    body = request.get_json(silent=True)
    found = json_problem(body) if body is not None else None
    if found is None:
        return None
    return problem(status=422, title="Unprocessable Entity", detail=f"{found.field or 'the body'} {found.reason}",
                   field=found.field, type_="/problems/invalid")


def _log_request(response: Response) -> Response:
    # One JSON line per request: no query string, no body, no key (customer data and secrets).
    who = g.get("principal")
    log.info(json.dumps({
        "request_id": g.get("request_id"), "method": request.method,
        "route": request.url_rule.rule if request.url_rule else None, "status": response.status_code,
        "ms": round((time.monotonic() - g.get("started", time.monotonic())) * 1000, 1),
        "key": who.key_id if who else None,
    }))
    response.headers["X-Request-Id"] = g.get("request_id", "")
    return response


def page_of(items: list[Any], *, limit: int, key: Any) -> dict[str, Any]:
    """A page of a list fetched with limit+1 rows: the items and the cursor of the next page."""
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next": str(key(items[-1])) if more and items else None}
