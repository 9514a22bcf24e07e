"""The playbook language: YAML files RevOps write, compiled into immutable playbooks.

    load_playbook(path) -> Playbook               # raises PlaybookInvalid(findings)
    load_playbook_text(text, path) -> Playbook
    validate_paths(paths) -> list[Finding]         # files or folders; errors and warnings

Stages, one module each: yamlsafe (safe YAML with positions) → schema (marshmallow)
→ references (step ids, jumps) → compile (the model) → lint (decision rules, on the
flow graph of `flow`). `store` keeps applied versions; `jsonschema` describes the
format for editors.
"""

from orchestrator.playbook.findings import Finding, PlaybookInvalid
from orchestrator.playbook.loader import (
    check_text,
    load_playbook,
    load_playbook_text,
    validate_paths,
)
from orchestrator.playbook.model import Playbook

__all__ = [
    "Finding",
    "Playbook",
    "PlaybookInvalid",
    "check_text",
    "load_playbook",
    "load_playbook_text",
    "validate_paths",
]
