"""The connector registry: every installed connector, found through the `handoff.connectors` entry points.

Built-in connectors register exactly as a third party's would (`pyproject.toml`,
`[project.entry-points."handoff.connectors"]`, `slug = "package.module:Class"`), so adding
one never touches the core. A connector that cannot be imported, or whose SDK is missing,
is listed with the reason instead of breaking the program.

Three separate states, shown as three columns by `handoff connectors list`:

- installed: an entry point names it (and whether it imports: `available`);
- configured: the config file has a `[connectors.NAME]` section;
- enabled: configured and not `enabled = false`, or enabled by default (`files`).

Configuration values may be written as `env:VARIABLE` (read from the environment at start)
or `fernet:TOKEN` (encrypted with `handoff secrets encrypt`, decrypted with the keys in
HANDOFF_SECRET_KEYS); fields marked secret in a connector's schema are never printed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from marshmallow import ValidationError
from sqlalchemy.orm import Session

from connectors.base import Connector, ConnectorContext, DeliveryConnector, SourceConnector, secret_fields
from orchestrator import crypto
from orchestrator.config import Settings
from orchestrator.errors import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "ConnectorStatus", "Registry", "RegistryEntry", "build_connector",
           "connector_config", "connector_status", "data_dir", "enabled_names", "load_registry"]

ENTRY_POINT_GROUP = "handoff.connectors"
_ENV_PREFIX = "env:"
# Section keys that belong to Handoff (switching a connector and routing to it), not to its schema;
# orchestrator.delivery.routing reads them.
ROUTING_KEYS = frozenset({"enabled", "default_crm"})


@dataclass(frozen=True)
class RegistryEntry:
    """One installed connector: its class, or why it cannot be used."""

    slug: str
    target: str  # the entry point's "module:Class"
    distribution: str | None
    cls: type[Connector] | None
    error: str | None = None  # import error or missing SDK, one line

    @property
    def available(self) -> bool:
        return self.cls is not None and self.error is None

    @property
    def capabilities(self) -> list[str]:
        if self.cls is None:
            return []
        names = [("source", SourceConnector), ("delivery", DeliveryConnector)]
        found = [name for name, base in names if issubclass(self.cls, base)]
        if hasattr(self.cls, "verify_webhook"):
            found.append("webhook")
        return found


Registry = Mapping[str, RegistryEntry]


def load_registry() -> dict[str, RegistryEntry]:
    """slug -> entry for every connector installed in this environment (read fresh each call)."""
    found: dict[str, RegistryEntry] = {}
    for point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        if point.name in found:
            continue  # two distributions claim one slug: the first (by sys.path order) wins
        distribution = point.dist.name if point.dist is not None else None
        found[point.name] = _load_entry(point, distribution)
    return found


def _load_entry(point: metadata.EntryPoint, distribution: str | None) -> RegistryEntry:
    try:
        loaded = point.load()
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        reason = f"missing SDK: {missing}" if missing else f"cannot import: {exc}"
        return RegistryEntry(slug=point.name, target=point.value, distribution=distribution, cls=None,
                             error=reason)
    except Exception as exc:  # a broken third-party module must not take the program down
        return RegistryEntry(slug=point.name, target=point.value, distribution=distribution, cls=None,
                             error=f"cannot import: {type(exc).__name__}: {exc}")
    if not (isinstance(loaded, type) and issubclass(loaded, Connector)):
        return RegistryEntry(slug=point.name, target=point.value, distribution=distribution, cls=None,
                             error="not a connector class (expected a subclass of connectors.base.Connector)")
    missing_modules = loaded.missing_modules()
    error = f"missing SDK: {', '.join(missing_modules)}" if missing_modules else None
    return RegistryEntry(slug=point.name, target=point.value, distribution=distribution, cls=loaded, error=error)


@dataclass(frozen=True)
class ConnectorStatus:
    name: str
    installed: bool
    available: bool
    configured: bool
    enabled: bool
    problem: str | None = None


def connector_status(*, name: str, settings: Settings, registry: Registry) -> ConnectorStatus:
    """Installed / configured / enabled for one connector name."""
    entry = registry.get(name)
    section = settings.connectors.get(name)
    configured = section is not None
    if entry is None:
        return ConnectorStatus(name=name, installed=False, available=False, configured=configured, enabled=False,
                               problem="not installed" if configured else None)
    if section is not None:
        enabled = _flag(section.get("enabled", True), name=name)
    else:
        enabled = entry.cls is not None and entry.cls.default_enabled
    return ConnectorStatus(name=name, installed=True, available=entry.available, configured=configured,
                           enabled=enabled and entry.available, problem=entry.error)


def enabled_names(*, settings: Settings, registry: Registry) -> list[str]:
    """Names of the connectors this deployment uses, sorted."""
    names = set(registry) | set(settings.connectors)
    return sorted(name for name in names
                  if connector_status(name=name, settings=settings, registry=registry).enabled)


def connector_config(*, name: str, settings: Settings, registry: Registry,
                     environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The connector's validated configuration, env references and encrypted values resolved.

    ConfigError names the setting (`connectors.NAME.FIELD`) and never shows a secret value.
    """
    entry = _entry(name, registry)
    assert entry.cls is not None
    env = os.environ if environ is None else environ
    raw = {key: value for key, value in (settings.connectors.get(name) or {}).items() if key not in ROUTING_KEYS}
    resolved = {key: _resolve(value, setting=f"connectors.{name}.{key}", environ=env) for key, value in raw.items()}
    try:
        return dict(entry.cls.config_schema().load(resolved))
    except ValidationError as exc:
        key, message = _first(exc.messages)
        raise ConfigError(f"connectors.{name}.{key}", message) from None


