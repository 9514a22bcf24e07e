"""The connector contract: one small base class per capability, plain data across the boundary.

A connector is a class per outside system (a CRM, a file folder) or delivery channel (mail,
chat, webhooks). It declares what it can do by the bases it inherits:

- `SourceConnector`: Handoff reads records and signals from it (`pull`, `describe_fields`);
- `DeliveryConnector`: Handoff writes outbox messages to it (`push`, batched, idempotent);
- `WebhookConnector`: it calls Handoff (`verify_webhook`, `parse_webhook`).

Connectors register through the entry-point group `handoff.connectors` (see
`connectors.registry`) and talk to the core only through its public service functions:
`orchestrator.intake.records.upsert_records`, `orchestrator.intake.signals.ingest` and the
outbox claim/mark functions in `orchestrator.delivery`. Nothing crossing the boundary is an
ORM object: `Outbound`, `PushResult`, `Page` and `Record` are frozen dataclasses.

Additions to CONTRACT.md (nothing renamed or removed):
- `Outbound.target` and `Outbound.connector` (the outbox columns), `Outbound.created_at`;
- `AccountRef`, `TaskRef`, `FieldInfo`, `ConnectorContext` spelled out below;
- `Connector.name` (the configured name, the slug unless configured otherwise);
- `Connector.default_enabled` (enabled without a config section: the `files` connector on
  the embedded default) and `Connector.crm` (a delivery connector that can be a deployment's
  CRM, for routing `target == "crm"` messages);
- `Connector.close()` (release sockets and files after a delivery run);
- `SourceConnector.has_source()` (whether this configuration has anything to pull).
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import marshmallow

from orchestrator.intake.records import Record

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from orchestrator.config import Settings

__all__ = [
    "AccountRef", "Attribute", "Connector", "ConnectorContext", "ConnectorError", "DeliveryConnector", "FieldInfo",
    "Outbound", "Page", "PermanentError", "PushResult", "Record", "SourceConnector", "TaskRef",
    "TransientError", "WebhookConnector", "WebhookRejected", "secret_fields",
]


# -- errors -----------------------------------------------------------------------------------------

class ConnectorError(Exception):
    """Base of the errors a connector raises; the message is short and holds no customer data."""


class PermanentError(ConnectorError):
    """The item is wrong (validation error, unknown record): retrying cannot help; it goes dead."""


class TransientError(ConnectorError):
    """Timeout, 5xx, 429, dropped connection: retry later (after `retry_after` seconds if given)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WebhookRejected(ConnectorError):
    """An incoming webhook failed verification (bad signature, stale timestamp, replay)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- data across the boundary ----------------------------------------------------------------------

@dataclass(frozen=True)
class AccountRef:
    """The account a message is about, as a connector needs it to address the remote record."""

    id: int
    name: str
    domain: str | None
    external_ids: Mapping[str, str] = field(default_factory=dict)  # source -> id
    # The people internal notifications name (`to: account.owner | owner.manager | account.csm`).
    owner_email: str | None = None
    owner_manager_email: str | None = None
    csm_email: str | None = None


@dataclass(frozen=True)
class TaskRef:
    """The Handoff task a message is about; `crm_id` is the remote id once it was created."""

    id: int
    title: str
    crm_id: str | None
    crm_source: str | None
    owner_email: str | None
    owner_external_ids: Mapping[str, str] = field(default_factory=dict)  # source -> owner's id
    deal_external_ids: Mapping[str, str] = field(default_factory=dict)  # source -> id of its journey's deal


@dataclass(frozen=True)
class Outbound:
    """One outbox message as a connector sees it."""

    id: int
    kind: str
    idempotency_key: str  # send it to the remote side: a retry after a lost response must not double
    payload: Mapping[str, Any]
    attempts: int
    account: AccountRef | None = None
    task: TaskRef | None = None
    target: str = ""
    connector: str = ""
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class PushResult:
    """What happened to one message; `push` returns one per message, in the same order."""

    message_id: int
    outcome: Literal["delivered", "retry", "dead"]
    remote_id: str | None = None
    error: str | None = None  # short, no customer data
    retry_after: float | None = None  # seconds (429 Retry-After, daily limit reset)


@dataclass(frozen=True)
class Page:
    """One page of a pull: records and derived signals, and the cursor to store once they are committed."""

    records: Sequence[Record]
    signals: Sequence[Mapping[str, Any]]  # in the shape orchestrator.intake.signals.ingest takes
    cursor: Mapping[str, Any] | None
    api_calls: int = 0
    object_type: str = "all"  # which cursor this page advances (sync_cursors.object_type)


@dataclass(frozen=True)
class FieldInfo:
    """One field of a remote object, for mapping drift checks."""

    name: str
    type: str = "string"
    label: str = ""
    picklist: tuple[str, ...] | None = None  # allowed values, for picklist fields
    required: bool = False


@dataclass(frozen=True)
class Attribute:
    """A custom field a source fills into a record's attributes, named as playbooks read it.

    `kind` and `format` use the signal catalog's words (orchestrator/playbook/catalog.py).
    """

    name: str
    label: str
    kind: str = "text"
    format: str = "text"


@dataclass(frozen=True)
class ConnectorContext:
    """What the core hands a connector: settings, the time, a folder for local state."""

    name: str
    settings: Settings
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    data_dir: Path = field(default_factory=Path.cwd)  # the journal file and other local state live here
    timeout: float = 30.0  # seconds, for every remote call
    # Opens a database session (the runtime's sessionmaker) for connectors that read or keep
    # core state, such as the smtp connector's suppression list; None where there is no database.
    sessions: Callable[[], Session] | None = None


# -- the bases --------------------------------------------------------------------------------------

class _EmptySchema(marshmallow.Schema):
    pass


def secret_fields(schema: type[marshmallow.Schema]) -> frozenset[str]:
    """Names of the schema's fields marked `metadata={"secret": True}`: never logged or printed."""
    return frozenset(name for name, declared in schema._declared_fields.items()
                     if declared.metadata.get("secret"))


