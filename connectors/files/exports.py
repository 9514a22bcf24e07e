"""Reading a folder of exports: JSON or CSV files of owners, accounts, contacts, deals, tasks, signals.

One file per kind, named after it: `owners.json` or `owners.csv`, `accounts.json`, ... and
`signals.json`, `signals.jsonl` or `signals.csv`. A record names itself either with
`external_ids` (`{"salesforce": "001...", "hubspot": "7001"}`: the first is its own, the
others are linked too) or with `external_id` (and optionally `source`, default the
connector's source name). References: `owner`, `csm`, `manager` are an email (contains
`@`) or an external id; a contact's or deal's `account` is an external id, or use
`account_domain`. Accounts in JSON may nest their `contacts` and `deals` (the bundled
sample data does). In CSV, `attributes.NAME` columns fill `attributes`, a `deleted` column
marks deletions, and a signal's `payload` column holds JSON.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from orchestrator.intake.records import Record, RecordKind

__all__ = ["KIND_FILES", "ExportError", "export_files", "read_records", "read_signals"]

KIND_FILES: tuple[tuple[RecordKind, str], ...] = (
    ("owner", "owners"), ("account", "accounts"), ("contact", "contacts"), ("deal", "deals"), ("task", "tasks"))
_REFERENCE_FIELDS = {"owner": "owner", "csm": "owner", "manager": "owner"}
_NOT_FIELDS = {"external_ids", "external_id", "source", "deleted", "contacts", "deals", "account_domain"}


class ExportError(ValueError):
    """A file in the folder cannot be read; the message names the file and line."""


def export_files(folder: Path) -> list[tuple[str, Path]]:
    """(kind or "signal", path) for every export file in `folder`, in dependency order."""
    found: list[tuple[str, Path]] = []
    for kind, stem in KIND_FILES:
        for suffix in (".json", ".csv"):
            if (folder / f"{stem}{suffix}").is_file():
                found.append((kind, folder / f"{stem}{suffix}"))
    for suffix in (".json", ".jsonl", ".csv"):
        if (folder / f"signals{suffix}").is_file():
            found.append(("signal", folder / f"signals{suffix}"))
    return found


def read_records(path: Path, *, kind: RecordKind, source: str) -> Iterator[Record]:
    """The records of one export file (nested contacts and deals of accounts included)."""
    for line, row in _rows(path):
        try:
            yield from _records(kind, row, source=source)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ExportError(f"{path.name}:{line}: {exc}") from None


def read_signals(path: Path) -> Iterator[Mapping[str, Any]]:
    """Signal dicts in the shape `intake.signals.ingest` takes (validated there, not here)."""
    for line, row in _rows(path):
        if path.suffix == ".csv":
            signal: dict[str, Any] = {"type": row.get("type"), "occurred_at": row.get("occurred_at")}
            if row.get("account_domain"):
                signal["account"] = {"domain": row["account_domain"]}
            elif row.get("account_external_id"):
                signal["account"] = {"source": row.get("account_source") or "files",
                                     "external_id": row["account_external_id"]}
            if row.get("dedupe_key"):
                signal["dedupe_key"] = row["dedupe_key"]
            try:
                signal["payload"] = json.loads(row["payload"]) if row.get("payload") else {}
            except json.JSONDecodeError:
                raise ExportError(f"{path.name}:{line}: payload is not JSON") from None
            yield signal
        else:
            yield row


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        if path.suffix == ".csv":
            with path.open(newline="", encoding="utf-8-sig") as handle:
                for number, row in enumerate(csv.DictReader(handle), start=2):
                    yield number, _csv_row(row)
        elif path.suffix == ".jsonl":
            with path.open(encoding="utf-8") as handle:
                for number, text in enumerate(handle, start=1):
                    if text.strip():
                        yield number, _object(json.loads(text), path, number)
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, list):
                raise ExportError(f"{path.name}: expected a JSON array of objects")
            for number, row in enumerate(data, start=1):
                yield number, _object(row, path, number)
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path.name}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise ExportError(f"{path.name}: not UTF-8 text") from None
    except csv.Error as exc:
        raise ExportError(f"{path.name}: not valid CSV ({exc})") from None


def _object(row: Any, path: Path, number: int) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise ExportError(f"{path.name}:{number}: expected an object")
    return row


def _csv_row(row: Mapping[str, Any]) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for key, value in row.items():
        if key is None:
            continue  # more cells than headers
        value = value if value != "" else None
        if key.startswith("attributes."):
            if value is not None:
                attributes[key.removeprefix("attributes.")] = value
        else:
            plain[key] = value
    if attributes:
        plain["attributes"] = attributes
    return plain


def _records(kind: RecordKind, row: Mapping[str, Any], *, source: str,
             account: Mapping[str, Any] | None = None) -> Iterator[Record]:
    own_source, external_id, also = _ids(row, source=source)
    fields = {key: value for key, value in row.items() if key not in _NOT_FIELDS}
    for name in _REFERENCE_FIELDS:
        value = fields.get(name)
        if isinstance(value, str):
            fields[name] = {"email": value} if "@" in value else {"source": own_source, "external_id": value}
    if kind in ("contact", "deal"):
        if account is not None:
            fields["account"] = account
        elif row.get("account_domain"):
            fields["account"] = {"domain": row["account_domain"]}
        elif isinstance(fields.get("account"), str):
            fields["account"] = {"source": own_source, "external_id": fields["account"]}
    yield Record(kind=kind, source=own_source, external_id=external_id, fields=fields,
                 deleted=_truthy(row.get("deleted")), also=also)
    if kind == "account":
        reference = ({"domain": row["domain"]} if row.get("domain")
                     else {"source": own_source, "external_id": external_id})
        for contact in row.get("contacts") or []:
            yield from _records("contact", contact, source=source, account=reference)
        for deal in row.get("deals") or []:
            yield from _records("deal", deal, source=source, account=reference)


def _ids(row: Mapping[str, Any], *, source: str) -> tuple[str, str, dict[str, str]]:
    ids = row.get("external_ids")
    if isinstance(ids, Mapping) and ids:
        pairs = [(str(key), str(value)) for key, value in ids.items() if value]
        if pairs:
            return pairs[0][0], pairs[0][1], dict(pairs[1:])
    external_id = row.get("external_id") or row.get("id")
    return str(row.get("source") or source), str(external_id) if external_id else "", {}


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes", "y"}
    return bool(value)