def build_connector(*, name: str, settings: Settings, registry: Registry,
                    clock: Callable[[], datetime] | None = None,
                    environ: Mapping[str, str] | None = None,
                    sessions: Callable[[], Session] | None = None) -> Connector:
    """An instance of the named connector, configured; ConfigError when it cannot be used.

    `sessions` (a session factory) is handed to connectors that keep core state (smtp's suppression list).
    """
    entry = _entry(name, registry)
    assert entry.cls is not None
    config = connector_config(name=name, settings=settings, registry=registry, environ=environ)
    context = ConnectorContext(name=name, settings=settings, clock=clock or (lambda: datetime.now(UTC)),
                               data_dir=data_dir(settings), sessions=sessions)
    return entry.cls(config=config, context=context)


def printable_config(*, name: str, config: Mapping[str, Any], registry: Registry) -> dict[str, Any]:
    """The config with secret fields masked, for `connectors check` and logs."""
    entry = _entry(name, registry)
    assert entry.cls is not None
    hidden = secret_fields(entry.cls.config_schema)
    return {key: ("***" if key in hidden and value else value) for key, value in config.items()}


def data_dir(settings: Settings) -> Path:
    """Where connectors keep local state: beside the SQLite database file, else the working directory."""
    url = settings.database_url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).expanduser().resolve().parent
    return Path.cwd()


def _entry(name: str, registry: Registry) -> RegistryEntry:
    entry = registry.get(name)
    if entry is None:
        known = ", ".join(sorted(registry)) or "none"
        raise ConfigError(f"connectors.{name}", f"no connector {name!r} is installed (installed: {known})")
    if entry.cls is None or entry.error:
        raise ConfigError(f"connectors.{name}", f"cannot be used: {entry.error}")
    return entry


def _resolve(value: Any, *, setting: str, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str) and value.startswith(_ENV_PREFIX):
        variable = value.removeprefix(_ENV_PREFIX)
        if variable not in environ:
            raise ConfigError(setting, f"refers to the environment variable {variable}, which is not set")
        return environ[variable]
    if isinstance(value, str) and crypto.is_encrypted(value):
        return crypto.decrypt(value, environ=environ, setting=setting)
    return value


def _flag(value: Any, *, name: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"connectors.{name}.enabled", "must be true or false")


def _first(messages: Any, prefix: str = "") -> tuple[str, str]:
    if isinstance(messages, dict) and messages:
        key, value = next(iter(messages.items()))
        return _first(value, f"{prefix}.{key}" if prefix else str(key))
    if isinstance(messages, list) and messages:
        return prefix, str(messages[0])
    return prefix, str(messages)
