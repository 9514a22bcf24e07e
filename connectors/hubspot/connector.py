"""The HubSpot connector: source (sync), delivery (task write-back) and webhooks, over hubspot-api-client."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, ClassVar

from sqlalchemy import select

from connectors.base import (
    Attribute,
    ConnectorContext,
    DeliveryConnector,
    FieldInfo,
    Outbound,
    Page,
    PushResult,
    Record,
    SourceConnector,
    TransientError,
    WebhookConnector,
    WebhookRejected,
)
from connectors.hubspot.config import HubSpotConfigSchema, HubSpotSettings
from connectors.hubspot.pull import SEARCH_CAP, Puller
from connectors.hubspot.transport import ApiError, Credentials, DailyLimitReached, Transport
from connectors.hubspot.webhooks import ReplayGuard, event_properties, parse_events, verify_v3
from connectors.hubspot.writeback import CREATE_KINDS, DESCRIPTION_LIMIT, UPDATE_KINDS, TaskWriter
from orchestrator import exception_queue
from orchestrator.models import ExceptionItem

# HubSpot property type -> the signal catalog's kind and display format.
_KINDS: Mapping[str, tuple[str, str]] = {
    "number": ("number", "number"), "bool": ("flag", "text"), "date": ("date", "date"),
    "datetime": ("datetime", "date"),
}

__all__ = ["HubSpotConnector"]

log = logging.getLogger(__name__)

# Process-wide: per (connector name, host), when HubSpot's DAILY limit answered, nothing is sent until
# then (monotonic seconds); per connector name, the signatures of webhooks already accepted.
_PAUSED: dict[tuple[str, str], float] = {}
_REPLAYS: dict[str, ReplayGuard] = {}
_STATE_LOCK = threading.Lock()


def settings_from(config: Mapping[str, Any]) -> HubSpotSettings:
    """Validated settings from a `[connectors.hubspot]` mapping (raw or already loaded)."""
    data = dict(HubSpotConfigSchema().load(dict(config)))
    keys = {"companies": "company_fields", "contacts": "contact_fields", "deals": "deal_fields"}
    defaults = HubSpotSettings().fields
    fields = {kind: {**defaults[kind], **(data.pop(key) or {})} for kind, key in keys.items()}
    return HubSpotSettings(fields=fields, **data)


class HubSpotConnector(SourceConnector, DeliveryConnector, WebhookConnector):
    """Companies, contacts, deals, owners and tasks in; tasks out; signed webhooks in."""

    slug: ClassVar[str] = "hubspot"
    title: ClassVar[str] = "HubSpot"
    config_schema = HubSpotConfigSchema
    sdk_modules: ClassVar[tuple[str, ...]] = ("hubspot",)
    crm: ClassVar[bool] = True
    handles: ClassVar[frozenset[str]] = CREATE_KINDS | UPDATE_KINDS
    max_batch: ClassVar[int] = 100
    description_limit: ClassVar[int | None] = DESCRIPTION_LIMIT

    def __init__(self, *, config: Mapping[str, Any], context: ConnectorContext,
                 monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 search_cap: int = SEARCH_CAP) -> None:
        super().__init__(config=config, context=context)
        self.settings = settings_from(config)
        self._monotonic, self._sleep, self._search_cap = monotonic, sleep, search_cap
        self._transport: Transport | None = None
        self._owner_ids: dict[str, str] | None = None

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            s = self.settings
            self._transport = Transport(
                host=s.host, ca_bundle=s.ca_bundle,
                credentials=Credentials(access_token=s.access_token, client_id=s.client_id,
                                        client_secret=s.client_secret, refresh_token=s.refresh_token),
                requests_per_10s=s.requests_per_10s, search_per_second=s.search_per_second,
                timeout=self.context.timeout, daily_reset_timezone=s.daily_reset_timezone,
                clock=self._monotonic, sleep=self._sleep, wall=self.context.clock)
        return self._transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def _guard(self) -> None:
        """Refuse to call HubSpot while the daily limit is used up (until its reset)."""
        with _STATE_LOCK:
            until = _PAUSED.get(self._pause_key)
        if until is not None:
            left = until - self._monotonic()
            if left > 0:
                raise DailyLimitReached("HubSpot's daily API limit is used up", retry_after=left)
            with _STATE_LOCK:
                _PAUSED.pop(self._pause_key, None)

    @property
    def _pause_key(self) -> tuple[str, str]:
        return (self.name, self.settings.host)

    def _paused(self, error: DailyLimitReached) -> None:
        seconds = float(error.retry_after or 3600)
        with _STATE_LOCK:
            first = self._pause_key not in _PAUSED
            _PAUSED[self._pause_key] = self._monotonic() + seconds
        if first:
            self._report_daily_limit(seconds)

    def _report_daily_limit(self, seconds: float) -> None:
        """One open exception item while the daily limit holds the connector (when the core gave sessions)."""
        factory = self.context.sessions
        if factory is None:
            log.warning("HubSpot connector %s paused for %.0fs: daily API limit used up", self.name, seconds)
            return
        until = self.context.clock() + timedelta(seconds=seconds)
        try:
            with factory() as session, session.begin():
                open_items = session.scalars(select(ExceptionItem).where(
                    ExceptionItem.category == exception_queue.Category.CONFIGURATION,
                    ExceptionItem.status == exception_queue.ItemStatus.OPEN))
                if any((item.detail or {}).get("reason") == "hubspot_daily_limit"
                       and (item.detail or {}).get("connector") == self.name for item in open_items):
                    return
                exception_queue.raise_item(
                    session, settings=self.context.settings, category=exception_queue.Category.CONFIGURATION,
                    at=self.context.clock(),
                    message=f"HubSpot's daily API limit is used up: connector {self.name} waits until "
                            f"{until.isoformat(timespec='minutes')} (raise the limit or lower the sync rate)",
                    detail={"reason": "hubspot_daily_limit", "connector": self.name, "until": until.isoformat()})
        except Exception as exc:  # the item is a courtesy; never let it break delivery
            log.warning("could not record the HubSpot daily-limit exception item: %s", type(exc).__name__)

    def _puller(self) -> Puller:
        return Puller(transport=self.transport, settings=self.settings, source=self.name, now=self.context.clock,
                      search_cap=self._search_cap)

    def owner_ids(self) -> Mapping[str, str]:
        """HubSpot owner id by lowercase email (one owners listing per connector instance)."""
        if self._owner_ids is None:
            api = self.transport.api("owners")
            found: dict[str, str] = {}
            after: str | None = None
            while True:
                page = self.transport.call(partial(api.get_page, limit=100, after=after),
                                           what="owners list")
                for owner in page.results or []:
                    if owner.email:
                        found[owner.email.strip().lower()] = str(owner.id)
                following = getattr(getattr(page, "paging", None), "next", None)
                after = getattr(following, "after", None)
                if not after:
                    break
            self._owner_ids = found
        return self._owner_ids

    # -- source --------------------------------------------------------------------------------

    def pull(self, *, cursor: Mapping[str, Any] | None, full: bool = False) -> Iterator[Page]:
        self._guard()
        try:
            yield from self._puller().pull(cursor=cursor, full=full)
        except DailyLimitReached as exc:
            self._paused(exc)
            raise

    def describe_fields(self) -> dict[str, list[FieldInfo]]:
        self._guard()
        api = self.transport.api("properties")
        described: dict[str, list[FieldInfo]] = {}
        for object_type in ("companies", "contacts", "deals", "tasks"):
            response = self.transport.call(partial(api.get_all, object_type),
                                           what="properties read")
            described[object_type] = [
                FieldInfo(name=p.name, type=p.type or "string", label=p.label or "",
                          picklist=tuple(o.value for o in p.options) if p.options else None)
                for p in response.results or []]
        return described

    def describe_attributes(self) -> dict[str, list[Attribute]]:
        """Properties mapped as `attributes.NAME`, typed by the properties API."""
        described = self.describe_fields()
        found: dict[str, list[Attribute]] = {}
        for object_type, entity in (("companies", "account"), ("contacts", "contact"), ("deals", "deal")):
            properties = {info.name: info for info in described.get(object_type, [])}
            for canonical, prop in sorted(self.settings.fields.get(object_type, {}).items()):
                info = properties.get(prop)
                if not canonical.startswith("attributes.") or info is None:
                    continue
                kind, format_ = _KINDS.get(info.type, ("text", "text"))
                name = canonical.split(".", 1)[1]
                found.setdefault(entity, []).append(Attribute(name=name, label=info.label or name, kind=kind,
                                                              format=format_))
        return found

    def check(self) -> list[str]:
        """Credentials, the unique task key property, and every mapped property against the properties API."""
        try:
            described = self.describe_fields()
        except TransientError as exc:
            return [f"cannot read HubSpot's properties: {exc}"]
        except ApiError as exc:
            return [f"HubSpot refused the properties read: {exc}"]
        problems = []
        known = {kind: {f.name for f in fields} for kind, fields in described.items()}
        for kind, mapping in self.settings.fields.items():
            for canonical, prop in sorted(mapping.items()):
                if prop not in known.get(kind, set()):
                    problems.append(f"{kind}: {canonical} maps to {prop!r}, which HubSpot does not have")
        for extra in (self.settings.renewal_property, self.settings.match_property):
            if extra and extra not in known["companies"]:
                problems.append(f"companies: property {extra!r} (configured) does not exist")
        api = self.transport.api("properties")
        tasks = self.transport.call(partial(api.get_all, "tasks"), what="properties read")
        key = next((p for p in tasks.results or [] if p.name == self.settings.idempotency_property), None)
        if key is None:
            problems.append(f"tasks: the key property {self.settings.idempotency_property!r} is missing "
                            "(it is created on the first write-back)")
        elif not key.has_unique_value:
            problems.append(f"tasks: {self.settings.idempotency_property!r} must have unique values")
        return problems

    # -- delivery ------------------------------------------------------------------------------

    def push(self, messages: Sequence[Outbound]) -> list[PushResult]:
        try:
            self._guard()
        except DailyLimitReached as exc:
            return [PushResult(m.id, "retry", error=str(exc), retry_after=exc.retry_after) for m in messages]
        writer = TaskWriter(transport=self.transport, settings=self.settings, source=self.name, owners=self.owner_ids)
        try:
            results = writer.push(messages)
        except DailyLimitReached as exc:
            self._paused(exc)
            return [PushResult(m.id, "retry", error=str(exc), retry_after=exc.retry_after) for m in messages]
        if any(r.outcome == "retry" and r.retry_after and r.retry_after > 3600 for r in results):
            # The writer turned a DAILY 429 into retries: keep the connector quiet until the reset.
            longest = max(r.retry_after or 0 for r in results)
            self._paused(DailyLimitReached("daily limit", retry_after=longest))
        return results

    # -- webhooks ------------------------------------------------------------------------------

    def verify_webhook(self, *, method: str, uri: str, body: bytes, headers: Mapping[str, str],
                       now: datetime, remember: bool = True) -> str:
        secret = self.settings.webhook_secret or self.settings.client_secret
        if not secret:
            raise WebhookRejected("no webhook secret is configured (webhook_secret or client_secret)")
        replays = None
        if remember:
            with _STATE_LOCK:
                replays = _REPLAYS.setdefault(self.name, ReplayGuard())
        return verify_v3(secret=secret, method=method, uri=self.webhook_uri(uri), body=body, headers=headers,
                         now=now, replays=replays)

    def webhook_uri(self, uri: str) -> str:
        """The URI HubSpot signed: the configured public `webhook_url` (behind a proxy), with the request's query."""
        public = self.settings.webhook_url
        if not public:
            return uri
        _, _, query = uri.partition("?")
        return public + ("?" + query if query else "")

    def parse_webhook(self, *, body: bytes) -> Page:
        """Deletions and mapped property changes as records; stage, owner and task completions as signals."""
        events = parse_events(body)
        puller = self._puller()
        records: list[Record] = []
        signals: list[dict[str, Any]] = []
        kinds = {"companies": "account", "contacts": "contact", "deals": "deal"}
        needs_company = sorted({(e.object_type, e.object_id) for e in events if e.object_type in ("deals", "tasks")
                                and e.change == "propertyChange"})
        companies: dict[tuple[str, str], str] = {}
        for object_type in ("deals", "tasks"):
            ids = [i for t, i in needs_company if t == object_type]
            if ids:
                self._guard()
                for oid, company in puller.companies_of(object_type, ids).items():
                    companies[(object_type, oid)] = company
        for event in events:
            if event.change == "deletion" and event.object_type in kinds:
                records.append(Record(kind=kinds[event.object_type], source=self.name,  # type: ignore[arg-type]
                                      external_id=event.object_id, fields={}, deleted=True))
            if event.change != "propertyChange":
                continue
            parent = companies.get((event.object_type, event.object_id))
            if event.object_type == "deals" and event.property_name == "dealstage" and parent:
                signals.extend(puller.stage_change(
                    account={"source": self.name, "external_id": parent},
                    deal={"source": self.name, "external_id": event.object_id}, deal_id=event.object_id,
                    from_stage=None, to_stage=event.property_value, at=event.occurred_at))
            elif event.property_name == "hubspot_owner_id" and event.object_type in ("companies", "deals"):
                account_id = event.object_id if event.object_type == "companies" else parent
                if account_id:
                    signals.append(puller.owner_change(
                        kind="account" if event.object_type == "companies" else "deal",
                        account={"source": self.name, "external_id": account_id},
                        deal={"source": self.name, "external_id": event.object_id}
                        if event.object_type == "deals" else None,
                        object_id=event.object_id, from_owner=None, to_owner=event.property_value,
                        at=event.occurred_at))
            elif event.object_type == "tasks" and event.property_name == "hs_task_status" \
                    and event.property_value == "COMPLETED" and parent:
                signals.append(puller.task_completed(task_id=event.object_id, key=None, company=parent,
                                                     at=event.occurred_at))
            elif event.object_type == "tasks" and event.property_name == "hs_task_status" and event.property_value:
                # Not Handoff's task? The intake finds no task by that id and leaves it alone.
                records.append(puller.task_status(task_id=event.object_id, status=event.property_value))
        for (object_type, object_id), properties in event_properties(events).items():
            if object_type not in kinds or object_type == "contacts":
                continue  # a contact needs its company, which the next sync brings
            fields = {canonical: properties[prop] for canonical, prop in self.settings.fields[object_type].items()
                      if prop in properties and not canonical.startswith("attributes.")}
            if object_type == "companies" and fields.get("domain"):
                fields["domain"] = str(fields["domain"]).strip().lower()
            if fields:
                records.append(Record(kind=kinds[object_type], source=self.name,  # type: ignore[arg-type]
                                      external_id=object_id, fields=fields))
        calls = self._transport.calls if self._transport is not None else 0
        return Page(records=records, signals=signals, cursor=None, api_calls=calls, object_type="webhook")
