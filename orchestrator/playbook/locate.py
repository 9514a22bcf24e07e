"""Turn marshmallow's nested error messages into located findings."""

from __future__ import annotations

from typing import Any

from orchestrator.playbook.findings import Finding
from orchestrator.playbook.schema import (
    NOT_A_LIST,
    NOT_A_MAPPING,
    NULL,
    REQUIRED,
    Problem,
)
from orchestrator.playbook.yamlsafe import DocPath, Document, render_doc_path

__all__ = ["findings_from_messages", "inner_position", "value_at"]


def value_at(value: Any, path: DocPath) -> Any:
    """The raw value at `path`, or None when the path does not exist."""
    for part in path:
        if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):  # noqa: SIM114 - two shapes, clearer apart
            value = value[part]
        elif isinstance(value, dict) and isinstance(part, str) and part in value:
            value = value[part]
        else:
            return None
    return value


def findings_from_messages(
    messages: Any, *, doc: Document, source: str, path: str
) -> list[Finding]:
    """One finding per message, at the position of the value (or key) it is about."""
    out: list[Finding] = []
    _walk(messages, (), out, doc, source.splitlines(), path)
    return out


def _walk(node: Any, at: DocPath, out: list[Finding], doc: Document, lines: list[str], path: str) -> None:
    if isinstance(node, dict):
        for key, sub in node.items():
            _walk(sub, at if key == "_schema" else (*at, key), out, doc, lines, path)
    elif isinstance(node, list):
        for item in node:
            _walk(item, at, out, doc, lines, path)
    elif isinstance(node, str):
        out.append(_finding(node, at, doc, lines, path))


def _finding(message: str, at: DocPath, doc: Document, lines: list[str], path: str) -> Finding:
    rule = getattr(message, "rule", "schema")
    line, column = doc.position(at)
    key = at[-1] if at else ""
    if message == REQUIRED:
        line, column = doc.position(at[:-1])
        text = f'"{key}" is missing; it is required here'
    elif message == NULL:
        text = f'"{key}" is empty; give it a value'
    elif message == NOT_A_MAPPING:
        text = f"must be a mapping of keys and values, got {_kind(value_at(doc.value, at))}"
    elif message == NOT_A_LIST:
        text = f"must be a list, got {_kind(value_at(doc.value, at))}"
    else:
        text = str(message)
    if isinstance(message, Problem):
        if message.at_key:
            line, column = doc.key_position(at)
        elif message.inner:
            line, column = _inner_position(doc, at, message.inner, lines)
    return Finding(path, line, column, "error", rule, text, render_doc_path(at))


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _inner_position(
    doc: Document, at: DocPath, inner: tuple[int, int | None], lines: list[str]
) -> tuple[int, int]:
    """Where a problem inside a scalar (an expression) is, in the file."""
    span = doc.scalars.get(at)
    if span is None:
        return doc.position(at)
    inner_line, inner_column = inner
    offset = (inner_column or 1) - 1
    if span.style in (None, '"', "'") and span.single_line and inner_line == 1:
        quote = 1 if span.style else 0
        return span.line, span.column + quote + offset
    if span.style in ("|", ">"):
        # Block scalars start on the line after the indicator; keep the content's indent.
        line = span.line + inner_line
        if 0 < line <= len(lines):
            text = lines[line - 1]
            indent = len(text) - len(text.lstrip(" "))
            return line, indent + 1 + offset
    return span.line, span.column


inner_position = _inner_position
