"""A fake Salesforce org over HTTPS on 127.0.0.1, written from the public REST API documentation.

Driven by the real `simple-salesforce` client: the server speaks TLS with a `trustme` certificate,
and the client's `requests.Session` trusts the test CA (`session.verify = fake.ca_bundle`).

What it speaks (REST API v59-ish):
  GET  /services/data/                          versions
  GET  /services/data/vXX.X/sobjects/           global describe
  GET  /services/data/vXX.X/sobjects/Obj/describe
  GET  /services/data/vXX.X/query?q=  /queryAll?q=   (pages of `batch_size` rows, nextRecordsUrl)
  GET  /services/data/vXX.X/query/01g...-2000   the next page
  GET  /services/data/vXX.X/limits
  GET|PATCH|DELETE /services/data/vXX.X/sobjects/Obj/Id, POST /services/data/vXX.X/sobjects/Obj/
  POST|PATCH /services/data/vXX.X/composite/sobjects             create / update up to 200
  PATCH      /services/data/vXX.X/composite/sobjects/Obj/ExtField   upsert up to 200 by external id
  POST /services/oauth2/token                   refresh_token, password and JWT bearer grants
  POST /services/Soap/u/XX.X                    SOAP login (username + password + security token)

Every REST response carries `Sforce-Limit-Info: api-usage=used/limit`; past the limit the org answers
403 REQUEST_LIMIT_EXCEEDED. Faults: `inject(...)` (5xx storms, drops before or after the server
commits), `expire_sessions()`, `on_page` hooks that change data between pages of a query.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.dom import minidom

import jwt
import trustme

from tests.fakes import soql

API_VERSION = "59.0"

# -- schema -----------------------------------------------------------------------------------

_SYSTEM = [("Id", "id"), ("IsDeleted", "boolean"), ("CreatedDate", "datetime"),
           ("LastModifiedDate", "datetime"), ("SystemModstamp", "datetime")]

TASK_STATUSES = ["Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"]
CLOSED_TASK_STATUSES = {"Completed"}
TASK_PRIORITIES = ["High", "Normal", "Low"]

_SCHEMA: dict[str, dict[str, Any]] = {
    "User": {"prefix": "005", "fields": [
        ("Name", "string"), ("FirstName", "string"), ("LastName", "string"), ("Email", "email"),
        ("Username", "string"), ("IsActive", "boolean"), ("ManagerId", "reference:User"),
        ("TimeZoneSidKey", "picklist"), ("UserRoleId", "reference:UserRole"),
        ("ProfileId", "reference:Profile"), ("Department", "string")]},
    "UserRole": {"prefix": "00E", "fields": [("Name", "string"), ("DeveloperName", "string")]},
    "Profile": {"prefix": "00e", "fields": [("Name", "string")]},
    "Account": {"prefix": "001", "fields": [
        ("Name", "string"), ("Website", "url"), ("Industry", "picklist"), ("AnnualRevenue", "currency"),
        ("Type", "picklist"), ("OwnerId", "reference:User"), ("Health_Score__c", "double"),
        ("Segment__c", "picklist"), ("Renewal_Date__c", "date"), ("Description", "textarea")]},
    "AccountHistory": {"prefix": "017", "fields": [
        ("AccountId", "reference:Account"), ("Field", "picklist"), ("DataType", "picklist"),
        ("OldValue", "anyType"), ("NewValue", "anyType")]},
    "Contact": {"prefix": "003", "fields": [
        ("AccountId", "reference:Account"), ("FirstName", "string"), ("LastName", "string"),
        ("Name", "string"), ("Email", "email"), ("Title", "string"), ("OwnerId", "reference:User"),
        ("Contact_Role__c", "picklist")]},
    "Opportunity": {"prefix": "006", "fields": [
        ("AccountId", "reference:Account"), ("Name", "string"), ("Amount", "currency"),
        ("StageName", "picklist"), ("CloseDate", "date"), ("IsClosed", "boolean"), ("IsWon", "boolean"),
        ("Type", "picklist"), ("OwnerId", "reference:User")]},
    "OpportunityHistory": {"prefix": "008", "fields": [
        ("OpportunityId", "reference:Opportunity"), ("StageName", "picklist"), ("Amount", "currency"),
        ("CloseDate", "date")]},
    "OpportunityStage": {"prefix": "01J", "fields": [
        ("ApiName", "string"), ("MasterLabel", "string"), ("IsActive", "boolean"), ("IsClosed", "boolean"),
        ("IsWon", "boolean"), ("SortOrder", "int")]},
    "Task": {"prefix": "00T", "fields": [
        ("Subject", "string"), ("Description", "textarea"), ("OwnerId", "reference:User"),
        ("WhatId", "reference:Account"), ("WhoId", "reference:Contact"), ("ActivityDate", "date"),
        ("Priority", "picklist"), ("Status", "picklist"), ("IsClosed", "boolean"),
        ("Handoff_Key__c", "string")]},
}

_READ_ONLY = {"Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp", "IsClosed", "IsWon",
              "Name"}
OPPORTUNITY_STAGES = [("Prospecting", False, False), ("Qualification", False, False),
                      ("Negotiation", False, False), ("Closed Won", True, True), ("Closed Lost", True, False)]


@dataclass
class FieldDef:
    name: str
    type: str
    reference_to: str | None = None
    picklist: list[str] | None = None
    restricted: bool = False
    external_id: bool = False
    length: int | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "label": self.name.replace("__c", "").replace("_", " "), "type": self.type,
            "custom": self.name.endswith("__c"), "externalId": self.external_id, "idLookup": self.external_id,
            "unique": self.external_id, "nillable": self.name != "Id", "length": self.length or 0,
            "referenceTo": [self.reference_to] if self.reference_to else [],
            "relationshipName": (self.name[:-2] if self.reference_to and self.name.endswith("Id") else None),
            "createable": self.name not in _READ_ONLY, "updateable": self.name not in _READ_ONLY,
            "restrictedPicklist": self.restricted,
            "picklistValues": [{"value": v, "label": v, "active": True, "defaultValue": False,
                                "validFor": None} for v in (self.picklist or [])],
        }


def _build_schema() -> dict[str, dict[str, FieldDef]]:
    schema: dict[str, dict[str, FieldDef]] = {}
    for name, spec in _SCHEMA.items():
        fields: dict[str, FieldDef] = {}
        for field_name, kind in _SYSTEM + spec["fields"]:
            reference_to = kind.split(":", 1)[1] if kind.startswith("reference:") else None
            fields[field_name] = FieldDef(field_name, "reference" if reference_to else kind, reference_to,
                                          length=32000 if kind == "textarea" else 255 if kind == "string" else None)
        schema[name] = fields
    task = schema["Task"]
    task["Status"].picklist, task["Status"].restricted = list(TASK_STATUSES), True
    task["Priority"].picklist, task["Priority"].restricted = list(TASK_PRIORITIES), True
    task["Handoff_Key__c"].external_id = True
    task["Subject"].length = 255
    schema["Opportunity"]["StageName"].picklist = [s for s, _, _ in OPPORTUNITY_STAGES]
    schema["Account"]["Segment__c"].picklist = ["SMB", "Mid-Market", "Enterprise"]
    return schema


# -- the org ----------------------------------------------------------------------------------

class SalesforceApiError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or []


@dataclass
class Fault:
    kind: str  # "status" (answer `status` with `code`), "drop_before", "drop_after" (after the commit)
    times: int = 1
    status: int = 503
    code: str = "SERVER_UNAVAILABLE"
    method: str | None = None
    path: str | None = None  # a regex searched in the request path

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or re.search(self.path, path)
                                                                   is not None)


@dataclass
class RequestLog:
    method: str
    path: str
    status: int


@dataclass
class _Cursor:
    rows: list[dict[str, Any]]
    sobject: str
    all_rows: bool


class FakeOrg:
    """The org's data and behaviour, independent of HTTP (tests seed and inspect it directly)."""

    def __init__(self) -> None:
        self.schema = _build_schema()
        self.records: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self.schema}
        self.lock = threading.RLock()
        self._ids = itertools.count(1)
        self.batch_size = 2000
        self.api_limit = 15000
        self.api_used = 0
        self.tokens: set[str] = set()
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> client id
        self.client_secrets: dict[str, str] = {}
        self.users_by_login: dict[str, tuple[str, str]] = {}  # username -> (password, security token)
        self.jwt_keys: dict[str, str] = {}  # consumer key -> PEM public key
        self.faults: list[Fault] = []
        self.log: list[RequestLog] = []
        self.on_page: list[Callable[[str, int], None]] = []  # (sObject, offset) after a page is built
        self._cursors: dict[str, _Cursor] = {}
        self.clock_offset = timedelta(0)
        self._last_stamp = datetime(2000, 1, 1, tzinfo=UTC)
        for index, (stage, closed, won) in enumerate(OPPORTUNITY_STAGES):
            self.insert("OpportunityStage", {"ApiName": stage, "MasterLabel": stage, "IsActive": True,
                                             "IsClosed": closed, "IsWon": won, "SortOrder": index + 1})

    # time: millisecond resolution like SystemModstamp, never going backwards
    def now(self) -> datetime:
        with self.lock:
            stamp = (datetime.now(UTC) + self.clock_offset).replace(microsecond=0) + timedelta(
                milliseconds=datetime.now(UTC).microsecond // 1000)
            # Distinct stamps within a burst of writes; a clock_offset into the past is obeyed.
            if self._last_stamp - timedelta(seconds=1) < stamp <= self._last_stamp:
                stamp = self._last_stamp + timedelta(milliseconds=1)
            self._last_stamp = stamp
            return stamp

    def new_id(self, sobject: str) -> str:
        return f"{_SCHEMA[sobject]['prefix']}{next(self._ids):012d}AAA"

    def issue_token(self) -> str:
        token = "00Dfake!" + uuid.uuid4().hex
        with self.lock:
            self.tokens.add(token)
        return token

    def expire_sessions(self) -> None:
        """Every access token stops working (the org's session timeout passed)."""
        with self.lock:
            self.tokens.clear()

    def inject(self, kind: str, *, times: int = 1, status: int = 503, code: str = "SERVER_UNAVAILABLE",
               method: str | None = None, path: str | None = None) -> Fault:
        fault = Fault(kind=kind, times=times, status=status, code=code, method=method, path=path)
        with self.lock:
            self.faults.append(fault)
        return fault

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    def api_calls(self, method: str | None = None, path: str | None = None) -> int:
        """Requests that reached the REST API (what counts against the org's daily allocation)."""
        return sum(1 for entry in self.log if entry.path.startswith("/services/data/v")
                   and (method is None or entry.method == method)
                   and (path is None or re.search(path, entry.path)))

    # -- records ------------------------------------------------------------------------------

    def field(self, sobject: str, name: str) -> FieldDef:
        for candidate, definition in self.schema[sobject].items():
            if candidate.lower() == name.lower():
                return definition
        raise SalesforceApiError(400, "INVALID_FIELD",
                                 f"No such column '{name}' on entity '{sobject}'. If you are attempting to use a "
                                 "custom field, be sure to append the '__c' after the custom field name.")

    def sobject(self, name: str) -> str:
        for candidate in self.schema:
            if candidate.lower() == name.lower():
                return candidate
        raise SalesforceApiError(404, "NOT_FOUND", f"sObject type '{name}' is not supported.")

    def _coerce(self, definition: FieldDef, value: Any) -> Any:
        if value is None:
            return None
        try:
            if definition.type == "datetime":
                return value if isinstance(value, datetime) else soql.parse_datetime(str(value))
            if definition.type == "date":
                return value if isinstance(value, date) else date.fromisoformat(str(value))
            if definition.type in ("double", "currency", "percent"):
                return float(value)
            if definition.type == "int":
                return int(value)
            if definition.type == "boolean":
                if not isinstance(value, bool):
                    raise ValueError
                return value
        except (TypeError, ValueError):
            raise SalesforceApiError(400, "INVALID_FIELD_FOR_INSERT_UPDATE" if definition.type != "date" else
                                     "INVALID_TYPE_ON_FIELD_IN_RECORD",
                                     f"{definition.name}: value not of required type: {value}",
                                     [definition.name]) from None
        text = str(value)
        if definition.picklist and definition.restricted and text not in definition.picklist:
            raise SalesforceApiError(400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                                     f"{definition.name}: bad value for restricted picklist field: {text}",
                                     [definition.name])
        if definition.length and len(text) > definition.length:
            raise SalesforceApiError(400, "STRING_TOO_LONG",
                                     f"{definition.name}: data value too large (max length={definition.length})",
                                     [definition.name])
        return text

    def _check_references(self, sobject: str, values: dict[str, Any]) -> None:
        for name, value in values.items():
            definition = self.schema[sobject][name]
            if definition.reference_to is None or value is None:
                continue
            # WhatId is polymorphic: any record id the org holds will do.
            targets = self.records if name == "WhatId" else {definition.reference_to: None}
            found = next((self.records[t][value] for t in targets if value in self.records[t]), None)
            if found is None or found.get("IsDeleted"):
                raise SalesforceApiError(400, "INVALID_CROSS_REFERENCE_KEY",
                                         f"invalid cross reference id: {value}", [name])
            if name == "OwnerId" and found.get("IsActive") is False:
                raise SalesforceApiError(400, "INACTIVE_OWNER_OR_USER", "operation performed with inactive user "
                                         f"[{value}] as owner of {sobject}", [name])

    def _clean(self, sobject: str, values: dict[str, Any], *, system: bool) -> dict[str, Any]:
        clean: dict[str, Any] = {}
        for name, value in values.items():
            if name == "attributes":
                continue
            definition = self.field(sobject, name)
            if definition.name in _READ_ONLY and not system:
                raise SalesforceApiError(400, "INVALID_FIELD_FOR_INSERT_UPDATE",
                                         f"Unable to create/update fields: {definition.name}.", [definition.name])
            clean[definition.name] = self._coerce(definition, value)
        return clean

    def _derive(self, sobject: str, record: dict[str, Any]) -> None:
        if sobject == "Task":
            record["IsClosed"] = record.get("Status") in CLOSED_TASK_STATUSES
        elif sobject == "Opportunity":
            stage = next((s for s in OPPORTUNITY_STAGES if s[0] == record.get("StageName")), None)
            record["IsClosed"], record["IsWon"] = (stage[1], stage[2]) if stage else (False, False)
        if sobject in ("User", "Contact") and ("FirstName" in record or "LastName" in record):
            record["Name"] = " ".join(p for p in (record.get("FirstName"), record.get("LastName")) if p)

    def insert(self, sobject: str, values: dict[str, Any], *, system: bool = True,
               stamp: datetime | None = None) -> dict[str, Any]:
        """Create a record (system=True: seeding, read-only fields allowed)."""
        with self.lock:
            sobject = self.sobject(sobject)
            clean = self._clean(sobject, values, system=system)
            self._check_references(sobject, clean)
            now = stamp or self.now()
            record: dict[str, Any] = {name: None for name in self.schema[sobject]}
            record.update({"Id": self.new_id(sobject), "IsDeleted": False, "CreatedDate": now,
                           "LastModifiedDate": now, "SystemModstamp": now})
            if sobject == "Task":
                record.update({"Status": "Not Started", "Priority": "Normal"})
            record.update(clean)
            self._derive(sobject, record)
            self.records[sobject][record["Id"]] = record
            self._history(sobject, None, record, now)
            return dict(record)

    def update(self, sobject: str, record_id: str, values: dict[str, Any], *, system: bool = True,
               stamp: datetime | None = None) -> dict[str, Any]:
        """Change a record; `stamp` sets SystemModstamp (a transaction that commits late)."""
        with self.lock:
            sobject = self.sobject(sobject)
            record = self.records[sobject].get(record_id)
            if record is None or record["IsDeleted"]:
                raise SalesforceApiError(404, "ENTITY_IS_DELETED" if record else "NOT_FOUND",
                                         f"entity is deleted or does not exist: {record_id}")
            clean = self._clean(sobject, values, system=system)
            self._check_references(sobject, clean)
            before = dict(record)
            record.update(clean)
            self._derive(sobject, record)
            now = stamp or self.now()
            record["LastModifiedDate"] = record["SystemModstamp"] = now
            self._history(sobject, before, record, now)
            return dict(record)

    def delete(self, sobject: str, record_id: str) -> None:
        """Move a record to the recycle bin: queryAll still returns it, with IsDeleted = true."""
        with self.lock:
            record = self.records[self.sobject(sobject)][record_id]
            record["IsDeleted"] = True
            record["SystemModstamp"] = self.now()

    def _history(self, sobject: str, before: dict[str, Any] | None, after: dict[str, Any], now: datetime) -> None:
        # Salesforce writes these itself: stage history for opportunities, field history for owners.
        if sobject == "Opportunity" and (before is None or before.get("StageName") != after.get("StageName")
                                         or before.get("Amount") != after.get("Amount")):
            self.insert("OpportunityHistory", {"OpportunityId": after["Id"], "StageName": after["StageName"],
                                               "Amount": after.get("Amount"), "CloseDate": after.get("CloseDate")},
                        stamp=now)
        if sobject == "Account" and before is not None and before.get("OwnerId") != after.get("OwnerId"):
            self.insert("AccountHistory", {"AccountId": after["Id"], "Field": "Owner", "DataType": "EntityId",
                                           "OldValue": before.get("OwnerId"), "NewValue": after.get("OwnerId")},
                        stamp=now)

    def find(self, sobject: str, **equals: Any) -> list[dict[str, Any]]:
        """Live records whose fields equal the given values (test inspection)."""
        with self.lock:
            return [dict(r) for r in self.records[sobject].values() if not r["IsDeleted"]
                    and all(r.get(k) == v for k, v in equals.items())]

    # -- queries ------------------------------------------------------------------------------

    def _value(self, sobject: str, record: dict[str, Any], path: str) -> Any:
        if "." not in path:
            return record.get(self.field(sobject, path).name)
        relation, rest = path.split(".", 1)
        reference = self.field(sobject, relation + "Id")
        target_id = record.get(reference.name)
        target_type = reference.reference_to or ""
        target = self.records.get(target_type, {}).get(target_id) if target_id else None
        return None if target is None else self._value(target_type, target, rest)

    def _row(self, sobject: str, record: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        url = f"/services/data/v{API_VERSION}/sobjects/{sobject}/{record['Id']}"
        row: dict[str, Any] = {"attributes": {"type": sobject, "url": url}}
        for path in fields:
            if "." not in path:
                definition = self.field(sobject, path)
                row[definition.name] = _wire(record.get(definition.name), definition.type)
                continue
            relation, leaf = path.split(".", 1)
            reference = self.field(sobject, relation + "Id")
            target_type = reference.reference_to or ""
            target = self.records.get(target_type, {}).get(record.get(reference.name) or "")
            if target is None:
                row[relation] = None
                continue
            nested = row.get(relation) or {"attributes": {"type": target_type, "url":
                                           f"/services/data/v{API_VERSION}/sobjects/{target_type}/{target['Id']}"}}
            leaf_definition = self.field(target_type, leaf)
            nested[leaf_definition.name] = _wire(target.get(leaf_definition.name), leaf_definition.type)
            row[relation] = nested
        return row

    def run_query(self, text: str, *, include_deleted: bool) -> dict[str, Any]:
        try:
            query = soql.parse(text)
        except soql.SoqlError as error:
            raise SalesforceApiError(400, "MALFORMED_QUERY", str(error)) from None
        with self.lock:
            sobject = self.sobject(query.sobject)
            for path in query.fields + soql.condition_fields(query.where) + [f for f, _ in query.order_by]:
                self._value(sobject, {}, path) if "." not in path else self.field(sobject, path.split(".")[0] + "Id")
            matched = []
            for record in self.records[sobject].values():
                if record["IsDeleted"] and not include_deleted:
                    continue
                view = {name: self._value(sobject, record, name) for name in soql.condition_fields(query.where)}
                if soql.evaluate(query.where, view):
                    matched.append(record)
            for name, descending in reversed(query.order_by):
                matched.sort(key=lambda r, n=name: _sort_key(self._value(sobject, r, n)), reverse=descending)
            if query.limit is not None:
                matched = matched[: query.limit]
            rows = [self._row(sobject, record, query.fields) for record in matched]
            locator = f"01g{next(self._ids):015d}"
            self._cursors[locator] = _Cursor(rows=rows, sobject=sobject, all_rows=include_deleted)
        return self.page(locator, 0)

    def page(self, locator: str, offset: int) -> dict[str, Any]:
        with self.lock:
            cursor = self._cursors.get(locator)
            if cursor is None or offset > len(cursor.rows):
                raise SalesforceApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            chunk = cursor.rows[offset: offset + self.batch_size]
            done = offset + len(chunk) >= len(cursor.rows)
            result: dict[str, Any] = {"totalSize": len(cursor.rows), "done": done, "records": chunk}
            if not done:
                endpoint = "queryAll" if cursor.all_rows else "query"
                result["nextRecordsUrl"] = (f"/services/data/v{API_VERSION}/{endpoint}/"
                                            f"{locator}-{offset + len(chunk)}")
            else:
                self._cursors.pop(locator, None)
        for hook in list(self.on_page):
            hook(cursor.sobject, offset)
        return result

    # -- composite ----------------------------------------------------------------------------

    def collection(self, method: str, records: list[dict[str, Any]], *, all_or_none: bool,
                   sobject: str | None = None, external_field: str | None = None) -> list[dict[str, Any]]:
        if len(records) > 200:
            raise SalesforceApiError(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than "
                                     "200 records into this call")
        results: list[dict[str, Any]] = []
        with self.lock:
            snapshot = {name: {k: dict(v) for k, v in table.items()} for name, table in self.records.items()} \
                if all_or_none else None
            for values in records:
                try:
                    results.append(self._collection_one(method, values, sobject, external_field))
                except SalesforceApiError as error:
                    results.append({"success": False, "errors": [
                        {"statusCode": error.code, "message": error.message, "fields": error.fields}]})
            if snapshot is not None and not all(r["success"] for r in results):
                self.records = snapshot
                results = [r if not r["success"] else {"id": r.get("id"), "success": False, "errors": [
                    {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "Record rolled back because "
                     "not all records were valid and the request was using AllOrNone header", "fields": []}]}
                    for r in results]
        return results

    def _collection_one(self, method: str, values: dict[str, Any], sobject: str | None,
                        external_field: str | None) -> dict[str, Any]:
        kind = (values.get("attributes") or {}).get("type")
        if not kind:
            raise SalesforceApiError(400, "INVALID_TYPE", "Must send a concrete entity type.")
        kind = self.sobject(kind)
        if sobject is not None and kind != sobject:
            raise SalesforceApiError(400, "INVALID_TYPE", f"records must all be {sobject}")
        body = {k: v for k, v in values.items() if k not in ("attributes", "id", "Id")}
        if method == "POST":
            record = self.insert(kind, body, system=False)
            return {"id": record["Id"], "success": True, "errors": []}
        if external_field is None:  # update by id
            record_id = values.get("id") or values.get("Id")
            if not record_id:
                raise SalesforceApiError(400, "MISSING_ARGUMENT", "Id not specified in an update call")
            self.update(kind, str(record_id), body, system=False)
            return {"id": record_id, "success": True, "errors": []}
        definition = self.field(kind, external_field)
        if not definition.external_id:
            raise SalesforceApiError(400, "INVALID_FIELD", f"{external_field} is not an external id field")
        key = body.get(definition.name)
        if not key:
            raise SalesforceApiError(400, "MISSING_ARGUMENT", f"{definition.name} not specified", [definition.name])
        existing = [r for r in self.records[kind].values() if r.get(definition.name) == key and not r["IsDeleted"]]
        if len(existing) > 1:
            raise SalesforceApiError(300, "DUPLICATE_EXTERNAL_ID", f"more than one record for {key}")
        if existing:
            self.update(kind, existing[0]["Id"], body, system=False)
            return {"id": existing[0]["Id"], "success": True, "errors": [], "created": False}
        record = self.insert(kind, body, system=False)
        return {"id": record["Id"], "success": True, "errors": [], "created": True}


def _wire(value: Any, kind: str) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"
    if isinstance(value, date):
        return value.isoformat()
    return value


def _sort_key(value: Any) -> tuple[int, Any]:
    return (1, "") if value is None else (0, value)


# -- HTTP -------------------------------------------------------------------------------------

class _Dropped(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        org = self.server.org
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        # Faults hit the REST API; logins are left alone so a storm test measures the API calls.
        fault = org.take_fault(method, parts.path) if parts.path.startswith("/services/data/v") else None
        if fault is not None and fault.kind == "drop_before":
            return self._drop(method, parts.path)
        status, payload, headers = self._dispatch(method, parts.path, parse_qs(parts.query), body, fault)
        if fault is not None and fault.kind == "drop_after":
            return self._drop(method, parts.path)  # the work above is committed; the answer never arrives
        with org.lock:
            org.log.append(RequestLog(method, parts.path, status))
        data = b"" if payload is None else (payload if isinstance(payload, bytes) else json.dumps(payload).encode())
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if payload is not None:
            self.send_header("Content-Type", headers.get("Content-Type", "application/json;charset=UTF-8"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drop(self, method: str, path: str) -> None:
        with self.server.org.lock:
            self.server.org.log.append(RequestLog(method, path, 0))
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]], body: bytes,
                  fault: Fault | None) -> tuple[int, Any, dict[str, str]]:
        org = self.server.org
        if path == "/services/oauth2/token" and method == "POST":
            return self._token(parse_qs(body.decode()))
        if path.startswith("/services/Soap/u/") and method == "POST":
            return self._soap_login(body)
        if not path.startswith("/services/data"):
            return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}], {}
        if path.rstrip("/") == "/services/data":
            return 200, [{"label": "Winter '24", "url": f"/services/data/v{API_VERSION}", "version": API_VERSION}], {}
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in org.tokens:
            return 401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], {}
        with org.lock:
            if org.api_used >= org.api_limit:
                return 403, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}], \
                    self._limit_header()
            org.api_used += 1
        if fault is not None and fault.kind == "status":
            return fault.status, [{"message": "injected fault", "errorCode": fault.code}], self._limit_header()
        try:
            status, payload = self._rest(method, path, query, body)
        except SalesforceApiError as error:
            status, payload = error.status, [{"message": error.message, "errorCode": error.code,
                                              **({"fields": error.fields} if error.fields else {})}]
        return status, payload, self._limit_header()

    def _limit_header(self) -> dict[str, str]:
        org = self.server.org
        return {"Sforce-Limit-Info": f"api-usage={org.api_used}/{org.api_limit}"}

    def _rest(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
        org = self.server.org
        match = re.fullmatch(r"/services/data/v(\d+\.\d)/(.*?)/?", path)
        if match is None:
            raise SalesforceApiError(404, "NOT_FOUND", "The requested resource does not exist")
        parts = [p for p in match.group(2).split("/") if p]
        data = json.loads(body) if body else {}
        if parts in (["query"], ["queryAll"]) and method == "GET":
            return 200, org.run_query(query.get("q", [""])[0], include_deleted=parts[0] == "queryAll")
        if len(parts) == 2 and parts[0] in ("query", "queryAll") and method == "GET":
            locator, _, offset = parts[1].partition("-")
            return 200, org.page(locator, int(offset or 0))
        if parts == ["limits"]:
            return 200, {"DailyApiRequests": {"Max": org.api_limit, "Remaining": org.api_limit - org.api_used}}
        if parts == ["sobjects"] and method == "GET":
            return 200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [
                {"name": name, "label": name, "queryable": True, "createable": True, "updateable": True,
                 "keyPrefix": _SCHEMA[name]["prefix"]} for name in org.schema]}
        if len(parts) == 3 and parts[0] == "sobjects" and parts[2] == "describe":
            sobject = org.sobject(parts[1])
            return 200, {"name": sobject, "label": sobject, "custom": False, "keyPrefix": _SCHEMA[sobject]["prefix"],
                         "fields": [definition.describe() for definition in org.schema[sobject].values()]}
        if parts[:2] == ["composite", "sobjects"]:
            records = data.get("records")
            if not isinstance(records, list):
                raise SalesforceApiError(400, "JSON_PARSER_ERROR", "records is required")
            all_or_none = bool(data.get("allOrNone", False))
            if len(parts) == 4 and method == "PATCH":
                return 200, org.collection("PATCH", records, all_or_none=all_or_none,
                                           sobject=org.sobject(parts[2]), external_field=parts[3])
            if len(parts) == 2 and method in ("POST", "PATCH"):
                return 200, org.collection(method, records, all_or_none=all_or_none)
        if parts and parts[0] == "sobjects" and len(parts) in (2, 3):
            sobject = org.sobject(parts[1])
            if len(parts) == 2 and method == "POST":
                record = org.insert(sobject, data, system=False)
                return 201, {"id": record["Id"], "success": True, "errors": []}
            if len(parts) == 3:
                record = org.records[sobject].get(parts[2])
                if record is None or record["IsDeleted"]:
                    raise SalesforceApiError(404, "NOT_FOUND", "The requested resource does not exist")
                if method == "GET":
                    return 200, org._row(sobject, record, list(org.schema[sobject]))
                if method == "PATCH":
                    org.update(sobject, parts[2], data, system=False)
                    return 204, None
                if method == "DELETE":
                    org.delete(sobject, parts[2])
                    return 204, None
        raise SalesforceApiError(404, "NOT_FOUND", "The requested resource does not exist")

    # -- auth ---------------------------------------------------------------------------------

    def _token_ok(self) -> tuple[int, Any, dict[str, str]]:
        server = self.server
        token = server.org.issue_token()
        return 200, {"access_token": token, "instance_url": server.url, "token_type": "Bearer",
                     "id": f"{server.url}/id/00D000000000001AAA/005000000000001AAA",
                     "issued_at": str(int(datetime.now(UTC).timestamp() * 1000)), "signature": "fake"}, {}

    def _token(self, form: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        org = self.server.org
        value = {k: v[0] for k, v in form.items()}
        grant = value.get("grant_type")
        bad = (400, {"error": "invalid_grant", "error_description": "authentication failure"}, {})
        if grant == "refresh_token":
            client = org.refresh_tokens.get(value.get("refresh_token", ""))
            if client is None or client != value.get("client_id"):
                return 400, {"error": "invalid_grant", "error_description": "expired access/refresh token"}, {}
            if org.client_secrets.get(client) not in (None, value.get("client_secret")):
                return 400, {"error": "invalid_client", "error_description": "invalid client credentials"}, {}
            return self._token_ok()
        if grant == "password":
            known = org.users_by_login.get(value.get("username", ""))
            if known is None or value.get("password") != known[0] + known[1]:
                return bad
            return self._token_ok()
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            try:
                unverified = jwt.decode(value.get("assertion", ""), options={"verify_signature": False})
                key = org.jwt_keys[unverified["iss"]]
                claims = jwt.decode(value["assertion"], key, algorithms=["RS256"],
                                    options={"verify_aud": False})
            except (KeyError, jwt.PyJWTError):
                return bad
            if claims.get("sub") not in org.users_by_login:
                return bad
            return self._token_ok()
        return 400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"}, {}

    def _soap_login(self, body: bytes) -> tuple[int, Any, dict[str, str]]:
        org = self.server.org
        document = minidom.parseString(body)

        def text(tag: str) -> str:
            nodes = document.getElementsByTagName(tag)
            return nodes[0].firstChild.data if nodes and nodes[0].firstChild else ""  # type: ignore[union-attr]

        known = org.users_by_login.get(text("n1:username"))
        headers = {"Content-Type": "text/xml;charset=UTF-8"}
        if known is None or text("n1:password") != known[0] + known[1]:
            fault = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.'
                     'xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body>'
                     '<soapenv:Fault><faultcode>INVALID_LOGIN</faultcode><detail><sf:LoginFault>'
                     '<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>Invalid username, '
                     'password, security token; or user locked out.</sf:exceptionMessage></sf:LoginFault></detail>'
                     '</soapenv:Fault></soapenv:Body></soapenv:Envelope>')
            return 500, fault.encode(), headers
        token = org.issue_token()
        url = self.server.url
        ok = (f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/'
              f'soap/envelope/"><soapenv:Body><loginResponse><result><serverUrl>{url}/services/Soap/u/{API_VERSION}/'
              f'00D000000000001</serverUrl><sessionId>{token}</sessionId></result></loginResponse></soapenv:Body>'
              '</soapenv:Envelope>')
        return 200, ok.encode(), headers


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    org: FakeOrg
    url: str


