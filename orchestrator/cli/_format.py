"""How the CLI shows times and tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from tabulate import tabulate


def when(at: datetime | None) -> str:
    """`2026-11-23 14:00Z`, or `-` for no time."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ") if at is not None else "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Aligned plain columns, as text (ids and numbers are not re-aligned as numbers)."""
    return tabulate(rows, headers=headers, tablefmt="plain", disable_numparse=True).splitlines()
