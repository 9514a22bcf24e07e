"""The data dictionary: which fields of account, deal, owner, journey and signal a playbook may read.

The validator checks every dotted name in a condition or template against it, so that
`account.helth` or `signal.days_until_renewal` is a located error with a did-you-mean hint
instead of a journey that breaks when it runs. The built-in fields are those
`playbook/context.py` puts in the context; signal payload fields come from the signal catalog
(`catalog.py`) for the signal types the playbook reacts to; custom CRM attributes of account,
deal and contact are declared in a `signals.yaml` beside the playbooks (`attributes:`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.hints import closest
from orchestrator.playbook.catalog import Catalog, shipped_catalog
from orchestrator.playbook.expressions import ExpressionError, parse_expression
from orchestrator.playbook.findings import Finding, Severity
from orchestrator.playbook.locate import inner_position
from orchestrator.playbook.templates import TemplateError, compile_template
from orchestrator.playbook.yamlsafe import DocPath, Document, render_doc_path

__all__ = ["BUILT_IN", "Entity", "check_fields", "dictionary_rows"]

PERSON_FIELDS = ("name", "email", "role")


@dataclass(frozen=True)
class Entity:
    """A root of the context: its built-in fields, and which of them are people."""

    name: str
    fields: tuple[str, ...]
    people: tuple[str, ...] = ()
    open: bool = False  # fields come from outside (CRM attributes): unknown ones warn, typos fail


BUILT_IN: dict[str, Entity] = {
    "account": Entity("account", (
        "id", "name", "domain", "segment", "industry", "arr", "health", "stage", "stage_entered_at",
        "days_in_stage", "renewal_date", "days_to_renewal", "churned_at", "owner", "csm",
    ), people=("owner", "csm"), open=True),
    "deal": Entity("deal", (
        "id", "name", "amount", "stage", "kind", "close_date", "is_closed", "is_won", "owner",
    ), people=("owner",), open=True),
    "owner": Entity("owner", (*PERSON_FIELDS, "manager"), people=("manager",)),
    "journey": Entity("journey", (
        "id", "playbook_id", "status", "enrolled_at", "days_enrolled", "current_step", "signal_id",
    )),
}
SIGNAL_ENVELOPE = ("id", "type", "occurred_at", "source", "payload")


def dictionary_rows(catalog: Catalog | None = None) -> list[tuple[str, str, str]]:
    """(name, kind or label, where it comes from) for `handoff playbooks fields`."""
    catalog = catalog or shipped_catalog()
    rows: list[tuple[str, str, str]] = []
    for entity in BUILT_IN.values():
        rows += [(f"{entity.name}.{f}", "person" if f in entity.people else "", "built in") for f in entity.fields]
        rows += [(f"{entity.name}.{f}", spec.kind, spec.label)
                 for f, spec in catalog.attributes.get(entity.name, {}).items()]
    rows += [(f"signal.{f}", "", "every signal") for f in SIGNAL_ENVELOPE]
    for spec in catalog.signals.values():
        rows += [(f"signal.{f}", fs.kind, f"{spec.type}: {fs.label} ({fs.format})") for f, fs in spec.fields.items()]
    return rows


# -- the check --------------------------------------------------------------------------------


def _strings(value: Any, at: DocPath) -> Iterator[tuple[DocPath, str]]:
    if isinstance(value, str):
        yield at, value
    elif isinstance(value, dict):
        for key, sub in value.items():
            yield from _strings(sub, (*at, key))
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            yield from _strings(sub, (*at, index))


def _signal_types(doc: Any) -> set[str] | None:
    """The signal types `signal` can be in this playbook; None when any type can (a condition-only wait)."""
    types: set[str] = set()
    enroll = doc.get("enroll")
    if isinstance(enroll, dict) and isinstance(enroll.get("on"), str):
        types.add(enroll["on"])
    steps = doc.get("steps")
    for step in steps if isinstance(steps, list) else []:
        if isinstance(step, dict) and step.get("kind") == "wait":
            if not isinstance(step.get("for"), str):
                return None  # woken by whatever signal arrives for the account
            types.add(step["for"])
    return types


def check_fields(doc: Document, path: str, *, source: str, catalog: Catalog | None = None,
                 playbook: Any = None) -> list[Finding]:
    """Located findings for fields of account, deal, owner, journey and signal that do not exist.

    `playbook` is the playbook's data when `doc` is a named template it uses: the template is
    checked, at its own lines, against the signal types that playbook reacts to.
    """
    catalog = catalog or shipped_catalog()
    root = doc.value
    if not isinstance(root, dict):
        return []
    types = _signal_types(root if playbook is None else playbook)
    # Payload fields are checked only when every type the playbook reacts to is catalogued:
    # a type of the deployment's own that nobody described could carry anything.
    payload: dict[str, str] | None = None
    if types and all(catalog.knows(t) for t in types):
        payload = {name: t for t in sorted(types) for name in catalog.fields_of([t])}
    lines = source.splitlines()
    findings: list[Finding] = []
    for at, text in _strings(root, ()):
        key = at[-1] if at else ""
        references: frozenset[str]
        try:
            if key in ("when", "until") or _route_expression(root, at) or _health_value(at) \
                    or _health_where_type(root, at) is not None:
                references = parse_expression(text).references()
            elif "{{" in text or "{%" in text:
                references = compile_template(text).references()
            else:
                continue
        except (ExpressionError, TemplateError):
            continue  # the schema reports it
        read_types, read_payload = types, payload
        watched = _health_where_type(root, at)
        if watched is not None:  # a measure's filter reads the signals the measure counts
            read_types = {watched}
            read_payload = {name: watched for name in catalog.fields_of([watched])} if catalog.knows(watched) else None
        for reference in sorted(references):
            problem = _problem(reference, catalog=catalog, payload=read_payload, types=read_types)
            if problem is None:
                continue
            severity, message = problem
            line, column = _where(doc, at, text, reference, lines)
            findings.append(Finding(path, line, column, severity, "unknown-field", message, render_doc_path(at)))
    return findings


def _route_expression(root: dict[str, Any], at: DocPath) -> bool:
    """A route step's score, category and evidence are expressions, like conditions."""
    if len(at) != 3 or at[0] != "steps" or at[2] not in ("score", "category", "evidence"):
        return False
    steps = root.get("steps")
    index = at[1]
    return isinstance(steps, list) and isinstance(index, int) and isinstance(steps[index], dict) \
        and steps[index].get("kind") == "route"