class FakeSalesforce:
    """The fake org behind a TLS server on 127.0.0.1; use as a context manager."""

    def __init__(self, *, tmp_dir: Path) -> None:
        self.org = FakeOrg()
        self.ca = trustme.CA()
        self.ca_bundle = tmp_dir / "fake-salesforce-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_bundle))
        certificate = self.ca.issue_cert("127.0.0.1", "localhost")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.org = self.org
        self.port = self._server.server_address[1]
        self.url = self._server.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeSalesforce:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def access_token(self) -> str:
        return self.org.issue_token()

    def register_refresh_token(self, *, client_id: str, client_secret: str) -> str:
        token = "5Aep" + uuid.uuid4().hex
        self.org.refresh_tokens[token] = client_id
        self.org.client_secrets[client_id] = client_secret
        return token


def seed_users(org: FakeOrg, count: int = 3) -> list[dict[str, Any]]:
    """A role, a manager and `count` reps; returns the User records (manager first)."""
    role = org.insert("UserRole", {"Name": "Customer Success", "DeveloperName": "CSM"})
    profile = org.insert("Profile", {"Name": "Standard User"})
    manager = org.insert("User", {"FirstName": "Mara", "LastName": "Manager", "Email": "mara@acme.example",
                                  "Username": "mara@acme.example", "IsActive": True,
                                  "TimeZoneSidKey": "America/New_York", "UserRoleId": role["Id"],
                                  "ProfileId": profile["Id"]})
    users = [manager]
    for index in range(count):
        users.append(org.insert("User", {
            "FirstName": f"Rep{index}", "LastName": "Seller", "Email": f"rep{index}@acme.example",
            "Username": f"rep{index}@acme.example", "IsActive": True, "TimeZoneSidKey": "America/Chicago",
            "ManagerId": manager["Id"], "UserRoleId": role["Id"], "ProfileId": profile["Id"]}))
    return users


def iter_accounts(count: int, owner_ids: list[str]) -> Iterator[dict[str, Any]]:
    for index in range(count):
        yield {"Name": f"Customer {index}", "Website": f"https://customer{index}.example", "Industry": "Software",
               "AnnualRevenue": 10000.0 + index, "OwnerId": owner_ids[index % len(owner_ids)],
               "Health_Score__c": float(index % 100), "Segment__c": "Mid-Market"}
