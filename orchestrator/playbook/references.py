"""Cross-references between steps: unique step ids, and jumps to steps that exist.

Checked on the raw document, not the schema's output, so that a wrong jump target is
reported in the same run as a type error somewhere else in the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from orchestrator.playbook.findings import Finding
from orchestrator.playbook.locate import value_at
from orchestrator.playbook.schema import SLUG, did_you_mean
from orchestrator.playbook.yamlsafe import DocPath, Document, render_doc_path

__all__ = ["check_references", "jump_paths"]


def jump_paths(step: Any, index: int) -> Iterator[DocPath]:
    """Document paths of every step id this step may jump to."""
    base: DocPath = ("steps", index)
    yield (*base, "to")
    yield (*base, "on_timeout", "goto")
    yield (*base, "on_reject", "goto")
    yield (*base, "otherwise", "goto")
    yield (*base, "on_human", "goto")
    variants = step.get("variants") if isinstance(step, dict) and step.get("kind") == "split" else None
    if isinstance(variants, list):
        for variant_index in range(len(variants)):
            yield (*base, "variants", variant_index, "goto")
    automated = step.get("automated") if isinstance(step, dict) and step.get("kind") == "route" else None
    if isinstance(automated, dict):
        for category in automated:
            yield (*base, "automated", category, "goto")
    rules = step.get("rules") if isinstance(step, dict) else None
    if isinstance(rules, list):
        for rule_index in range(len(rules)):
            yield (*base, "rules", rule_index, "goto")


def check_references(doc: Document, path: str) -> list[Finding]:
    """Duplicate step ids and jumps to unknown steps, located."""
    steps = value_at(doc.value, ("steps",))
    if not isinstance(steps, list):
        return []
    findings: list[Finding] = []
    first_seen: dict[str, int] = {}
    for index, step in enumerate(steps):
        step_id = step.get("id") if isinstance(step, dict) else None
        if not isinstance(step_id, str):
            continue
        if step_id in first_seen:
            where: DocPath = ("steps", index, "id")
            line, column = doc.position(where)
            first_line = doc.position(("steps", first_seen[step_id], "id"))[0]
            findings.append(Finding(
                path, line, column, "error", "step-id",
                f'the step id "{step_id}" is already used at line {first_line}; step ids must be unique',
                render_doc_path(where),
            ))
        else:
            first_seen[step_id] = index
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        if step.get("kind") not in (None, "goto"):
            # "to" is a person on other kinds' assignments, never a jump; only goto's is.
            paths = [p for p in jump_paths(step, index) if p[-1] != "to"]
        else:
            paths = list(jump_paths(step, index))
        for where in paths:
            target = value_at(doc.value, where)
            if not isinstance(target, str) or not SLUG.match(target) or target in first_seen:
                continue
            line, column = doc.position(where)
            findings.append(Finding(
                path, line, column, "error", "unknown-step",
                f'there is no step "{target}" in this playbook{did_you_mean(target, first_seen)}',
                render_doc_path(where),
            ))
    return findings