def _health_value(at: DocPath) -> bool:
    """A health measure's `value` is an expression over the account, like a condition."""
    return len(at) == 4 and at[0] == "health" and at[1] == "measures" and at[3] == "value"


def _health_where_type(root: dict[str, Any], at: DocPath) -> str | None:
    """The signal type a health measure's `where` filters (None when `at` is not such a filter)."""
    if len(at) != 4 or at[:2] != ("health", "measures") or at[3] != "where" or not isinstance(at[2], int):
        return None
    health = root.get("health")
    measures = health.get("measures") if isinstance(health, dict) else None
    if not isinstance(measures, list) or at[2] >= len(measures) or not isinstance(measures[at[2]], dict):
        return None
    watched = measures[at[2]].get("on")
    return watched if isinstance(watched, str) else None


def _problem(reference: str, *, catalog: Catalog, payload: Mapping[str, str] | None,
             types: set[str] | None) -> tuple[Severity, str] | None:
    parts = reference.split(".")
    if len(parts) < 2:
        return None
    root, name = parts[0], parts[1]
    if root == "signal":
        if name == "payload":
            if len(parts) < 3:
                return None
            name = parts[2]
        elif name in SIGNAL_ENVELOPE:
            return None
        if payload is None or name in payload:
            return None
        shown = "signal.payload." if parts[1] == "payload" else "signal."
        close = closest(name, payload)
        hint = f' (did you mean "{shown}{close}"?)' if close else ""
        listed = ", ".join(sorted(payload)) or "no payload fields"
        message = f'"{reference}" is not a field of {_one_of(sorted(types or ()))} signals{hint}; they carry {listed}'
        if close:
            return "error", message
        # Not a typo of a catalogued field: perhaps one the sender adds that nobody catalogued yet.
        return "warning", f"{message} (add it to the type's fields in a signals.yaml if the sender sends it)"
    entity = BUILT_IN.get(root)
    if entity is None:
        return None
    declared = set(catalog.attributes.get(root, {})) if root in ("account", "deal") else set()
    known = set(entity.fields) | declared
    if name in known:
        if name in entity.people and len(parts) > 2 and parts[2] not in PERSON_FIELDS:
            close = closest(parts[2], PERSON_FIELDS)
            hint = f' (did you mean "{root}.{name}.{close}"?)' if close else ""
            return "error", f'"{reference}" is not a field of a person{hint}; a person has name, email and role'
        return None
    close = closest(name, known)
    hint = f' (did you mean "{root}.{close}"?)' if close else ""
    if entity.open and not close:
        return "warning", (f'"{reference}" is not a field Handoff knows on the {root}; if it is a custom CRM '
                           f"field, declare it under attributes.{root} in a signals.yaml beside the playbooks")
    listed = "" if close else f"; a {root} has {', '.join(sorted(known))}"
    return "error", f'"{reference}" is not a field of the {root}{hint}{listed}'


def _one_of(words: list[str]) -> str:
    return " or ".join(words)


def _where(doc: Document, at: DocPath, text: str, reference: str, lines: list[str]) -> tuple[int, int]:
    index = text.find(reference)
    if index < 0 and reference.startswith("signal."):
        index = text.find(reference.split(".")[-1])
    if index < 0:
        return doc.position(at)
    before = text[:index]
    line = before.count("\n") + 1
    column = index - (before.rfind("\n") + 1) + 1
    return inner_position(doc, at, (line, column), lines)
