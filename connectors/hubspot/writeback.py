"""Writing Handoff's tasks into HubSpot, exactly once.

Creates go through `POST /crm/v3/objects/tasks/batch/create` (up to 100 a call), each with the
company association (type 192), the contact (204: the payload's `contact_crm_ref`, chosen by the core) and
the deal (216) where known. Every task carries the outbox key in a custom task property with unique
values (`handoff_key` by default, created on first use), so:

- HubSpot itself refuses a second task with the same key (409), whatever happened before;
- a retry (a message that was attempted before, or a create whose answer was lost) first reads the
  keys back (`batch/read` with `idProperty` = the key: exact, immediately consistent, unlike search's
  index) and creates only the ones that are not there.

Owner, priority and status changes (`crm.complete_task`, `crm.update_task`) are batch updates,
idempotent by nature. A batch HubSpot refuses as invalid is split in halves until the bad message is
found: only that one goes dead, the others are delivered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from connectors.base import Outbound, PushResult, TransientError
from connectors.hubspot.config import HubSpotSettings
from connectors.hubspot.pull import parse_time
from connectors.hubspot.transport import ApiError, OutcomeUnknown, Transport

__all__ = ["BATCH", "CREATE_KINDS", "DESCRIPTION_LIMIT", "UPDATE_KINDS", "TaskWriter"]

BATCH = 100
DESCRIPTION_LIMIT = 65_536  # hs_task_body
CREATE_KINDS = frozenset({"crm.create_task"})
UPDATE_KINDS = frozenset({"crm.complete_task", "crm.update_task"})
TASK_TO_COMPANY, TASK_TO_CONTACT, TASK_TO_DEAL = 192, 204, 216
_PRIORITY = {"low": "LOW", "normal": "MEDIUM", "high": "HIGH", "urgent": "HIGH"}
_STATUS = {"open": "NOT_STARTED", "acknowledged": "IN_PROGRESS", "done": "COMPLETED", "rejected": "COMPLETED",
           "cancelled": "DEFERRED"}
_ROUNDS = 3  # create -> (answer lost) read back -> create the rest, at most this many times per push


class _Dead(Exception):
    """This one message can never be delivered as it is."""


class TaskWriter:
    """Delivers task messages; `owners()` maps owner emails to HubSpot owner ids (fetched once, lazily)."""

    def __init__(self, *, transport: Transport, settings: HubSpotSettings, source: str,
                 owners: Callable[[], Mapping[str, str]]) -> None:
        self.transport, self.settings, self.source, self._owners = transport, settings, source, owners
        self.key = settings.idempotency_property
        self._property_checked = False

    def push(self, messages: Sequence[Outbound]) -> list[PushResult]:
        results: dict[int, PushResult] = {}
        creates = [m for m in messages if m.kind in CREATE_KINDS]
        updates = [m for m in messages if m.kind in UPDATE_KINDS]
        for message in messages:
            if message.kind not in CREATE_KINDS | UPDATE_KINDS:
                results[message.id] = PushResult(message.id, "dead", error=f"HubSpot does not take {message.kind}")
        for start in range(0, len(creates), BATCH):
            results.update(self._create(creates[start:start + BATCH]))
        for start in range(0, len(updates), BATCH):
            results.update(self._update(updates[start:start + BATCH]))
        return [results[m.id] for m in messages]

    # -- create --------------------------------------------------------------------------------

    def _create(self, messages: Sequence[Outbound]) -> dict[int, PushResult]:
        results: dict[int, PushResult] = {}
        inputs: dict[str, dict[str, Any]] = {}
        by_key: dict[str, Outbound] = {}
        for message in messages:
            try:
                inputs[message.idempotency_key] = self._task_input(message)
                by_key[message.idempotency_key] = message
            except _Dead as exc:
                results[message.id] = PushResult(message.id, "dead", error=str(exc))
        pending = list(inputs)
        try:
            if any(by_key[k].attempts > 0 for k in pending):
                # Attempted before: the earlier create may have landed with its answer lost.
                found = self._read_back(pending)
                results.update(self._delivered(found, by_key))
                pending = [k for k in pending if k not in found]
            for _ in range(_ROUNDS):
                if not pending:
                    break
                pending = self._create_round(pending, inputs, by_key, results)
        except TransientError as exc:
            for key in pending:
                results[by_key[key].id] = PushResult(by_key[key].id, "retry", error=str(exc)[:200],
                                                     retry_after=exc.retry_after)
            pending = []
        for key in pending:
            results[by_key[key].id] = PushResult(by_key[key].id, "retry", error="HubSpot did not confirm the create")
        return results

    def _create_round(self, keys: list[str], inputs: Mapping[str, dict[str, Any]], by_key: Mapping[str, Outbound],
                      results: dict[int, PushResult]) -> list[str]:
        """One batch create of `keys`; returns the keys still to create."""
        try:
            created = self._batch_create([inputs[k] for k in keys])
        except OutcomeUnknown:
            found = self._read_back(keys)
            results.update(self._delivered(found, by_key))
            return [k for k in keys if k not in found]
        except ApiError as exc:
            if exc.status == 409:  # a key is already taken: someone created it before us
                found = self._read_back(keys)
                results.update(self._delivered(found, by_key))
                return [k for k in keys if k not in found]
            if exc.status == 400 and self.key in exc.message and not self._property_checked:
                self.ensure_key_property()
                return keys
            if len(keys) == 1:
                message = by_key[keys[0]]
                results[message.id] = PushResult(message.id, "dead", error=f"HubSpot refused the task: {exc}"[:300])
                return []
            middle = len(keys) // 2
            rest = self._create_round(keys[:middle], inputs, by_key, results)
            return rest + self._create_round(keys[middle:], inputs, by_key, results)
        results.update(self._delivered(created, by_key))
        return [k for k in keys if k not in created]

    def _batch_create(self, items: list[dict[str, Any]]) -> dict[str, str]:
        api = self.transport.api("tasks.batch")
        body = {"inputs": items}
        response = self.transport.json(
            partial(api.create, batch_input_simple_public_object_batch_input_for_create=body,
                                 _preload_content=False),
            idempotent=False, what="task batch create")
        # Results do not come back in input order: match them by the key each one carries.
        return {str((r.get("properties") or {}).get(self.key)): str(r["id"]) for r in response.get("results") or []}

    def _read_back(self, keys: Sequence[str]) -> dict[str, str]:
        """key -> task id for the keys HubSpot already holds (batch read by the unique property)."""
        api = self.transport.api("tasks.batch")
        found: dict[str, str] = {}
        for start in range(0, len(keys), BATCH):
            body = {"inputs": [{"id": k} for k in keys[start:start + BATCH]], "idProperty": self.key,
                    "properties": [self.key]}
            response = self.transport.json(
                partial(api.read, batch_read_input_simple_public_object_id=body, archived=False,
                        _preload_content=False), what="task read-back")
            for item in response.get("results") or []:
                value = (item.get("properties") or {}).get(self.key)
                if value:
                    found[str(value)] = str(item["id"])
        return found

    @staticmethod
    def _delivered(found: Mapping[str, str], by_key: Mapping[str, Outbound]) -> dict[int, PushResult]:
        return {by_key[k].id: PushResult(by_key[k].id, "delivered", remote_id=v) for k, v in found.items()
                if k in by_key}

    def _owner_id(self, message: Outbound) -> str:
        task = message.task
        if task is not None and task.owner_external_ids.get(self.source):
            return str(task.owner_external_ids[self.source])
        email = (task.owner_email if task is not None else None) or message.payload.get("owner_email")
        owner = self._owners().get(str(email or "").strip().lower())
        if owner is None:
            raise _Dead("the task's owner has no HubSpot user (match by email)")
        return owner

    def _task_input(self, message: Outbound) -> dict[str, Any]:
        payload = message.payload
        company = (message.account.external_ids.get(self.source) if message.account is not None else None) \
            or payload.get("hubspot_company_id")
        if not company:
            raise _Dead("the account has no HubSpot company id")
        due = parse_time(payload.get("due_at")) or message.created_at
        subject = payload.get("subject") or (message.task.title if message.task else "Handoff task")
        properties = {
            "hs_task_subject": str(subject)[:255],
            "hs_task_body": str(payload.get("description") or "")[:DESCRIPTION_LIMIT],
            "hubspot_owner_id": self._owner_id(message),
            "hs_timestamp": _iso(due),
            "hs_task_priority": _PRIORITY.get(str(payload.get("priority") or "normal"), "MEDIUM"),
            "hs_task_status": _STATUS.get(str(payload.get("status") or "open"), "NOT_STARTED"),
            "hs_task_type": "TODO",
            self.key: message.idempotency_key,
        }
        associations = [_association(company, TASK_TO_COMPANY)]
        deal = payload.get("hubspot_deal_id") or (message.task.deal_external_ids.get(self.source)
                                                  if message.task is not None else None)
        ref = payload.get("contact_crm_ref")
        contact = (ref.get(self.source) if isinstance(ref, Mapping) else None) or payload.get("hubspot_contact_id")
        for target, type_id in ((contact, TASK_TO_CONTACT), (deal, TASK_TO_DEAL)):
            if target:
                associations.append(_association(target, type_id))
        return {"properties": properties, "associations": associations}

    def ensure_key_property(self) -> None:
        """Create the unique task property that carries the outbox key, if it is missing."""
        self._property_checked = True
        api = self.transport.api("properties")
        body = {"name": self.key, "label": "Handoff key", "type": "string", "fieldType": "text",
                "groupName": "taskinformation", "hasUniqueValue": True,
                "description": "Set by Handoff: the outbox key that created this task. Do not edit."}
        try:
            self.transport.call(partial(api.create, "tasks", property_create=body),
                                idempotent=False, what="property create")
        except ApiError as exc:
            if exc.status != 409:  # 409: it exists already, which is what we wanted
                raise TransientError(f"cannot create the task property {self.key}: {exc}") from None
        except OutcomeUnknown:
            pass  # the next create tells whether it exists

    # -- update --------------------------------------------------------------------------------

    def _update(self, messages: Sequence[Outbound]) -> dict[int, PushResult]:
        results: dict[int, PushResult] = {}
        remote: dict[int, str] = {}
        missing: dict[str, Outbound] = {}
        for message in messages:
            task = message.task
            crm_id = (task.crm_id if task is not None and task.crm_source in (None, self.source) else None) \
                or message.payload.get("crm_id")
            if crm_id:
                remote[message.id] = str(crm_id)
            else:
                task_id = task.id if task is not None else message.payload.get("task_id")
                missing[f"task:{task_id}:create"] = message
        try:
            if missing:
                for key, crm_id in self._read_back(list(missing)).items():
                    remote[missing[key].id] = crm_id
            inputs: dict[int, dict[str, Any]] = {}
            for message in messages:
                if message.id in results:
                    continue
                if message.id not in remote:
                    results[message.id] = PushResult(message.id, "retry", retry_after=60.0,
                                                     error="the task is not in HubSpot yet")
                    continue
                try:
                    inputs[message.id] = {"id": remote[message.id], "properties": self._update_properties(message)}
                except _Dead as exc:
                    results[message.id] = PushResult(message.id, "dead", error=str(exc))
            self._update_round(list(inputs), inputs, results)
        except TransientError as exc:
            for message in messages:
                results.setdefault(message.id, PushResult(message.id, "retry", error=str(exc)[:200],
                                                          retry_after=exc.retry_after))
        return results

    def _update_round(self, ids: list[int], inputs: Mapping[int, dict[str, Any]],
                      results: dict[int, PushResult]) -> None:
        if not ids:
            return
        api = self.transport.api("tasks.batch")
        body = {"inputs": [inputs[i] for i in ids]}
        try:
            # Setting the same properties twice is harmless, so a lost answer is simply retried.
            self.transport.call(partial(api.update, batch_input_simple_public_object_batch_input=body),
                                what="task batch update")
        except ApiError as exc:
            if len(ids) == 1:
                results[ids[0]] = PushResult(ids[0], "dead", error=f"HubSpot refused the update: {exc}"[:300])
                return
            middle = len(ids) // 2
            self._update_round(ids[:middle], inputs, results)
            self._update_round(ids[middle:], inputs, results)
            return
        for message_id in ids:
            results[message_id] = PushResult(message_id, "delivered", remote_id=inputs[message_id]["id"])

    def _update_properties(self, message: Outbound) -> dict[str, Any]:
        payload = message.payload
        properties: dict[str, Any] = {}
        if message.kind == "crm.complete_task":
            status = _STATUS.get(str(payload.get("status") or "done"), "COMPLETED")
            properties["hs_task_status"] = status
            completed = parse_time(payload.get("completed_at"))
            if status == "COMPLETED" and completed is not None:
                properties["hs_task_completion_date"] = _iso(completed)
            return properties
        if payload.get("status"):
            properties["hs_task_status"] = _STATUS.get(str(payload["status"]), "NOT_STARTED")
        if payload.get("priority"):
            properties["hs_task_priority"] = _PRIORITY.get(str(payload["priority"]), "MEDIUM")
        if payload.get("owner_email") or (message.task is not None and payload.get("owner_changed")):
            properties["hubspot_owner_id"] = self._owner_id(message)
        if payload.get("due_at"):
            due = parse_time(payload["due_at"])
            if due is not None:
                properties["hs_timestamp"] = _iso(due)
        if not properties:
            raise _Dead("the update names nothing HubSpot can change (status, priority, owner, due_at)")
        return properties


def _association(to_id: Any, type_id: int) -> dict[str, Any]:
    return {"to": {"id": str(to_id)},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}


def _iso(moment: datetime) -> str:
    """HubSpot's own timestamp form: UTC, milliseconds, Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
