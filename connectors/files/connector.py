"""The `files` connector: a folder of exports as a source, and a local journal as the CRM.

As a source it reads the folder described in `connectors.files.exports`, one page per
changed file (bounded pages for big files), with a cursor of each file's modification time
and size, so a sync reads only what changed since. As a delivery connector it is the
embedded default's CRM: every message routed to it is appended to the journal
(`handoff-journal.jsonl` beside the database unless `journal` says otherwise), once per
idempotency key.

    [connectors.files]
    folder = "exports/"              # the source folder (optional: no folder, no pull)
    journal = "crm-journal.jsonl"    # relative paths are beside the database
    source = "files"                 # source name for records that do not name their own
    targets = ["crm", "email", "chat", "webhook"]   # what it takes when that channel is not enabled
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

from marshmallow import Schema, fields, validate

from connectors.base import (
    DeliveryConnector,
    FieldInfo,
    Outbound,
    Page,
    PermanentError,
    PushResult,
    SourceConnector,
    TransientError,
)
from connectors.files.exports import ExportError, export_files, read_records, read_signals
from connectors.files.journal import Journal
from orchestrator.intake.records import Record

__all__ = ["DEFAULT_JOURNAL", "FilesConnector"]

DEFAULT_JOURNAL = "handoff-journal.jsonl"
PAGE_SIZE = 500


class _Config(Schema):
    folder = fields.String(load_default=None)
    journal = fields.String(load_default=DEFAULT_JOURNAL)
    source = fields.String(load_default="files", validate=validate.Length(min=1, max=40))
    targets = fields.List(fields.String(validate=validate.OneOf(["crm", "email", "chat", "webhook"])),
                          load_default=lambda: ["crm", "email", "chat", "webhook"])


class FilesConnector(SourceConnector, DeliveryConnector):
    slug = "files"
    title = "Files: a folder of exports, and a local CRM journal"
    config_schema = _Config
    default_enabled = True
    crm = True
    handles: ClassVar[frozenset[str]] = frozenset()  # every kind: it writes down whatever it is given
    max_batch = PAGE_SIZE

    @property
    def journal_path(self) -> Path:
        path = Path(self.config.get("journal") or DEFAULT_JOURNAL).expanduser()
        return path if path.is_absolute() else self.context.data_dir / path

    @property
    def folder(self) -> Path | None:
        folder = self.config.get("folder")
        return Path(folder).expanduser() if folder else None

    # -- delivery -----------------------------------------------------------------------------------

    def push(self, messages: Sequence[Outbound]) -> list[PushResult]:
        entries = [self._entry(message) for message in messages]
        try:
            remote_ids = self._journal().write(entries)
        except OSError as exc:  # a full disk or a permission: retried, never dropped
            raise TransientError(f"cannot write the journal: {exc.strerror or type(exc).__name__}") from None
        return [PushResult(message_id=m.id, outcome="delivered", remote_id=remote_id)
                for m, remote_id in zip(messages, remote_ids, strict=True)]

    def _journal(self) -> Journal:
        journal = getattr(self, "_journal_instance", None)
        if journal is None or journal.path != self.journal_path:
            journal = Journal(self.journal_path)
            self._journal_instance = journal
        return journal

    def _entry(self, message: Outbound) -> dict[str, Any]:
        return {
            "outbox_id": message.id, "idempotency_key": message.idempotency_key, "kind": message.kind,
            "target": message.target, "payload": dict(message.payload),
            "account": asdict(message.account) if message.account else None,
            "task": asdict(message.task) if message.task else None,
            "written_at": self.context.clock().isoformat(),
        }

    # -- source -------------------------------------------------------------------------------------

    def has_source(self) -> bool:
        return self.folder is not None

    def check(self) -> list[str]:
        problems = []
        folder = self.folder
        if folder is not None and not folder.is_dir():
            problems.append(f"folder {folder} does not exist")
        elif folder is not None and not export_files(folder):
            problems.append(f"folder {folder} holds no owners/accounts/contacts/deals/tasks/signals export")
        journal_dir = self.journal_path.parent
        if not journal_dir.is_dir():
            problems.append(f"journal folder {journal_dir} does not exist")
        return problems

    def pull(self, *, cursor: Mapping[str, Any] | None, full: bool = False) -> Iterator[Page]:
        folder = self.folder
        if folder is None:
            return
        if not folder.is_dir():
            raise PermanentError(f"folder {folder} does not exist")
        seen: dict[str, Any] = dict((cursor or {}).get("files", {})) if not full else {}
        for kind, path in export_files(folder):
            stat = path.stat()
            stamp = [stat.st_mtime_ns, stat.st_size]
            if seen.get(path.name) == stamp:
                continue
            try:
                yield from self._pages(kind, path, after={"files": {**seen, path.name: stamp}})
            except ExportError as exc:
                raise PermanentError(str(exc)) from None
            seen[path.name] = stamp

    def _pages(self, kind: str, path: Path, *, after: Mapping[str, Any]) -> Iterator[Page]:
        # The cursor moves only with a file's last page: a sync stopped halfway reads the file again.
        records: list[Record] = []
        signals: list[Mapping[str, Any]] = []
        rows = read_signals(path) if kind == "signal" else read_records(path, kind=kind,  # type: ignore[arg-type]
                                                                         source=self.config["source"])
        for row in rows:
            (signals if kind == "signal" else records).append(row)  # type: ignore[arg-type]
            if len(records) + len(signals) >= PAGE_SIZE:
                yield Page(records=records, signals=signals, cursor=None)
                records, signals = [], []
        yield Page(records=records, signals=signals, cursor=after)

    def describe_fields(self) -> dict[str, list[FieldInfo]]:
        """The columns the exports have (first row of each file)."""
        found: dict[str, list[FieldInfo]] = {}
        folder = self.folder
        if folder is None or not folder.is_dir():
            return found
        for kind, path in export_files(folder):
            if path.suffix == ".csv":
                header = path.open(encoding="utf-8-sig").readline().strip()
                found[kind] = [FieldInfo(name=name) for name in header.split(",") if name]
        return found
