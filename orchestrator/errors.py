"""Errors a user can act on. The CLI prints them as one line; the API maps them to problem+json."""


class HandoffError(Exception):
    """Base of every error whose message is meant for the person running Handoff."""


class ConfigError(HandoffError):
    """A setting is missing or wrong; the message names the setting."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class DatabaseUnavailable(HandoffError):
    """The database cannot be reached or is not migrated."""


class EngineError(HandoffError):
    """A request the engine refuses: a closed task, an expired override window, ..."""
