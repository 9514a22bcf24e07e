"""Test connectors and a 'remote side' they write to: a JSON-lines file, idempotent on the message key.

The remote keeps two logs: `calls` (every push of every message, to count attempts) and
`records` (what the remote system holds: one line per idempotency key, as a CRM with an
external-id upsert would). Both are appended under an exclusive file lock, so several
worker processes can share one remote.
"""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from marshmallow import Schema, fields

from connectors.base import DeliveryConnector, Outbound, PermanentError, PushResult, TransientError
from connectors.registry import RegistryEntry


class Remote:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _locked(self, fn: Any) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return fn()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self, name: str) -> list[dict[str, Any]]:
        path = self.path.with_suffix(f".{name}.jsonl")
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _append(self, name: str, row: dict[str, Any]) -> None:
        with open(self.path.with_suffix(f".{name}.jsonl"), "a") as handle:
            handle.write(json.dumps(row) + "\n")

    def push(self, message: Outbound, *, worker: str) -> str:
        """Record a call, and the message once per key; returns the remote id."""
        def write() -> str:
            self._append("calls", {"key": message.idempotency_key, "worker": worker})
            held = {row["key"]: row["remote_id"] for row in self._read("records")}
            if message.idempotency_key in held:
                return held[message.idempotency_key]
            remote_id = f"R{len(held) + 1}"
            self._append("records", {"key": message.idempotency_key, "remote_id": remote_id, "kind": message.kind})
            return remote_id
        return self._locked(write)

    def calls(self) -> list[dict[str, Any]]:
        return self._locked(lambda: self._read("calls"))

    def records(self) -> list[dict[str, Any]]:
        return self._locked(lambda: self._read("records"))


class _Config(Schema):
    remote = fields.String(required=True)
    # ok | transient | permanent | rate_limited | die_before_push | die_after_push | crash
    mode = fields.String(load_default="ok")
    fail_first = fields.Integer(load_default=0)  # transient failures before success (per message attempts)
    worker = fields.String(load_default="w")
    marker = fields.String(load_default="")  # written when a die_* mode reaches its point of no return


class FakeCrm(DeliveryConnector):
    slug = "fakecrm"
    title = "Fake CRM (tests)"
    config_schema = _Config
    handles = frozenset({"crm.create_task", "crm.complete_task", "crm.update_field", "crm.create_note",
                         "customer.email", "notify.email"})
    max_batch = 3
    crm = True

    def push(self, messages: Sequence[Outbound]) -> list[PushResult]:
        remote = Remote(Path(self.config["remote"]))
        mode, worker = self.config["mode"], self.config["worker"]
        if mode == "permanent":
            raise PermanentError("FIELD_INTEGRITY_EXCEPTION: Subject too long")
        if mode == "crash":
            raise RuntimeError("a bug in the connector")
        results = []
        for message in messages:
            if mode == "rate_limited" and message.attempts == 0:
                results.append(PushResult(message_id=message.id, outcome="retry", error="429", retry_after=120))
                continue
            if message.attempts < self.config["fail_first"]:
                raise TransientError("503 Service Unavailable")
            if mode == "die_before_push":
                self._hang()
            remote_id = remote.push(message, worker=worker)
            if mode == "die_after_push":
                self._hang()  # the remote accepted; the response never comes back
            results.append(PushResult(message_id=message.id, outcome="delivered", remote_id=remote_id))
        return results

    def _hang(self) -> None:
        Path(self.config["marker"]).write_text("reached")
        time.sleep(600)


def registry() -> dict[str, RegistryEntry]:
    """The registry a test passes to deliver_due: the fake CRM, no entry point needed."""
    return {"fakecrm": RegistryEntry(slug="fakecrm", target="tests.delivery.fakes:FakeCrm", distribution=None,
                                     cls=FakeCrm)}
