"""The CRM journal: every write that would have reached the CRM, as JSON lines in one local file.

Idempotent on the message's key, like a CRM upsert by external id: a message delivered
again (its worker died before recording the first delivery) is not written twice. Several
processes may append at once: each append happens under an exclusive lock on the file,
after reading what other processes appended since.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Journal"]


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, str] = {}  # idempotency key -> remote id (the journal line number)
        self._offset = 0
        self._lines = 0
        self._torn = False

    def write(self, entries: Sequence[Mapping[str, Any]]) -> list[str]:
        """Append the entries whose key is new; the remote id of each entry (old or new), in order."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                self._catch_up(handle)
                ids: list[str] = []
                new: list[bytes] = []
                for entry in entries:
                    key = str(entry["idempotency_key"])
                    if key not in self._keys:
                        if self._torn:  # end the torn line so the first new entry stands on its own
                            new.append(b"\n")
                            self._lines += 1
                            self._torn = False
                        self._lines += 1
                        self._keys[key] = f"journal:{self._lines}"
                        new.append(json.dumps(entry, sort_keys=True, default=str).encode("utf-8") + b"\n")
                    ids.append(self._keys[key])
                if new:
                    handle.seek(0, os.SEEK_END)
                    handle.write(b"".join(new))
                    handle.flush()
                    os.fsync(handle.fileno())  # delivered means on disk
                    self._offset = handle.tell()
                return ids
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _catch_up(self, handle: Any) -> None:
        handle.seek(0, os.SEEK_END)
        if handle.tell() < self._offset:  # the file was replaced or truncated: read it again
            self._keys, self._offset, self._lines = {}, 0, 0
        handle.seek(self._offset)
        self._torn = False
        for raw in handle:
            if not raw.endswith(b"\n"):
                self._torn = True  # a torn last line (a crash mid-write) is not a delivery
                break
            self._offset += len(raw)
            self._lines += 1
            try:
                key = json.loads(raw).get("idempotency_key")
            except (json.JSONDecodeError, AttributeError):
                continue
            if key is not None:
                self._keys.setdefault(str(key), f"journal:{self._lines}")

    def entries(self) -> list[dict[str, Any]]:
        """Everything in the journal (for tests and `handoff outbox show`)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
