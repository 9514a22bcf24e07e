"""A fake HubSpot CRM v3 server, written from HubSpot's public API documentation, for the connector tests.

It speaks HTTPS with a throwaway CA (`trustme`) so the real `hubspot-api-client` is driven with a
configured host and CA bundle, exactly as a customer's deployment would be. What it covers:

- objects (companies, contacts, deals, tasks): list with `archived`, batch read (with
  `propertiesWithHistory`), search (filterGroups, sorts, `paging.next.after`, the 10,000-result cap,
  200 per page), batch create / update honouring unique-value properties;
- associations (v4 batch read; created by `associations` on batch create);
- owners, properties (read and create, `hasUniqueValue`);
- bearer tokens that expire (401 `EXPIRED_AUTHENTICATION`) and `POST /oauth/v1/token` refresh;
- rate limits: `TEN_SECONDLY_ROLLING` (100 per rolling 10 s by default), search `SECONDLY` (5 per
  second), `DAILY`; each 429 with HubSpot's error body and `X-HubSpot-RateLimit-*` headers;
- faults: a status storm (5xx), a dropped connection before or after the server committed the write.

Time comes from two injectable callables: `clock` (monotonic seconds, for the rate limits; tests share
a fake one with the connector's token bucket so rate-limit tests never sleep) and `wall` (aware UTC
now, for `hs_lastmodifieddate`).
"""

from __future__ import annotations

import bisect
import json
import math
import re
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme

OBJECT_TYPES = ("companies", "contacts", "deals", "tasks", "notes")
MODIFIED = {"contacts": "lastmodifieddate"}  # every other object type: hs_lastmodifieddate
DATE_PROPERTIES = {"hubspot_owner_assigneddate", "hs_lastmodifieddate", "lastmodifieddate", "createdate",
                   "hs_timestamp", "closedate",
                   "hs_task_completion_date", "notes_last_updated"}
SEARCH_CAP = 10_000
SEARCH_MAX_LIMIT = 200
LIST_MAX_LIMIT = 100
BATCH_MAX = 100
# HubSpot-defined association type ids (v4 docs, "Association type id values").
ASSOCIATION_TYPES: dict[int, tuple[str, str]] = {
    192: ("tasks", "companies"), 204: ("tasks", "contacts"), 216: ("tasks", "deals"),
    190: ("notes", "companies"), 202: ("notes", "contacts"), 214: ("notes", "deals"),
    279: ("contacts", "companies"), 1: ("contacts", "companies"),
    341: ("deals", "companies"), 5: ("deals", "companies"), 3: ("deals", "contacts"),
}
# The reverse (unlabeled) type each forward association is stored under.
REVERSE_TYPES = {192: 191, 204: 203, 216: 215, 190: 189, 202: 201, 214: 213, 279: 280, 1: 2, 341: 342,
                 5: 6, 3: 4}
DEFAULT_PROPERTIES = {
    "companies": ["name", "domain", "createdate", "hs_lastmodifieddate", "hs_object_id"],
    "contacts": ["firstname", "lastname", "email", "createdate", "lastmodifieddate", "hs_object_id"],
    "deals": ["dealname", "amount", "dealstage", "pipeline", "closedate", "createdate", "hs_lastmodifieddate",
              "hs_object_id"],
    "tasks": ["hs_task_subject", "hs_task_status", "hs_timestamp", "hs_createdate", "hs_lastmodifieddate",
              "hs_object_id"],
    "notes": ["hs_note_body", "hs_timestamp", "hs_lastmodifieddate", "hs_object_id"],
}
STANDARD_PROPERTIES: dict[str, list[str]] = {
    "companies": ["name", "domain", "industry", "annualrevenue", "hubspot_owner_id", "hubspot_owner_assigneddate",
                  "lifecyclestage",
                  "createdate", "hs_lastmodifieddate", "hs_object_id", "numberofemployees"],
    "contacts": ["firstname", "lastname", "email", "jobtitle", "hubspot_owner_id", "createdate",
                 "lastmodifieddate", "hs_object_id"],
    "deals": ["dealname", "amount", "dealstage", "pipeline", "closedate", "hubspot_owner_id", "createdate",
              "hs_lastmodifieddate", "hs_object_id", "hs_is_closed", "hs_is_closed_won", "dealtype"],
    "tasks": ["hs_task_subject", "hs_task_body", "hs_task_status", "hs_task_priority", "hs_timestamp",
              "hubspot_owner_id", "hs_task_type", "hs_createdate", "hs_lastmodifieddate", "hs_object_id",
              "hs_task_completion_date"],
    "notes": ["hs_note_body", "hs_timestamp", "hubspot_owner_id", "hs_lastmodifieddate", "hs_object_id"],
}


