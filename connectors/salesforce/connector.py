"""The Salesforce connector: incremental sync in, Tasks and field updates out, inside the org's API limits."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from connectors.base import (
    Attribute,
    ConnectorError,
    DeliveryConnector,
    FieldInfo,
    Outbound,
    Page,
    PushResult,
    SourceConnector,
)
from connectors.salesforce.client import SalesforceApi
from connectors.salesforce.config import (
    DEFAULT_TASK_PRIORITY,
    DEFAULT_TASK_STATUS,
    SF_OBJECTS,
    SalesforceConfigSchema,
    field_map,
)
from connectors.salesforce.pull import COLUMNS, Puller
from connectors.salesforce.push import DESCRIPTION_LIMIT, HANDLES, Writer

_DESCRIBED = ("User", "Account", "Contact", "Opportunity", "Task")
# Salesforce field type -> the signal catalog's kind and display format.
_KINDS: Mapping[str, tuple[str, str]] = {
    "currency": ("number", "money"), "percent": ("number", "percent"), "double": ("number", "number"),
    "int": ("whole", "number"), "long": ("whole", "number"), "boolean": ("flag", "text"),
    "date": ("date", "date"), "datetime": ("datetime", "date"), "email": ("email", "person"),
}


class SalesforceConnector(SourceConnector, DeliveryConnector):
    """Salesforce through simple-salesforce (REST API, sObject Collections)."""

    slug: ClassVar[str] = "salesforce"
    title: ClassVar[str] = "Salesforce"
    config_schema = SalesforceConfigSchema
    sdk_modules: ClassVar[tuple[str, ...]] = ("simple_salesforce",)
    crm: ClassVar[bool] = True
    handles: ClassVar[frozenset[str]] = HANDLES
    max_batch: ClassVar[int] = 200
    description_limit: ClassVar[int | None] = DESCRIPTION_LIMIT

    def __init__(self, *, config: Mapping[str, Any], context: Any) -> None:
        super().__init__(config=config, context=context)
        self._api: SalesforceApi | None = None

    @property
    def api(self) -> SalesforceApi:
        if self._api is None:
            self._api = SalesforceApi(config=self.config, timeout=self.context.timeout, clock=self.context.clock)
        return self._api

    # -- source ---------------------------------------------------------------------------------

    def pull(self, *, cursor: Mapping[str, Any] | None, full: bool = False) -> Iterator[Page]:
        """Pages per object in dependency order; each page's cursor is that object's (`Page.object_type`)."""
        cursors = cursor or {}
        if cursors and not all(isinstance(value, Mapping) for value in cursors.values()):
            cursors = {}  # not the per-object shape: start over rather than guess
        yield from Puller(api=self.api, config=self.config, now=self.context.clock()).pages(cursors, full=full)

    def describe_fields(self) -> dict[str, list[FieldInfo]]:
        described: dict[str, list[FieldInfo]] = {}
        for sobject in _DESCRIBED:
            answer = self.api.describe(sobject)
            described[sobject] = [
                FieldInfo(name=item["name"], type=item.get("type", "string"), label=item.get("label", ""),
                          picklist=tuple(v["value"] for v in item.get("picklistValues") or [] if v.get("active", True))
                          or None,
                          required=not item.get("nillable", True) and item.get("createable", False))
                for item in answer.get("fields", [])]
        return described

    def describe_attributes(self) -> dict[str, list[Attribute]]:
        """Mapped fields that are not Handoff columns (they land in `attributes`), typed by describe."""
        described = self.describe_fields()
        found: dict[str, list[Attribute]] = {}
        for kind in ("account", "contact", "deal"):
            fields_ = {info.name.lower(): info for info in described.get(SF_OBJECTS[kind], [])}
            for canonical, remote in sorted(field_map(self.config, kind).items()):
                info = fields_.get(remote.lower())
                if canonical in COLUMNS[kind] or info is None:
                    continue  # a column is in the dictionary already; a missing field is check()'s to report
                kind_, format_ = _KINDS.get(info.type, ("text", "text"))
                found.setdefault(kind, []).append(
                    Attribute(name=canonical, label=info.label or canonical, kind=kind_, format=format_))
        return found

    def check(self) -> list[str]:
        """Credentials, mapped fields, the external-id field and the Task picklist values, against describe."""
        try:
            described = self.describe_fields()
            raw_task = self.api.describe("Task")
        except ConnectorError as error:
            return [str(error)]
        problems: list[str] = []
        for kind, sobject in SF_OBJECTS.items():
            known = {info.name.lower() for info in described.get(sobject, [])}
            for canonical, remote in field_map(self.config, kind).items():
                if remote.lower() not in known:
                    problems.append(f"fields.{kind}.{canonical}: {sobject} has no field {remote}")
        key_field = str(self.config["task_external_id_field"])
        key = next((item for item in raw_task.get("fields", []) if item["name"].lower() == key_field.lower()), None)
        if key is None:
            problems.append(f"task_external_id_field: Task has no field {key_field}")
        elif not key.get("externalId"):
            problems.append(f"task_external_id_field: Task.{key_field} is not marked External ID")
        task_fields = {info.name: info for info in described.get("Task", [])}
        for setting, defaults, remote in (("task_status", DEFAULT_TASK_STATUS, "Status"),
                                          ("task_priority", DEFAULT_TASK_PRIORITY, "Priority")):
            allowed = set(task_fields[remote].picklist or ()) if remote in task_fields else set()
            for ours, theirs in {**defaults, **(self.config.get(setting) or {})}.items():
                if theirs not in allowed:
                    problems.append(f"{setting}.{ours}: {theirs!r} is not a Task {remote} value in this org "
                                    f"(has: {', '.join(sorted(allowed))})")
        for status in (self.config.get("completed_statuses") or {}):
            if "Status" in task_fields and status not in set(task_fields["Status"].picklist or ()):
                problems.append(f"completed_statuses.{status}: not a Task Status value in this org")
        return problems

    # -- delivery -------------------------------------------------------------------------------

    def push(self, messages: Sequence[Outbound]) -> list[PushResult]:
        return Writer(api=self.api, config=self.config).push(messages)

    @property
    def api_calls(self) -> int:
        """HTTP requests made through this instance (logins included)."""
        return self._api.calls if self._api is not None else 0

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None
