"""Errors a user can act on. The CLI prints them as one line; the API maps them to problem+json.

Each kind carries the HTTP status and problem type the API answers with, so the mapping
is written once, here, and the core never imports the web framework.
"""

from __future__ import annotations


class HandoffError(Exception):
    """Base of every error whose message is meant for the person running Handoff."""

    status: int = 400
    problem: str = "about:blank"


class ConfigError(HandoffError):
    """A setting is missing or wrong; the message names the setting."""

    status = 500
    problem = "/problems/configuration"

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class DatabaseUnavailable(HandoffError):
    """The database cannot be reached or is not migrated."""

    status = 503
    problem = "/problems/database-unavailable"


class EngineError(HandoffError):
    """A request the engine refuses; the subclasses below say which kind of refusal it is."""

    status = 409
    problem = "/problems/refused"


class NotFound(EngineError):
    """No such task, journey, exception item, ... (or not one the caller may see)."""

    status = 404
    problem = "/problems/not-found"


class Conflict(EngineError):
    """The thing exists but its state forbids the request: already done, window closed, lost a race."""

    status = 409
    problem = "/problems/conflict"


class Invalid(EngineError):
    """The request itself is wrong; `field` names the part at fault."""

    status = 422
    problem = "/problems/invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Forbidden(EngineError):
    """The caller is known but not entitled to this decision (segregation of duties, role)."""

    status = 403
    problem = "/problems/forbidden"