def iso(moment: datetime) -> str:
    """HubSpot's timestamp format: UTC with milliseconds and a Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def to_ms(value: Any) -> int:
    """A date filter or property value (epoch milliseconds or ISO 8601) as epoch milliseconds."""
    text = str(value)
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


@dataclass
class StoredObject:
    id: str
    properties: dict[str, str | None]
    created_at: datetime
    updated_at: datetime
    archived: bool = False
    archived_at: datetime | None = None
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    parsed: dict[str, tuple[Any, int]] = field(default_factory=dict)  # property -> (raw, epoch ms), a cache

    def ms(self, name: str) -> int | None:
        raw = self.properties.get(name)
        if raw is None:
            return None
        cached = self.parsed.get(name)
        if cached is None or cached[0] != raw:
            cached = (raw, to_ms(raw))
            self.parsed[name] = cached
        return cached[1]


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    kind: str  # "status", "drop_before", "drop_after"
    times: int
    status: int = 503
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    method: str
    path: str
    status: int
    body: Any = None


class _Drop(Exception):
    """Close the connection without a response."""


class _Reply(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}

    def _with(self, headers: dict[str, str]) -> _Reply:
        self.headers = {**self.headers, **headers}
        return self


def _error(status: int, message: str, category: str, **extra: Any) -> _Reply:
    return _Reply(status, {"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
                           "category": category, **extra})


class FakeHubSpot:
    """The fake server and its state; use as a context manager (`with FakeHubSpot() as hs:`)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC),
                 ten_secondly_limit: int = 100, secondly_search_limit: int = 5,
                 daily_limit: int = 1_000_000, search_cap: int = SEARCH_CAP,
                 client_secret: str = "fake-client-secret", tls: bool = True) -> None:
        self.clock, self.wall = clock, wall
        self.ten_secondly_limit, self.secondly_search_limit = ten_secondly_limit, secondly_search_limit
        self.daily_limit, self.search_cap = daily_limit, search_cap
        self.client_id, self.client_secret = "fake-client-id", client_secret
        self.tls = tls
        self.lock = threading.RLock()
        self.objects: dict[str, dict[str, StoredObject]] = {t: {} for t in OBJECT_TYPES}
        self.owners: list[dict[str, Any]] = []
        self.properties: dict[str, list[dict[str, Any]]] = {
            t: [self._property_definition(t, name) for name in names] for t, names in STANDARD_PROPERTIES.items()
        }
        # (from type, from id) -> {(to type, to id): {type ids}}
        self.associations: dict[tuple[str, str], dict[tuple[str, str], set[int]]] = {}
        self.tokens: dict[str, bool] = {"test-token": True}  # access token -> still valid
        self.refresh_tokens: set[str] = {"test-refresh"}
        self.faults: list[Fault] = []
        self.calls: list[Call] = []
        self._next_id = 1000
        self._window: deque[float] = deque()
        self._search_window: deque[float] = deque()
        self._daily_used = 0
        self._order_cache: dict[str, list[int]] = {}
        self.held = threading.Event()
        self._released = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ca: trustme.CA | None = None
        self.ca_path: str | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> FakeHubSpot:
        self.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def start(self, *, ca_dir: Path | None = None) -> None:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        if self.tls:
            self._ca = trustme.CA()
            cert = self._ca.issue_cert("127.0.0.1", "localhost")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(context)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            directory = ca_dir or Path(__import__("tempfile").mkdtemp(prefix="fake-hubspot-"))
            self.ca_path = str(directory / "ca.pem")
            self._ca.cert_pem.write_to_path(self.ca_path)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    # -- seeding and inspection (tests call these directly) ------------------------------------

    def new_id(self) -> str:
        with self.lock:
            self._next_id += 1
            return str(self._next_id)

    def add(self, object_type: str, properties: dict[str, Any], *, modified: datetime | None = None,
            created: datetime | None = None, archived: bool = False, object_id: str | None = None) -> str:
        """Store a record as if a rep had created it in HubSpot; returns its id."""
        with self.lock:
            now = self.wall()
            oid = object_id or self.new_id()
            created = created or modified or now
            modified = modified or now
            props = {k: (None if v is None else str(v)) for k, v in properties.items()}
            stored = StoredObject(id=oid, properties=props, created_at=created, updated_at=modified,
                                  archived=archived, archived_at=modified if archived else None)
            for name, value in props.items():
                stored.history[name] = [{"value": value or "", "timestamp": iso(modified), "sourceType": "CRM_UI"}]
            self._stamp(object_type, stored, modified)
            self.objects[object_type][oid] = stored
            return oid

    def update(self, object_type: str, object_id: str, properties: dict[str, Any], *,
               modified: datetime | None = None) -> None:
        """Change a record as a rep would (keeps property history, moves the modification date)."""
        with self.lock:
            stored = self.objects[object_type][object_id]
            moment = modified or self.wall()
            for name, value in properties.items():
                text = None if value is None else str(value)
                stored.properties[name] = text
                stored.history.setdefault(name, []).insert(
                    0, {"value": text or "", "timestamp": iso(moment), "sourceType": "CRM_UI"})
            stored.updated_at = moment
            self._stamp(object_type, stored, moment, changed=properties)

    def archive(self, object_type: str, object_id: str, *, at: datetime | None = None) -> None:
        with self.lock:
            stored = self.objects[object_type][object_id]
            stored.archived, stored.archived_at = True, at or self.wall()
            stored.updated_at = stored.archived_at

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str, type_id: int) -> None:
        with self.lock:
            self.associations.setdefault((from_type, from_id), {}).setdefault((to_type, to_id), set()).add(type_id)
            reverse = REVERSE_TYPES.get(type_id, type_id)
            self.associations.setdefault((to_type, to_id), {}).setdefault((from_type, from_id), set()).add(reverse)

    def associated(self, from_type: str, from_id: str, to_type: str) -> list[str]:
        with self.lock:
            links = self.associations.get((from_type, from_id), {})
            return sorted(tid for (ttype, tid) in links if ttype == to_type)

    def add_owner(self, *, email: str, first: str = "", last: str = "", owner_id: str | None = None) -> str:
        with self.lock:
            oid = owner_id or self.new_id()
            now = iso(self.wall())
            self.owners.append({"id": oid, "email": email, "firstName": first, "lastName": last,
                                "userId": int(oid), "createdAt": now, "updatedAt": now, "archived": False,
                                "type": "PERSON"})
            return oid

    def add_property(self, object_type: str, name: str, *, unique: bool = False, type_: str = "string") -> None:
        with self.lock:
            definition = self._property_definition(object_type, name, unique=unique, type_=type_)
            self.properties[object_type].append(definition)

    def expire_token(self, token: str = "test-token") -> None:
        with self.lock:
            self.tokens[token] = False

    def fail(self, method: str, path: str, *, times: int = 1, status: int = 503,
             body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        """Answer the next `times` matching requests with `status` before doing anything."""
        self.faults.append(Fault(method, re.compile(path), "status", times, status, body, headers or {}))

    def fail_after_commit(self, method: str, path: str, *, times: int = 1, status: int = 502) -> None:
        """Do the next `times` matching requests, then answer `status` (a gateway timing out on a done write)."""
        self.faults.append(Fault(method, re.compile(path), "status_after", times, status))

    def drop(self, method: str, path: str, *, times: int = 1, after_commit: bool = True) -> None:
        """Close the connection on the next `times` matching requests, after (or before) committing them."""
        self.faults.append(Fault(method, re.compile(path), "drop_after" if after_commit else "drop_before", times))

    def hold(self, method: str, path: str) -> None:
        """Commit the next matching request, then keep its answer until `release()` (and drop it): a client
        killed while waiting has had its write applied without ever hearing so. `held` is set meanwhile."""
        self.faults.append(Fault(method, re.compile(path), "hold", 1))

    def release(self) -> None:
        self._released.set()

    def exhaust_daily(self) -> None:
        with self.lock:
            self._daily_used = self.daily_limit

    def count(self, *, method: str | None = None, path: str | None = None, status: int | None = None) -> int:
        """How many requests matched (path is a regular expression searched in the path)."""
        with self.lock:
            return sum(1 for c in self.calls if (method is None or c.method == method)
                       and (path is None or re.search(path, c.path)) and (status is None or c.status == status))

    def live(self, object_type: str) -> list[StoredObject]:
        with self.lock:
            return [o for o in self.objects[object_type].values() if not o.archived]

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _property_definition(object_type: str, name: str, *, unique: bool = False,
                             type_: str | None = None) -> dict[str, Any]:
        kind = type_ or ("datetime" if name in DATE_PROPERTIES else
                         "number" if name in ("amount", "annualrevenue", "numberofemployees", "hs_object_id")
                         else "string")
        return {"name": name, "label": name.replace("_", " ").title(), "type": kind,
                "fieldType": "date" if kind == "datetime" else "number" if kind == "number" else "text",
                "groupName": f"{object_type}information", "description": "", "options": [],
                "displayOrder": -1, "calculated": False, "externalOptions": False, "hasUniqueValue": unique,
                "hidden": False, "formField": True, "archived": False,
                "createdAt": "2020-01-01T00:00:00.000Z", "updatedAt": "2020-01-01T00:00:00.000Z",
                "modificationMetadata": {"archivable": True, "readOnlyDefinition": False,
                                         "readOnlyValue": name in ("hs_object_id", "hs_lastmodifieddate")}}

    def _stamp(self, object_type: str, stored: StoredObject, moment: datetime,
               changed: dict[str, Any] | None = None) -> None:
        stored.properties["hs_object_id"] = stored.id
        if "hubspot_owner_id" in (changed if changed is not None else stored.properties):
            stored.properties["hubspot_owner_assigneddate"] = iso(moment)
        stored.properties[MODIFIED.get(object_type, "hs_lastmodifieddate")] = iso(moment)
        stored.properties.setdefault("createdate" if object_type != "tasks" else "hs_createdate",
                                     iso(stored.created_at))

    def _unique_properties(self, object_type: str) -> list[str]:
        return [p["name"] for p in self.properties.get(object_type, []) if p.get("hasUniqueValue")]

    def _record(self, method: str, path: str, status: int, body: Any = None) -> None:
        with self.lock:
            self.calls.append(Call(method, path, status, body))

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.pattern.search(path):
                    fault.times -= 1
                    return fault
            return None

    def _rate_limit(self, *, search: bool) -> dict[str, str]:
        """Count this request against the limits; raises a 429 reply when one is exceeded."""
        with self.lock:
            now = self.clock()
            while self._window and self._window[0] <= now - 10.0:
                self._window.popleft()
            while self._search_window and self._search_window[0] <= now - 1.0:
                self._search_window.popleft()
            headers = {"X-HubSpot-RateLimit-Daily": str(self.daily_limit),
                       "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
                       "X-HubSpot-RateLimit-Max": str(self.ten_secondly_limit)}
            if self._daily_used >= self.daily_limit:
                headers["X-HubSpot-RateLimit-Daily-Remaining"] = "0"
                raise _error(429, "You have reached your daily limit.", "RATE_LIMITS", errorType="RATE_LIMIT",
                             policyName="DAILY", groupName="api-calls-daily")._with(headers)
            if len(self._window) >= self.ten_secondly_limit:
                wait = max(0.0, self._window[0] + 10.0 - now)
                headers |= {"X-HubSpot-RateLimit-Remaining": "0", "Retry-After": str(max(1, math.ceil(wait)))}
                raise _error(429, "You have reached your ten secondly limit.", "RATE_LIMITS",
                             errorType="RATE_LIMIT", policyName="TEN_SECONDLY_ROLLING",
                             groupName="publicapi:private-app:burst")._with(headers)
            if search and len(self._search_window) >= self.secondly_search_limit:
                wait = max(0.0, self._search_window[0] + 1.0 - now)
                headers |= {"Retry-After": str(max(1, math.ceil(wait)))}
                raise _error(429, "You have reached your secondly limit.", "RATE_LIMITS",
                             errorType="RATE_LIMIT", policyName="SECONDLY",
                             groupName="publicapi:crm-search")._with(headers)
            self._window.append(now)
            if search:
                self._search_window.append(now)
            self._daily_used += 1
            headers |= {"X-HubSpot-RateLimit-Remaining": str(self.ten_secondly_limit - len(self._window)),
                        "X-HubSpot-RateLimit-Daily-Remaining": str(self.daily_limit - self._daily_used)}
            return headers

    def _authenticate(self, header: str | None) -> None:
        token = header[7:] if header and header.startswith("Bearer ") else None
        with self.lock:
            valid = self.tokens.get(token) if token else None
        if valid is None:
            raise _error(401, "Authentication credentials not found.", "INVALID_AUTHENTICATION")
        if not valid:
            raise _error(401, "The OAuth token used to make this call expired 0 second(s) ago.",
                         "EXPIRED_AUTHENTICATION")

    # -- request dispatch ----------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        fault = self._take_fault(method, path)
        if fault is not None and fault.kind == "status":
            return fault.status, fault.body or {"status": "error", "message": "Internal error",
                                                "category": "INTERNAL_ERROR"}, fault.headers
        if fault is not None and fault.kind == "drop_before":
            raise _Drop
        if path == "/oauth/v1/token" and method == "POST":
            return 200, self._token(raw), {}
        self._authenticate(headers.get("authorization"))
        limit_headers = self._rate_limit(search=path.endswith("/search"))
        body = json.loads(raw) if raw and headers.get("content-type", "").startswith("application/json") else None
        status, payload = self._route(method, path, query, body)
        if fault is not None and fault.kind == "drop_after":
            raise _Drop  # the write above stays committed; only the response is lost
        if fault is not None and fault.kind == "hold":
            self.held.set()
            self._released.wait(timeout=120)
            raise _Drop
        if fault is not None and fault.kind == "status_after":
            return fault.status, {"status": "error", "message": "Bad gateway", "category": "INTERNAL_ERROR"}, {}
        return status, payload, limit_headers

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        match = re.fullmatch(r"/crm/v3/objects/(\w+)(?:/(.+))?", path)
        if match and match.group(1) in self.objects:
            object_type, rest = match.group(1), match.group(2)
            if method == "GET" and rest is None:
                return 200, self._list(object_type, query)
            if method == "POST" and rest == "search":
                return 200, self._search(object_type, body)
            if method == "POST" and rest == "batch/read":
                return 200, self._batch_read(object_type, body, query)
            if method == "POST" and rest == "batch/create":
                return 201, self._batch_create(object_type, body)
            if method == "POST" and rest == "batch/update":
                return 200, self._batch_update(object_type, body)
            if method == "GET" and rest and rest.isdigit():
                return 200, self._get(object_type, rest, query)
        match = re.fullmatch(r"/crm/v4/associations/(\w+)/(\w+)/batch/read", path)
        if match and method == "POST":
            return 200, self._associations(match.group(1), match.group(2), body)
        if path == "/crm/v3/owners" or path == "/crm/v3/owners/":
            return 200, self._owners(query)
        match = re.fullmatch(r"/crm/v3/properties/(\w+)", path)
        if match and match.group(1) in self.properties:
            if method == "GET":
                return 200, {"results": self.properties[match.group(1)]}
            if method == "POST":
                return 201, self._create_property(match.group(1), body)
        raise _error(404, f"No route for {method} {path}", "OBJECT_NOT_FOUND")

    def _token(self, raw: bytes) -> dict[str, Any]:
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        if form.get("grant_type") != "refresh_token" or form.get("client_id") != self.client_id \
                or form.get("client_secret") != self.client_secret:
            raise _Reply(400, {"status": "BAD_CLIENT_ID", "message": "missing or unknown client id"})
        with self.lock:
            if form.get("refresh_token") not in self.refresh_tokens:
                raise _Reply(400, {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"})
            token = f"token-{uuid.uuid4().hex[:12]}"
            self.tokens[token] = True
        return {"access_token": token, "refresh_token": form["refresh_token"], "expires_in": 1800,
                "token_type": "bearer", "id_token": None}

    def _view(self, object_type: str, stored: StoredObject, names: list[str] | None,
              with_history: list[str] | None = None) -> dict[str, Any]:
        wanted = names if names else DEFAULT_PROPERTIES[object_type]
        view: dict[str, Any] = {
            "id": stored.id,
            "properties": {n: stored.properties.get(n) for n in dict.fromkeys([*wanted, "hs_object_id"])},
            "createdAt": iso(stored.created_at), "updatedAt": iso(stored.updated_at), "archived": stored.archived,
        }
        if stored.archived and stored.archived_at:
            view["archivedAt"] = iso(stored.archived_at)
        if with_history:
            view["propertiesWithHistory"] = {n: stored.history.get(n, []) for n in with_history}
        return view

    @staticmethod
    def _names(query: dict[str, list[str]], key: str = "properties") -> list[str]:
        return [n for value in query.get(key, []) for n in value.split(",") if n]

    def _list(self, object_type: str, query: dict[str, list[str]]) -> dict[str, Any]:
        limit = int(query.get("limit", ["10"])[0])
        if limit > LIST_MAX_LIMIT:
            raise _error(400, f"limit may not exceed {LIST_MAX_LIMIT}", "VALIDATION_ERROR")
        archived = query.get("archived", ["false"])[0].lower() == "true"  # the client sends "True"
        after = query.get("after", [None])[0]
        with self.lock:
            ordered = self._ordered(object_type)
            start = bisect.bisect_right(ordered, int(after)) if after is not None else 0
            page: list[StoredObject] = []
            position = start
            while position < len(ordered) and len(page) <= limit:
                stored = self.objects[object_type][str(ordered[position])]
                if stored.archived == archived:
                    page.append(stored)
                position += 1
            more = len(page) > limit
            page = page[:limit]
            results = [self._view(object_type, o, self._names(query)) for o in page]
        response: dict[str, Any] = {"results": results}
        if more:
            response["paging"] = {"next": {"after": page[-1].id, "link": "?after=" + page[-1].id}}
        return response

    def _ordered(self, object_type: str) -> list[int]:
        """Ids in order, cached while the set of ids is unchanged (listing 50,000 records stays cheap)."""
        objects = self.objects[object_type]
        cached = self._order_cache.get(object_type)
        if cached is None or len(cached) != len(objects):
            cached = sorted(int(i) for i in objects)
            self._order_cache[object_type] = cached
        return cached

    def _get(self, object_type: str, object_id: str, query: dict[str, list[str]]) -> dict[str, Any]:
        with self.lock:
            stored = self.objects[object_type].get(object_id)
            if stored is None or stored.archived:
                raise _error(404, "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND")
            return self._view(object_type, stored, self._names(query))

    @staticmethod
    def _compile(condition: dict[str, Any]) -> Callable[[StoredObject], bool]:
        """One search filter as a predicate (compiled once per request: searches scan every record)."""
        name, operator = condition["propertyName"], condition["operator"]

        def value_of(text: Any) -> Any:
            if name in DATE_PROPERTIES:
                return to_ms(text)
            if name == "hs_object_id":
                return int(text)
            return str(text).lower()

        def mine(stored: StoredObject) -> Any:
            if name == "hs_object_id":
                return int(stored.id)
            if name in DATE_PROPERTIES:
                return stored.ms(name)
            raw = stored.properties.get(name)
            return None if raw is None else str(raw).lower()

        if operator == "HAS_PROPERTY":
            return lambda o: mine(o) is not None
        if operator == "NOT_HAS_PROPERTY":
            return lambda o: mine(o) is None
        if operator in ("IN", "NOT_IN"):
            values = {value_of(v) for v in condition.get("values", [])}
            if operator == "IN":
                return lambda o: mine(o) in values
            return lambda o: (m := mine(o)) is not None and m not in values
        other = value_of(condition["value"])
        if operator == "BETWEEN":
            high = value_of(condition["highValue"])
            return lambda o: (m := mine(o)) is not None and other <= m <= high
        compare: dict[str, Callable[[Any], bool]] = {
            "EQ": lambda m: m == other, "NEQ": lambda m: m != other, "LT": lambda m: m < other,
            "LTE": lambda m: m <= other, "GT": lambda m: m > other, "GTE": lambda m: m >= other}
        test = compare[operator]
        return lambda o: (m := mine(o)) is not None and test(m)

    def _search(self, object_type: str, body: dict[str, Any]) -> dict[str, Any]:
        limit = int(body.get("limit") or 10)
        if limit > SEARCH_MAX_LIMIT:
            raise _error(400, f"limit must be at most {SEARCH_MAX_LIMIT}", "VALIDATION_ERROR")
        after = int(body.get("after") or 0)
        if after + limit > self.search_cap and after >= self.search_cap:
            raise _error(400, f"Paging beyond {self.search_cap} results is not supported.", "VALIDATION_ERROR")
        groups = [[self._compile(f) for f in g.get("filters", [])] for g in body.get("filterGroups") or []]
        with self.lock:
            matched = [o for o in self.objects[object_type].values() if not o.archived and (
                not groups or any(all(test(o) for test in group) for group in groups))]
            for sort in reversed(body.get("sorts") or [{"propertyName": "hs_object_id", "direction": "ASCENDING"}]):
                name = sort["propertyName"]

                def key(o: StoredObject, name: str = name) -> Any:
                    if name == "hs_object_id":
                        return int(o.id)
                    if name in DATE_PROPERTIES:
                        found = o.ms(name)
                        return -1 if found is None else found
                    return o.properties.get(name) or ""
                matched.sort(key=key, reverse=sort.get("direction") == "DESCENDING")
            total = len(matched)
            end = after + limit
            page = matched[after:min(end, self.search_cap)]
            results = [self._view(object_type, o, body.get("properties")) for o in page]
        response: dict[str, Any] = {"total": total, "results": results}
        if end < total:  # offered even at the cap, as HubSpot does; asking for it is the 400 above
            response["paging"] = {"next": {"after": str(end), "link": ""}}
        return response

    def _batch_read(self, object_type: str, body: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        inputs = body.get("inputs") or []
        id_property = body.get("idProperty")
        started = iso(self.wall())
        with self.lock:
            results = []
            for item in inputs:
                if id_property:
                    found = [o for o in self.objects[object_type].values()
                             if not o.archived and o.properties.get(id_property) == str(item["id"])]
                    stored = found[0] if found else None
                else:
                    stored = self.objects[object_type].get(str(item["id"]))
                if stored is not None and not stored.archived:
                    results.append(self._view(object_type, stored, body.get("properties"),
                                              body.get("propertiesWithHistory")))
        return {"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": iso(self.wall())}

    def _check_batch(self, inputs: Any) -> list[dict[str, Any]]:
        if not isinstance(inputs, list) or not inputs:
            raise _error(400, "inputs is required", "VALIDATION_ERROR")
        if len(inputs) > BATCH_MAX:
            raise _error(400, f"Batch size of {len(inputs)} exceeds the limit of {BATCH_MAX}", "VALIDATION_ERROR")
        return inputs

    def _batch_create(self, object_type: str, body: dict[str, Any]) -> dict[str, Any]:
        inputs = self._check_batch(body.get("inputs"))
        started = iso(self.wall())
        with self.lock:
            known = {p["name"] for p in self.properties[object_type]}
            unique = self._unique_properties(object_type)
            seen: dict[tuple[str, str], str] = {(n, o.properties[n]): o.id for o in self.live(object_type)
                                                for n in unique if o.properties.get(n) is not None}
            # Validate the whole batch first: HubSpot creates all of a batch or none of it.
            for item in inputs:
                props = item.get("properties") or {}
                for name in props:
                    if name not in known:
                        raise _error(400, f'Property "{name}" does not exist', "VALIDATION_ERROR")
                for name in unique:
                    value = props.get(name)
                    if value is not None and (name, str(value)) in seen:
                        raise _error(409, f"A {object_type[:-1]} with {name} {value} already exists (id "
                                     f"{seen[(name, str(value))]})", "CONFLICT")
                    if value is not None:
                        seen[(name, str(value))] = "this batch"
                for association in item.get("associations") or []:
                    for spec in association["types"]:
                        pair = ASSOCIATION_TYPES.get(spec["associationTypeId"])
                        if pair is None or pair[0] != object_type:
                            raise _error(400, f"invalid association type {spec['associationTypeId']}",
                                         "VALIDATION_ERROR")
                        if str(association["to"]["id"]) not in self.objects[pair[1]]:
                            raise _error(400, f"{pair[1]} {association['to']['id']} does not exist",
                                         "VALIDATION_ERROR")
            results = []
            for item in inputs:
                oid = self.add(object_type, item.get("properties") or {})
                for association in item.get("associations") or []:
                    for spec in association["types"]:
                        pair = ASSOCIATION_TYPES[spec["associationTypeId"]]
                        self.associate(object_type, oid, pair[1], str(association["to"]["id"]),
                                       spec["associationTypeId"])
                names = list((item.get("properties") or {}).keys())
                results.append(self._view(object_type, self.objects[object_type][oid], names))
        return {"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": iso(self.wall())}

    def _batch_update(self, object_type: str, body: dict[str, Any]) -> dict[str, Any]:
        inputs = self._check_batch(body.get("inputs"))
        started = iso(self.wall())
        with self.lock:
            for item in inputs:
                stored = self.objects[object_type].get(str(item["id"]))
                if stored is None or stored.archived:
                    raise _error(404, f"Object {item['id']} not found", "OBJECT_NOT_FOUND")
            results = []
            for item in inputs:
                self.update(object_type, str(item["id"]), item.get("properties") or {})
                results.append(self._view(object_type, self.objects[object_type][str(item["id"])],
                                          list((item.get("properties") or {}).keys())))
        return {"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": iso(self.wall())}

    def _associations(self, from_type: str, to_type: str, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body.get("inputs") or []
        if len(inputs) > 1000:
            raise _error(400, "at most 1000 inputs", "VALIDATION_ERROR")
        started = iso(self.wall())
        with self.lock:
            results = []
            for item in inputs:
                links = self.associations.get((from_type, str(item["id"])), {})
                targets = [{"toObjectId": int(tid), "associationTypes": [
                    {"category": "HUBSPOT_DEFINED", "typeId": t, "label": "Primary" if t in (1, 5, 2, 6) else None}
                    for t in sorted(types)]} for (ttype, tid), types in sorted(links.items()) if ttype == to_type]
                if targets:
                    results.append({"from": {"id": str(item["id"])}, "to": targets})
        return {"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": iso(self.wall())}

    def _owners(self, query: dict[str, list[str]]) -> dict[str, Any]:
        limit = int(query.get("limit", ["100"])[0])
        after = int(query.get("after", ["0"])[0])
        archived = query.get("archived", ["false"])[0].lower() == "true"
        with self.lock:
            owners = [o for o in self.owners if o["archived"] == archived]
            page = owners[after:after + limit]
            response: dict[str, Any] = {"results": page}
            if after + limit < len(owners):
                response["paging"] = {"next": {"after": str(after + limit), "link": ""}}
        return response

    def _create_property(self, object_type: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not name or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise _error(400, "name is invalid", "VALIDATION_ERROR")
        with self.lock:
            if any(p["name"] == name for p in self.properties[object_type]):
                raise _error(409, f"A property named '{name}' already exists.", "OBJECT_ALREADY_EXISTS")
            self.add_property(object_type, name, unique=bool(body.get("hasUniqueValue")),
                              type_=body.get("type", "string"))
            return self.properties[object_type][-1]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHubSpot
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return  # quiet test output

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = urlsplit(self.path).path
        body_for_log: Any = None
        if raw and headers.get("content-type", "").startswith("application/json"):
            try:
                body_for_log = json.loads(raw)
            except ValueError:
                body_for_log = None
        try:
            status, payload, extra = self.fake.handle(self.command, self.path, headers, raw)
        except _Drop:
            self.fake._record(self.command, path, 0, body_for_log)  # status 0: no response was sent
            self.close_connection = True
            self.connection.close()
            return
        except _Reply as reply:
            status, payload, extra = reply.status, reply.body, reply.headers
        except Exception as exc:  # a bug in the fake must show as a 500, not a hung client
            status, payload, extra = 500, {"status": "error", "message": f"fake: {exc!r}"}, {}
        self.fake._record(self.command, path, status, body_for_log)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve


def iter_pages(results: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(results), size):
        yield results[start:start + size]
