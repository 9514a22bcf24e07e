"""Which connector delivers an outbox message, decided when it is enqueued.

`target == "crm"`: the account's own source system (an account with a salesforce external
id goes to "salesforce") when that connector is enabled, else the deployment's default CRM
(`default_crm = true` in a `[connectors.NAME]` section), else the `files` journal (the
embedded default). `email` -> "smtp", `chat` -> "slack", `webhook` -> "webhook"; when that
channel's connector is not enabled, the `files` journal takes it if it is enabled and
lists the target (`[connectors.files] targets`, all targets by default), so on the embedded
default every write lands somewhere a person can read it.

Routing reads only the configuration's sections, never imports a connector: it runs inside
the engine's transactions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.db import SESSION_CONNECTORS_KEY
from orchestrator.models import ExternalId

__all__ = ["CHANNELS", "FILES", "ROUTING_KEY", "Routing", "install_routing", "route_for", "routing_of"]

CHANNELS: Mapping[str, str] = {"email": "smtp", "chat": "slack", "webhook": "webhook"}
FILES = "files"
ROUTING_KEY = "handoff.routing"
_ALL_TARGETS = ("crm", "email", "chat", "webhook")
# Section keys read here, `enabled` and `default_crm`, are left out of the connector's own
# configuration by connectors.registry.


@dataclass(frozen=True)
class Routing:
    enabled: tuple[str, ...] = (FILES,)  # in configuration order
    default_crm: str | None = None
    files_targets: frozenset[str] = frozenset(_ALL_TARGETS)

    @classmethod
    def from_connectors(cls, connectors: Mapping[str, Mapping[str, Any]]) -> Routing:
        """Routing for a deployment's `[connectors.*]` sections (`Settings.connectors`)."""
        enabled = [name for name, section in connectors.items() if section.get("enabled", True) is not False]
        files = connectors.get(FILES)
        if files is None:
            enabled.append(FILES)  # the journal is on unless switched off
        default_crm = next((name for name in enabled if connectors.get(name, {}).get("default_crm") is True), None)
        targets = (files or {}).get("targets", _ALL_TARGETS)
        return cls(enabled=tuple(enabled), default_crm=default_crm,
                   files_targets=frozenset(str(target) for target in targets))

    def needs_sources(self, target: str) -> bool:
        """Whether choosing needs the account's source systems (a query): only for CRM writes to a real CRM."""
        return target == "crm" and any(name != FILES for name in self.enabled)

    def choose(self, *, target: str, account_sources: Sequence[str] = ()) -> str:
        if target == "crm":
            for name in self.enabled:
                if name in account_sources:
                    return name
            if self.default_crm:
                return self.default_crm
            return FILES
        channel = CHANNELS.get(target, target)
        if channel in self.enabled:
            return channel
        if FILES in self.enabled and target in self.files_targets:
            return FILES
        return channel  # not enabled: delivery says so, the message waits


def install_routing(sessions: sessionmaker[Session], connectors: Mapping[str, Mapping[str, Any]]) -> None:
    """Give every session of `sessions` the deployment's routing (read by outbox.enqueue)."""
    info = dict(sessions.kw.get("info") or {})
    info[SESSION_CONNECTORS_KEY] = connectors
    sessions.configure(info=info)


def routing_of(session: Session) -> Routing:
    """The routing installed on this session's factory; the embedded default's otherwise."""
    found = session.info.get(ROUTING_KEY)
    if isinstance(found, Routing):
        return found
    connectors = session.info.get(SESSION_CONNECTORS_KEY)
    if connectors is None:
        return _DEFAULT
    routing = session.info[ROUTING_KEY] = Routing.from_connectors(connectors)  # once per session
    return routing


def route_for(session: Session, *, target: str, account_id: int | None, routing: Routing | None = None) -> str:
    """The connector name for a message to `target` about `account_id`."""
    routing = routing or routing_of(session)
    sources: list[str] = []
    if account_id is not None and routing.needs_sources(target):
        sources = list(session.scalars(select(ExternalId.source).where(
            ExternalId.kind == "account", ExternalId.local_id == account_id)))
    return routing.choose(target=target, account_sources=sources)


_DEFAULT = Routing()
