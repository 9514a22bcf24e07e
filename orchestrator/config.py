"""Settings: HANDOFF_* environment variables, plus an optional TOML file for what does not fit.

Everything is validated and parsed at start (caps, quiet hours, calendars, response
windows are held as parsed values, never re-read on use); a wrong value raises ConfigError
naming the setting, which the CLI prints as one line. Secrets are kept out of `repr` and
messages. Importing this module needs neither the ORM nor the playbook compiler.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy.engine import URL

from orchestrator.calendars import BusinessCalendar, CalendarError, calendar_from_config
from orchestrator.database_url import DEFAULT_CONNECT_TIMEOUT, parse_database_url
from orchestrator.durations import (
    Duration,
    DurationError,
    GovernanceError,
    parse_duration,
    parse_quiet_hours,
    parse_touch_cap,
)
from orchestrator.errors import ConfigError
from orchestrator.hints import closest

DEFAULT_DATABASE_URL = "sqlite:///handoff.db"
DEFAULT_CONFIG_FILE = "handoff.toml"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class ExceptionCategory:
    owner: str  # a named person (email), never a team alias
    respond_within: str = "1 business day"
    window: Duration = field(init=False, repr=False, compare=False)  # respond_within, parsed

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", parse_duration(self.respond_within))


@dataclass(frozen=True)
class LlmSettings:
    """An OpenAI-compatible chat completions endpoint for the `llm` drafter (HANDOFF_LLM_*)."""

    base_url: str  # e.g. https://api.openai.com/v1; "/chat/completions" is added
    model: str
    api_key: str = field(default="", repr=False)
    timeout: float = 10.0  # seconds for the whole answer; past it the template stands in
    # Hosts (names, IPs or CIDR ranges) that may be internal, as for [connectors.webhook] allow_hosts.
    allow_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    database_url: URL
    log_level: str = "INFO"
    database_connect_timeout: int = DEFAULT_CONNECT_TIMEOUT  # seconds
    config_file: Path | None = None
    # Calendars by name; "default" applies to owners without their own working hours.
    calendars: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The person who answers for exception items no category names an owner for. There is no
    # placeholder: without one, commands refuse to start (`require_exception_owner`).
    exception_owner: str | None = None
    exception_categories: Mapping[str, ExceptionCategory] = field(default_factory=dict)
    # Across all playbooks: automated customer-facing touches per account, e.g. "3 per 7d".
    customer_touch_cap: str | None = None
    # No automated customer-facing action in this local window, e.g. "20:00-08:00".
    quiet_hours: str | None = None
    quiet_hours_timezone: str = "UTC"
    connectors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    # SLA enforcement: a task is "at risk" once this share of its window has elapsed.
    sla_at_risk_share: float = 0.75
    # The owner is reminded this long (business time) before a task is due.
    sla_reminder_lead: str = "2 business hours"
    # CRM task statuses that mean "waiting on the customer": the SLA clock pauses.
    sla_waiting_statuses: tuple[str, ...] = ("Waiting on someone else", "WAITING")
    # After the last rung of an escalation chain, how long until an exception item opens.
    sla_exhausted_after: str = "1 business day"
    # Who gets the weekly leadership digest (an HTML email through the outbox), Mondays.
    report_digest_to: tuple[str, ...] = ()
    # Minutes of routine work each automated action saves (the time-saved ledger), by action name.
    action_estimates: Mapping[str, int] = field(default_factory=dict)
    # Decision briefs: a trigger older than this many days has its age stated; a renewal closer
    # than this many days is listed under Risks.
    brief_stale_after_days: int = 7
    brief_renewal_within_days: int = 60
    # The `llm` drafter's endpoint; None: hybrid steps that ask for it get the template.
    llm: LlmSettings | None = None
    # The texts above, parsed once when the settings are made (dataclasses.replace parses again).
    touch_cap: tuple[int, Duration] | None = field(init=False, repr=False, compare=False)
    quiet_window: tuple[time, time] | None = field(init=False, repr=False, compare=False)
    quiet_zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _calendars: Mapping[str, BusinessCalendar] = field(init=False, repr=False, compare=False)
    _default_category: ExceptionCategory | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parsed = {
            "touch_cap": parse_touch_cap(self.customer_touch_cap) if self.customer_touch_cap else None,
            "quiet_window": parse_quiet_hours(self.quiet_hours) if self.quiet_hours else None,
            "quiet_zone": ZoneInfo(self.quiet_hours_timezone),
            "_calendars": {name: calendar_from_config(config) for name, config in self.calendars.items()},
            "_default_category": ExceptionCategory(owner=self.exception_owner) if self.exception_owner else None,
        }
        for name, value in parsed.items():
            object.__setattr__(self, name, value)

    def calendar(self, name: str = "default") -> BusinessCalendar:
        """A configured business calendar; without a "default" one, Mon-Fri 09:00-17:00 UTC."""
        if name in self._calendars:
            return self._calendars[name]
        if name == "default":
            return _OFFICE_HOURS
        known = ", ".join(sorted(self.calendars)) or "none configured"
        raise CalendarError(f'no calendar named "{name}" (known: {known})')

    def exception_category(self, name: str) -> ExceptionCategory:
        """The configured owner and window for a category, or the default owner."""
        configured = self.exception_categories.get(name) or self._default_category
        if configured is None:
            raise _no_owner()
        return configured

    def require_exception_owner(self) -> None:
        """Refuse to run without a named default exception owner (ConfigError, one line)."""
        if not self.exception_owner:
            raise _no_owner()

    def describe(self) -> dict[str, str]:
        """Settings safe to print: the database password is masked."""
        return {
            "database": self.database_url.render_as_string(hide_password=True),
            "config_file": str(self.config_file or "(none)"),
            "log_level": self.log_level,
        }


_OFFICE_HOURS = BusinessCalendar()


def _no_owner() -> ConfigError:
    return ConfigError("exceptions.default_owner", "no exception owner is configured: name the person who answers "
                       "for exception items in handoff.toml ([exceptions] default_owner = \"...\") or "
                       "HANDOFF_EXCEPTION_OWNER (`handoff demo` writes the sample team's handoff.toml)")


def _duration(text: str) -> None:
    try:
        parse_duration(text)
    except DurationError as exc:
        raise ValidationError(str(exc)) from None


def _known_categories(categories: dict[str, Any]) -> None:
    # Imported here: the category list lives beside the exception item model, and reading
    # settings must not load the ORM unless a file actually configures categories.
    from orchestrator.models.exceptions import Category

    for name in categories:
        if name not in {category.value for category in Category}:
            known = ", ".join(category.value for category in Category)
            raise ValidationError(f'"{name}" is not an exception category{_category_hint(name)}; known: {known}')


def _category_hint(name: str) -> str:
    from orchestrator.models.exceptions import Category

    close = closest(name, [category.value for category in Category])
    return f' (did you mean "{close}"?)' if close else ""


class _CategorySchema(Schema):
    owner = fields.Email(required=True)
    respond_within = fields.String(load_default="1 business day", validate=_duration)


class _ExceptionsSchema(Schema):
    default_owner = fields.Email(load_default=None)
    categories = fields.Dict(keys=fields.String(), values=fields.Nested(_CategorySchema), load_default=dict,
                             validate=_known_categories)


def _checked_by(parser: Callable[[str], object]) -> Callable[[str], None]:
    def check(value: str) -> None:
        try:
            parser(value)
        except GovernanceError as exc:
            raise ValidationError(str(exc)) from None
    return check


def _known_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{name!r} is not a known time zone (e.g. America/New_York)") from None


class _GovernanceSchema(Schema):
    customer_touches = fields.String(load_default=None, validate=_checked_by(parse_touch_cap))
    quiet_hours = fields.String(load_default=None, validate=_checked_by(parse_quiet_hours))
    timezone = fields.String(load_default="UTC", validate=_known_timezone)


def _valid_calendars(calendars: dict[str, Any]) -> None:
    for name, config in calendars.items():
        try:
            calendar_from_config(config)
        except CalendarError as exc:
            raise ValidationError(f"{name}: {exc}") from None


class _SlaSchema(Schema):
    at_risk_share = fields.Float(load_default=0.75, validate=lambda value: _share(value))
    reminder_lead = fields.String(load_default="2 business hours", validate=_duration)
    waiting_statuses = fields.List(fields.String(), load_default=lambda: ["Waiting on someone else", "WAITING"])
    exhausted_after = fields.String(load_default="1 business day", validate=_duration)


def _share(value: float) -> None:
    if not 0 < value < 1:
        raise ValidationError(f"{value} is not a share between 0 and 1 (e.g. 0.75)")


class _ReportsSchema(Schema):
    digest_to = fields.List(fields.Email(), load_default=list)


class _BriefsSchema(Schema):
    stale_after_days = fields.Integer(strict=True, load_default=7, validate=validate.Range(min=0, max=3650))
    renewal_within_days = fields.Integer(strict=True, load_default=60, validate=validate.Range(min=0, max=3650))


class _FileSchema(Schema):
    calendars = fields.Dict(keys=fields.String(), values=fields.Dict(), load_default=dict,
                            validate=_valid_calendars)
    exceptions = fields.Nested(_ExceptionsSchema, load_default=lambda: _ExceptionsSchema().load({}))
    governance = fields.Nested(_GovernanceSchema, load_default=lambda: _GovernanceSchema().load({}))
    connectors = fields.Dict(keys=fields.String(), values=fields.Dict(), load_default=dict)
    sla = fields.Nested(_SlaSchema, load_default=lambda: _SlaSchema().load({}))
    reports = fields.Nested(_ReportsSchema, load_default=lambda: _ReportsSchema().load({}))
    briefs = fields.Nested(_BriefsSchema, load_default=lambda: _BriefsSchema().load({}))
    estimates = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=100)),
                            values=fields.Integer(strict=True, validate=validate.Range(min=0, max=100_000)),
                            load_default=dict)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate settings from the environment (default: os.environ) and the config file."""
    env = os.environ if environ is None else environ
    url = parse_database_url(env.get("HANDOFF_DATABASE_URL") or DEFAULT_DATABASE_URL, allow_memory=False)
    connect_timeout = _whole_seconds(env, "HANDOFF_DATABASE_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT)
    log_level = (env.get("HANDOFF_LOG_LEVEL") or "INFO").upper()
    if log_level not in LOG_LEVELS:
        raise ConfigError("HANDOFF_LOG_LEVEL", f"{log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    config_file = _config_path(env)
    from_file = _file_settings(config_file)
    owner = (env.get("HANDOFF_EXCEPTION_OWNER") or "").strip()
    if owner:
        try:
            from_file["exception_owner"] = fields.Email().deserialize(owner)
        except ValidationError:
            raise ConfigError("HANDOFF_EXCEPTION_OWNER", f"{owner[:80]!r} is not an email address") from None
    return Settings(database_url=url, log_level=log_level, database_connect_timeout=connect_timeout,
                    llm=_llm_settings(env), **from_file)


def _llm_settings(env: Mapping[str, str]) -> LlmSettings | None:
    base_url = (env.get("HANDOFF_LLM_BASE_URL") or "").strip()
    if not base_url:
        return None
    if not base_url.lower().startswith(("https://", "http://")):
        raise ConfigError("HANDOFF_LLM_BASE_URL", "must start with https:// (or http://)")
    model = (env.get("HANDOFF_LLM_MODEL") or "").strip()
    if not model:
        raise ConfigError("HANDOFF_LLM_MODEL", "names the model to ask when HANDOFF_LLM_BASE_URL is set")
    raw_timeout = (env.get("HANDOFF_LLM_TIMEOUT") or "10").strip()
    try:
        timeout = float(raw_timeout)
    except ValueError:
        timeout = -1.0
    if not 0.1 <= timeout <= 120:
        raise ConfigError("HANDOFF_LLM_TIMEOUT", f"{raw_timeout[:20]!r} is not a number of seconds from 0.1 to 120")
    hosts = tuple(h.strip() for h in (env.get("HANDOFF_LLM_ALLOW_HOSTS") or "").split(",") if h.strip())
    return LlmSettings(base_url=base_url, model=model, api_key=(env.get("HANDOFF_LLM_API_KEY") or "").strip(),
                       timeout=timeout, allow_hosts=hosts)


def _whole_seconds(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if len(raw) > 3 or not raw.isdecimal() or not raw.isascii() or not 1 <= int(raw) <= 600:
        raise ConfigError(name, f"{raw[:20]!r} is not a number of seconds from 1 to 600")
    return int(raw)


def with_config_file(settings: Settings, path: Path) -> Settings:
    """The same settings with everything the config file holds read from `path` instead."""
    return dataclasses.replace(settings, **_file_settings(path))


def _file_settings(config_file: Path | None) -> dict[str, Any]:
    data = _read_config_file(config_file) if config_file else _FileSchema().load({})
    exceptions, governance = data["exceptions"], data["governance"]
    return dict(
        config_file=config_file,
        calendars=data["calendars"],
        exception_owner=exceptions["default_owner"],
        exception_categories={name: ExceptionCategory(**value)
                              for name, value in exceptions["categories"].items()},
        customer_touch_cap=governance["customer_touches"],
        quiet_hours=governance["quiet_hours"],
        quiet_hours_timezone=governance["timezone"],
        connectors=data["connectors"],
        sla_at_risk_share=data["sla"]["at_risk_share"],
        sla_reminder_lead=data["sla"]["reminder_lead"],
        sla_waiting_statuses=tuple(data["sla"]["waiting_statuses"]),
        sla_exhausted_after=data["sla"]["exhausted_after"],
        report_digest_to=tuple(data["reports"]["digest_to"]),
        action_estimates=dict(data["estimates"]),
        brief_stale_after_days=data["briefs"]["stale_after_days"],
        brief_renewal_within_days=data["briefs"]["renewal_within_days"],
    )


def _config_path(env: Mapping[str, str]) -> Path | None:
    explicit = env.get("HANDOFF_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError("HANDOFF_CONFIG", f"no such file: {path}")
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(_bounded_read(path).decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = _bounded_read(path)[: exc.start].count(b"\n") + 1
        raise ConfigError(str(path), f"line {line}: the file is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the file ({exc.strerror or type(exc).__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    try:
        return _FileSchema().load(raw)
    except ValidationError as exc:
        setting, message = _first_message(exc.messages)
        raise ConfigError(f"{path}: {setting}", message) from None


MAX_CONFIG_BYTES = 1024 * 1024


def _bounded_read(path: Path) -> bytes:
    # Measured before it is read: a configuration file is a few kilobytes.
    with path.open("rb") as handle:
        data = handle.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(str(path), f"the file is larger than {MAX_CONFIG_BYTES // 1024} KiB")
    return data


def _first_message(messages: Any, prefix: str = "") -> tuple[str, str]:
    # marshmallow nests messages by field; report the first leaf as "a.b.c: message".
    if isinstance(messages, dict):
        key, value = next(iter(messages.items()))
        return _first_message(value, f"{prefix}.{key}" if prefix else str(key))
    if isinstance(messages, list) and messages:
        return prefix, str(messages[0])
    return prefix, str(messages)
