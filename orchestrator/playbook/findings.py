"""Findings: one located problem in a playbook file, as validate and lint report it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]

__all__ = ["Finding", "PlaybookInvalid", "Severity", "sort_findings"]


@dataclass(frozen=True)
class Finding:
    """A problem at `path:line:column`; `doc_path` says where inside the document."""

    path: str
    line: int
    column: int
    severity: Severity
    rule: str
    message: str
    doc_path: str = ""

    def __str__(self) -> str:
        where = f"{self.doc_path}: " if self.doc_path else ""
        return f"{self.path}:{self.line}:{self.column}: {self.severity}: [{self.rule}] {where}{self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """File order, then position, then rule: stable output for people and golden tests."""
    return sorted(findings, key=lambda f: (f.path, f.line, f.column, f.rule, f.message))


class PlaybookInvalid(Exception):
    """A playbook has errors; `findings` lists all of them (warnings included)."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        errors = [f for f in findings if f.is_error]
        super().__init__("\n".join(str(f) for f in errors) or "invalid playbook")