class Connector(ABC):
    """Base of every connector. One class per outside system (or delivery channel)."""

    slug: ClassVar[str]  # "salesforce", "hubspot", "files", "smtp", "slack", "webhook"
    title: ClassVar[str]
    # Secret fields are declared as fields.String(metadata={"secret": True}); never logged or
    # printed; given in the config file as an env reference or encrypted (`fernet:...`).
    config_schema: ClassVar[type[marshmallow.Schema]] = _EmptySchema
    sdk_modules: ClassVar[tuple[str, ...]] = ()  # available() = all importable
    default_enabled: ClassVar[bool] = False  # enabled even without a [connectors.NAME] section
    crm: ClassVar[bool] = False  # can be the deployment's CRM (target "crm" messages)

    def __init__(self, *, config: Mapping[str, Any], context: ConnectorContext) -> None:
        self.config = config
        self.context = context

    @property
    def name(self) -> str:
        return self.context.name

    @classmethod
    def available(cls) -> bool:
        """True when every SDK module the connector needs can be imported."""
        return not cls.missing_modules()

    @classmethod
    def missing_modules(cls) -> list[str]:
        """The SDK modules that are not installed (shown by `handoff connectors list`)."""
        missing = []
        for module in cls.sdk_modules:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append(module)
        return missing

    def check(self) -> list[str]:
        """Problems found (credentials, mapping drift); [] when fine."""
        return []

    def close(self) -> None:
        """Release connections and files; called after a delivery or sync run."""
        return None

    def __repr__(self) -> str:
        # The config may hold secrets: never show it.
        return f"<{type(self).__name__} {self.context.name}>"


class SourceConnector(Connector):
    """A system Handoff reads from (a CRM, a folder of files)."""

    @abstractmethod
    def pull(self, *, cursor: Mapping[str, Any] | None, full: bool = False) -> Iterator[Page]:
        """Pages of records and derived signals changed since `cursor` (everything with `full`)."""

    def describe_fields(self) -> dict[str, list[FieldInfo]]:
        """Object -> fields, for drift checks."""
        return {}

    def describe_attributes(self) -> dict[str, list[Attribute]]:
        """`account`/`deal`/`contact` -> the mapped custom fields this source fills, with the CRM's labels.

        What the playbook validator learns through `handoff connectors fields NAME --write`.
        """
        return {}

    def has_source(self) -> bool:
        """Whether this instance has anything to pull (a `files` connector without a folder has not)."""
        return True


class DeliveryConnector(Connector):
    """A system Handoff writes to."""

    handles: ClassVar[frozenset[str]] = frozenset()  # outbox kinds, e.g. {"crm.create_task"}
    max_batch: ClassVar[int] = 1  # the largest batch the remote API takes (SF 200, HS 100)
    description_limit: ClassVar[int | None] = None  # longest task description the system takes

    @abstractmethod
    def push(self, messages: Sequence[Outbound]) -> list[PushResult]:
        """Deliver `messages` idempotently; one result per message, same order.

        May raise TransientError / PermanentError for the whole batch instead.
        """


class WebhookConnector(Connector):
    """A system that calls Handoff (HubSpot, signal sources)."""

    @abstractmethod
    def verify_webhook(self, *, method: str, uri: str, body: bytes, headers: Mapping[str, str],
                       now: datetime, remember: bool = True) -> str:
        """The request's signature; WebhookRejected(reason) on a bad signature, stale timestamp or replay.

        With `remember`, a signature accepted before in this process is a replay; the API passes
        False and keeps receipts in the database instead (`connectors.inbound`).
        """

    @abstractmethod
    def parse_webhook(self, *, body: bytes) -> Page:
        """The records and signals an accepted webhook carries."""
