"""Write-back through sObject Collections: Tasks by upsert on the external-id field, updates by Id.

A new Task (and a note, which is a completed Task) is written with
`PATCH composite/sobjects/Task/<external id field>`, carrying the outbox idempotency key in that
field: a retry after a lost answer finds the Task the first attempt created and updates it, so a
Task never exists twice. Follow-ups (completion, reassignment, escalation, account field updates)
are `PATCH composite/sobjects` by record Id, idempotent by nature. Up to 200 records per call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from simple_salesforce import format_soql

from connectors.base import Outbound, PermanentError, PushResult, TransientError
from connectors.salesforce.client import SalesforceApi
from connectors.salesforce.config import DEFAULT_TASK_PRIORITY, DEFAULT_TASK_STATUS, field_map
from connectors.salesforce.pull import SOURCE

CREATE_KINDS = frozenset({"crm.create_task", "crm.create_note"})
TASK_UPDATE_KINDS = frozenset({"crm.complete_task", "crm.update_task"})
HANDLES = CREATE_KINDS | TASK_UPDATE_KINDS | {"crm.update_field"}
BATCH = 200
DESCRIPTION_LIMIT = 32000
_RETRY_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG",
                          "ALL_OR_NONE_OPERATION_ROLLED_BACK"})


class _Skip(Exception):
    """This message cannot be written: the text is its (data-free) reason."""


@dataclass
class _Plan:
    creates: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (message index, Task record)
    updates: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (message index, record with id)
    pending_lookup: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)  # (index, ext key, fields)


class Writer:
    """Turns outbox messages into as few Collections calls as the API allows."""

    def __init__(self, *, api: SalesforceApi, config: Mapping[str, Any]) -> None:
        self.api = api
        self.config = config
        self.key_field = str(config["task_external_id_field"])
        self.status_map = {**DEFAULT_TASK_STATUS, **(config.get("task_status") or {})}
        self.priority_map = {**DEFAULT_TASK_PRIORITY, **(config.get("task_priority") or {})}
        self._owner_ids: dict[str, str | None] = {}

    def push(self, messages: Sequence[Outbound]) -> list[PushResult]:
        results: dict[int, PushResult] = {}
        plan = _Plan()
        self._resolve_owners(messages)
        for index, message in enumerate(messages):
            try:
                self._plan_one(index, message, plan)
            except _Skip as reason:
                results[index] = PushResult(message_id=message.id, outcome="dead", error=str(reason))
        try:
            self._write(messages, plan, results)
        except TransientError as error:
            for index, message in enumerate(messages):
                results.setdefault(index, PushResult(message_id=message.id, outcome="retry", error=str(error),
                                                     retry_after=error.retry_after))
        except PermanentError as error:
            for index, message in enumerate(messages):
                results.setdefault(index, PushResult(message_id=message.id, outcome="dead", error=str(error)))
        return [results[index] for index in range(len(messages))]

    # -- planning -------------------------------------------------------------------------------

    def _plan_one(self, index: int, message: Outbound, plan: _Plan) -> None:
        payload = message.payload
        if message.kind == "crm.create_task":
            record = {"attributes": {"type": "Task"}, self.key_field: message.idempotency_key,
                      "Subject": _clip(str(payload.get("subject") or "Handoff task"), 255),
                      "Description": _clip(str(payload.get("description") or ""), DESCRIPTION_LIMIT),
                      "WhatId": self._account_id(message),
                      "OwnerId": self._owner_id(message, payload.get("owner_email")),
                      "Priority": self._picklist(self.priority_map, payload.get("priority") or "normal", "priority"),
                      "Status": self._picklist(self.status_map, payload.get("status") or "open", "status")}
            if payload.get("due_date"):
                record["ActivityDate"] = str(payload["due_date"])
            who = _contact_id(payload)
            if who:
                record["WhoId"] = who
            plan.creates.append((index, record))
        elif message.kind == "crm.create_note":
            args = payload.get("args") or {}
            plan.creates.append((index, {
                "attributes": {"type": "Task"}, self.key_field: message.idempotency_key,
                "Subject": _clip(str(args.get("subject") or "Note from Handoff"), 255),
                "Description": _clip(str(args.get("body") or ""), DESCRIPTION_LIMIT),
                "WhatId": self._account_id(message), "Status": self.status_map["done"]}))
        elif message.kind in TASK_UPDATE_KINDS:
            fields = self._task_changes(message)
            crm_id = (message.task.crm_id if message.task and message.task.crm_source in (None, SOURCE) else None) \
                or payload.get("crm_id")
            if crm_id:
                plan.updates.append((index, {"attributes": {"type": "Task"}, "id": str(crm_id), **fields}))
            else:
                task_id = message.task.id if message.task else payload.get("task_id")
                if task_id is None:
                    raise _Skip("no task to update")
                # The Task was written under its create message's key (see work/tasks.py).
                plan.pending_lookup.append((index, f"task:{task_id}:create", fields))
        elif message.kind == "crm.update_field":
            args = payload.get("args") or {}
            name = str(args.get("field") or "")
            remote = field_map(self.config, "account").get(name) or (name if name.endswith("__c") else "")
            if not remote:
                raise _Skip(f"field {name!r} has no Salesforce mapping (connectors.salesforce.fields.account)")
            plan.updates.append((index, {"attributes": {"type": "Account"}, "id": self._account_id(message),
                                         remote: args.get("value")}))
        else:
            raise _Skip(f"{message.kind} is not written to Salesforce")

    def _task_changes(self, message: Outbound) -> dict[str, Any]:
        payload = message.payload
        fields: dict[str, Any] = {}
        if payload.get("status"):
            fields["Status"] = self._picklist(self.status_map, payload["status"], "status")
        if payload.get("priority"):
            fields["Priority"] = self._picklist(self.priority_map, payload["priority"], "priority")
        if payload.get("owner_email"):
            fields["OwnerId"] = self._owner_id(message, payload["owner_email"])
        if payload.get("due_date"):
            fields["ActivityDate"] = str(payload["due_date"])
        if payload.get("description"):
            fields["Description"] = _clip(str(payload["description"]), DESCRIPTION_LIMIT)
        if not fields:
            raise _Skip(f"{message.kind} carries nothing to change")
        return fields

    def _picklist(self, mapping: Mapping[str, str], value: Any, name: str) -> str:
        if str(value) not in mapping:
            raise _Skip(f"{name} {value!r} has no Salesforce value (connectors.salesforce.task_{name})")
        return mapping[str(value)]

    def _account_id(self, message: Outbound) -> str:
        external = (message.account.external_ids if message.account else {}).get(SOURCE)
        if not external:
            raise _Skip("the account has no Salesforce id")
        return str(external)

    def _owner_id(self, message: Outbound, email: Any) -> str:
        if message.task is not None and message.task.owner_external_ids.get(SOURCE) and (
                not email or email == message.task.owner_email):
            return str(message.task.owner_external_ids[SOURCE])
        found = self._owner_ids.get(str(email or "").lower())
        if not found:
            raise _Skip("the owner has no active Salesforce user")
        return found

    def _resolve_owners(self, messages: Sequence[Outbound]) -> None:
        """One SOQL for the emails of owners without a known Salesforce user id."""
        emails = sorted({str(message.payload.get("owner_email")).lower() for message in messages
                         if message.payload.get("owner_email") and not (
                             message.task and message.task.owner_external_ids.get(SOURCE)
                             and message.payload.get("owner_email") == message.task.owner_email)})
        emails = [email for email in emails if email not in self._owner_ids]
        if not emails:
            return
        statement = format_soql("SELECT Id, Email FROM User WHERE IsActive = true AND Email IN {}", emails)
        try:
            for page in self.api.query_pages(statement, include_deleted=False):
                for row in page["records"]:
                    self._owner_ids.setdefault(str(row["Email"]).lower(), row["Id"])
        except (TransientError, PermanentError):
            return  # the writes below meet the same failure and report it per message
        for email in emails:
            self._owner_ids.setdefault(email, None)

    # -- writing --------------------------------------------------------------------------------

    def _write(self, messages: Sequence[Outbound], plan: _Plan, results: dict[int, PushResult]) -> None:
        for start in range(0, len(plan.creates), BATCH):
            chunk = plan.creates[start: start + BATCH]
            answers = self.api.collection("PATCH", f"composite/sobjects/Task/{self.key_field}",
                                          [record for _, record in chunk])
            for (index, _), answer in zip(chunk, answers, strict=True):
                results[index] = _result(messages[index], answer)
        if plan.pending_lookup:
            self._lookup(messages, plan, results)
        for start in range(0, len(plan.updates), BATCH):
            chunk = plan.updates[start: start + BATCH]
            answers = self.api.collection("PATCH", "composite/sobjects", [record for _, record in chunk])
            for (index, _), answer in zip(chunk, answers, strict=True):
                results[index] = _result(messages[index], answer)

    def _lookup(self, messages: Sequence[Outbound], plan: _Plan, results: dict[int, PushResult]) -> None:
        """Find Tasks by their external id when the create's answer has not reached us yet."""
        # A create in this same batch already answered with the Task's id.
        created = {str(record[self.key_field]): results[index].remote_id for index, record in plan.creates
                   if index in results and results[index].outcome == "delivered"}
        missing = sorted({key for _, key, _ in plan.pending_lookup if key not in created})
        if missing:
            statement = format_soql("SELECT Id, {field:literal} FROM Task WHERE {field:literal} IN {keys}",
                                    field=self.key_field, keys=missing)
            for page in self.api.query_pages(statement, include_deleted=False):
                for row in page["records"]:
                    created[str(row[self.key_field])] = row["Id"]
        for index, key, fields in plan.pending_lookup:
            task_id = created.get(key)
            if task_id:
                plan.updates.append((index, {"attributes": {"type": "Task"}, "id": task_id, **fields}))
            else:
                results[index] = PushResult(message_id=messages[index].id, outcome="retry", retry_after=60,
                                            error="the Task is not in Salesforce yet")


def _result(message: Outbound, answer: Mapping[str, Any]) -> PushResult:
    if answer.get("success"):
        return PushResult(message_id=message.id, outcome="delivered", remote_id=answer.get("id"))
    errors = answer.get("errors") or [{}]
    code = str(errors[0].get("statusCode") or "UNKNOWN")
    fields = ",".join(str(name) for name in errors[0].get("fields") or [])
    text = f"salesforce {code}" + (f" on {fields}" if fields else "")
    if code in _RETRY_CODES:
        return PushResult(message_id=message.id, outcome="retry", error=text)
    return PushResult(message_id=message.id, outcome="dead", error=text)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _contact_id(payload: Mapping[str, Any]) -> str | None:
    """The task's contact as a WhoId: only a Salesforce Contact id (key prefix 003)."""
    ref = payload.get("contact_crm_ref")
    value = str(ref.get(SOURCE) or "") if isinstance(ref, Mapping) else ""
    return value if value.startswith("003") else None
