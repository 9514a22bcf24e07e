"""A JSON Schema (Draft 2020-12) of the playbook format, for editors' completion.

It describes the shape; the validator (`handoff playbooks validate`) remains the
authority for everything a JSON Schema cannot say well: durations, expressions,
templates, jumps to existing steps, and the lint rules.
"""

from __future__ import annotations

from typing import Any

from orchestrator.playbook.actions import REGISTRY
from orchestrator.playbook.catalog import Catalog, shipped_catalog
from orchestrator.playbook.dictionary import dictionary_rows
from orchestrator.playbook.model import (
    BRIEF_SECTIONS,
    PERSON_REFERENCES,
    Oversight,
    Stage,
)
from orchestrator.playbook.schema import SIGNAL_TYPE, SLUG

__all__ = ["playbook_json_schema"]

SCHEMA_ID = "https://handoff.example/schemas/playbook.json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def _obj(properties: dict[str, Any], required: list[str] | None = None, description: str = "",
         **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = required
    if description:
        out["description"] = description
    out.update(extra)
    return out


def _text(description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "description": description}


def _step(kind: str, description: str, properties: dict[str, Any], required: list[str],
          **extra: Any) -> dict[str, Any]:
    common = {
        "id": _ref("slug") | {"description": "Unique step id, used by jumps and reports."},
        "kind": {"const": kind},
    }
    return _obj(common | properties, ["id", "kind", *required], description, **extra)


def _defs(catalog: Catalog) -> dict[str, Any]:
    action_names = sorted(REGISTRY)
    fields = sorted(dict.fromkeys(name for name, _, _ in dictionary_rows(catalog)))
    person = {
        "description": "A person: " + ", ".join(f"{k} ({v})" for k, v in PERSON_REFERENCES.items())
                       + ", or a person's email address.",
        "anyOf": [{"enum": list(PERSON_REFERENCES)}, {"type": "string", "pattern": "^[^@\\s]+@[^@\\s]+$"}],
    }
    action_call_properties = {
        "do": _ref("action"),
        "with": {"type": "object", "description": "The action's arguments; text may use {{ templates }}. "
                                                  "template: NAME fills subject and body (email) or text "
                                                  "(chat) from templates/NAME.yaml."},
    }
    jump = {
        "description": "Where to go: {goto: step-id} or {exit: true}.",
        "oneOf": [
            _obj({"goto": _ref("slug")}, ["goto"]),
            _obj({"exit": {"const": True}}, ["exit"]),
        ],
    }
    return {
        "slug": {"type": "string", "pattern": SLUG.pattern, "description": "Lowercase letters, digits, - and _."},
        "signal": {"type": "string", "pattern": SIGNAL_TYPE.pattern,
                   "description": 'A signal type, e.g. "deal.closed_won".',
                   # From the signal catalog, so an editor offers the types Handoff knows.
                   "examples": sorted(catalog.signals)},
        "duration": {"type": "string", "minLength": 1,
                     "description": 'A duration: "14d", "1h30m", "4 business hours", "2 business days".'},
        "expression": {"type": "string", "minLength": 1,
                       "description": "A condition over account, deal, signal, journey, owner and now, "
                                      'e.g. "deal.amount >= 10000 and account.segment in [\\"mid\\"]". '
                                      "Fields: " + ", ".join(fields),
                       # The data dictionary's fields, offered as completions.
                       "examples": fields},
        "template": {"type": "string", "description": "Text with {{ placeholders }} over account, deal, "
                                                      "signal, journey, owner and now.",
                     "examples": [f"{{{{ {name} }}}}" for name in fields]},
        "action": {"enum": action_names, "description": "An action from Handoff's registry: "
                   + "; ".join(f"{n}: {REGISTRY[n].description}" for n in action_names)},
        "person": person,
        "jump": jump,
        "actionCall": _obj(action_call_properties, ["do"], "An action and its arguments."),
        "risk": _obj({"error_cost": {"enum": ["low", "high"], "description": "Cost of a wrong output."},
                      "correction": {"enum": ["fast", "slow"], "description": "How fast a wrong output is corrected."}},
                     ["error_cost", "correction"], "The cost of this step getting it wrong."),
        "assign": _obj(
            {"to": _ref("person"),
             "role": _ref("slug") | {"description": "Pick one active person with this role."},
             "strategy": {"enum": ["round_robin", "least_loaded"],
                          "description": "How to pick within the role (least_loaded is capacity-aware)."},
             "fallback": _ref("assign")},
            None, "Who gets the task: `to` a person, or a `role`; never a team.",
            anyOf=[{"required": ["to"]}, {"required": ["role"]}],
        ),
        "escalation": _obj(
            {"at": {"type": "string", "pattern": "^\\s*(ack|due)\\s*(\\+\\s*.+)?$",
                    "description": 'When: "ack", "due" or e.g. "due + 1 business day".'},
             "notify": _ref("person"),
             "reassign": _ref("assign"),
             "raise_priority": {"const": True}},
            ["at"], "One rung of the escalation chain: notify, reassign or raise priority.",
            oneOf=[{"required": ["notify"]}, {"required": ["reassign"]}, {"required": ["raise_priority"]}],
        ),
        "sla": _obj(
            {"ack": _ref("duration"), "due": _ref("duration"),
             "calendar": _ref("slug") | {"description": "Business calendar; default: the owner's."},
             "escalate": {"type": "array", "items": _ref("escalation")}},
            ["due"], "Acknowledge and due times in business time, with the escalation chain.",
        ),
        "task": _obj(
            {"title": _ref("template"), "recommend": _ref("template"),
             "brief": {"type": "array", "items": {"enum": list(BRIEF_SECTIONS)},
                       "description": "Brief sections, in order."}},
            ["title", "recommend"], "What the person sees in their CRM task.",
        ),
    }


def _steps() -> list[dict[str, Any]]:
    human_work = {
        "assign": _ref("assign"), "task": _ref("task"), "sla": _ref("sla"),
        "estimate_minutes": {"type": "integer", "minimum": 1, "description": "Human effort, for simulation."},
    }
    return [
        _step("automated", "The system acts; oversight says how a person watches it.", {
            "oversight": {"enum": [o.value for o in Oversight]},
            "risk": _ref("risk"),
            "do": _ref("action"),
            "with": {"type": "object"},
            "override": _obj({"window": _ref("duration"), "compensate": _ref("actionCall")}, None,
                             "on_the_loop: how long the owner may override, and what undoes the action."),
            "approval": _obj({"assign": _ref("assign"), "sla": _ref("sla")}, ["assign", "sla"],
                             "in_the_loop: who approves, by when."),
            "on_reject": _ref("jump"),
        }, ["oversight", "do"]),
        _step("human", "A task for a person, with a brief and an SLA.", human_work, ["assign", "task", "sla"]),
        _step("hybrid", "The system drafts; a person reviews and publishes.", human_work | {
            "draft": {"anyOf": [_ref("template"), _obj({"template": {
                "type": "string", "description": "A named template in the templates/ folder beside the playbooks; "
                                                 "its body is the draft."}}, ["template"],
                "A named template.")]},
            "drafter": {"enum": ["template", "llm"], "description": "Who writes the draft: the template "
                        "(default), or an OpenAI-compatible endpoint (HANDOFF_LLM_*) with the template as "
                        "instructions, falling back to the template. A person reviews it either way."},
            "publish": _ref("actionCall"),
            "risk": _ref("risk"),
            "oversight": {"const": Oversight.IN_THE_LOOP.value},
        }, ["draft", "assign", "sla"]),
        _step("wait", "Wait for a signal and/or a condition, up to a timeout.", {
            "for": _ref("signal"), "until": _ref("expression"),
            "timeout": _ref("duration"), "on_timeout": _ref("jump"),
        }, ["timeout", "on_timeout"], anyOf=[{"required": ["for"]}, {"required": ["until"]}]),
        _step("branch", "Ordered rules; the first match wins; no match goes to the exception queue.", {
            "rules": {"type": "array", "minItems": 1, "items": _obj(
                {"when": _ref("expression"), "goto": _ref("slug"), "exit": {"const": True}}, ["when"],
                oneOf=[{"required": ["goto"]}, {"required": ["exit"]}])},
            "otherwise": _ref("jump"),
        }, ["rules"]),
        _step("route", "Extract-decide-route: a confident decision of a listed category goes its automated "
                       "way; a doubtful one, or a category not listed, goes to a person with its evidence.",
              human_work | {
            "score": _ref("expression") | {"description": "The confidence (0 to 1), e.g. signal.confidence."},
            "category": _ref("expression") | {"description": "The decided category, e.g. signal.category."},
            "evidence": _ref("expression") | {"description": "What the decision rests on, shown to a person."},
            "scorer": _obj({"text": _ref("template"),
                            "keywords": {"type": "object", "additionalProperties": {
                                "type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}}},
                           ["text", "keywords"], "Score the text by keyword hits per category."),
            "threshold": {"type": "number", "minimum": 0, "maximum": 1,
                          "description": "At or above it, a listed category goes automatically."},
            "automated": {"type": "object", "minProperties": 1, "additionalProperties": _ref("jump"),
                          "description": "Each category the automation handles, and where its path starts."},
            "on_human": _ref("jump") | {"description": "Where a person's own decision continues; "
                                                       "default: the next step."},
        }, ["threshold", "automated", "assign", "task", "sla"],
              oneOf=[{"required": ["scorer"]}, {"required": ["score", "category"]}]),
        _step("split", "A play experiment: each account goes down one variant, by a stable hash of its id.", {
            "experiment": _ref("slug") | {"description": "The experiment's name (default: the step id)."},
            "variants": {"type": "array", "minItems": 2, "items": _obj(
                {"name": _ref("slug"), "weight": {"type": "integer", "minimum": 1},
                 "goto": _ref("slug"), "exit": {"const": True}}, ["name", "weight"],
                oneOf=[{"required": ["goto"]}, {"required": ["exit"]}])},
        }, ["variants"]),
        _step("goto", "Jump to another step.", {"to": _ref("slug")}, ["to"]),
        _step("exit", "End the journey.", {"reason": {"type": "string"}}, []),
        _step("set_stage", "Move the account to another journey stage.",
              {"stage": {"enum": [s.value for s in Stage]}}, ["stage"]),
    ]


def playbook_json_schema(catalog: Catalog | None = None) -> dict[str, Any]:
    """The JSON Schema document, as a dict ready for json.dumps; signal types and field names for
    completion come from the catalog (default: the shipped one)."""
    catalog = catalog or shipped_catalog()
    step_kinds = _steps()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Handoff playbook",
        "description": "A revenue-journey playbook: an enrollment trigger and steps. "
                       "Validate with `handoff playbooks validate`.",
        **_obj({
            "id": _ref("slug"),
            "name": _text("Name shown to people."),
            "description": {"type": "string"},
            "stage": {"enum": [s.value for s in Stage], "description": "The journey stage this playbook serves."},
            "maintainer": {"type": "string", "pattern": "@", "description": "Email of who reviews it."},
            "review_every": _ref("duration"),
            "reviewed_on": {"type": "string", "format": "date",
                            "description": "When the playbook was last reviewed (YYYY-MM-DD); without it, the "
                                           "file's last change in git counts."},
            "enroll": _obj({"on": _ref("signal"), "when": _ref("expression"),
                            "once_per": {"enum": ["account", "deal", "signal"]},
                            "max_age": _ref("duration")}, ["on"],
                           "Which signal enrolls an account, and when."),
            "exit_on": {"type": "array", "items": _ref("signal"),
                        "description": "Signals that end the journey."},
            "limits": _obj({"customer_touches": {"type": "string", "pattern": "^\\s*[0-9]+\\s+per\\s+.+$",
                                                 "description": 'e.g. "2 per 7d".'}}),
            "sensitive_signals": {"type": "array", "items": _ref("signal"),
                                  "description": "Signals that open a protected human zone."},
            "monitors": {"type": "array", "description": "Watches over each account's signals; a firing "
                         "sends an `emit` signal once per account and window.", "items": _obj({
                "id": _ref("slug"),
                "on": _ref("signal") | {"description": "Aggregate this signal type per window."},
                "absent": _ref("signal") | {"description": "Fire when this type has not arrived `for` a while."},
                "measure": {"type": "string", "pattern": "^\\s*(count|sum|avg|min|max)\\s*(\\(.+\\))?\\s*$",
                            "description": 'count, or sum/avg/min/max of a payload field: "avg(active_users)".'},
                "over": _ref("duration"), "for": _ref("duration"),
                "when": {"type": "string", "minLength": 1,
                         "description": "A condition over value, previous, change (percent) and count."},
                "emit": _ref("signal"),
            }, ["id", "emit"], oneOf=[{"required": ["on", "over", "when"]}, {"required": ["absent", "for"]}])},
            "health": _obj({
                "imported": {"type": "string", "pattern": "^account\\.[a-z_][a-z0-9_]*$",
                             "description": "An account field the CRM fills (e.g. account.health from "
                                            "Health_Score__c): the score of every account that has one."},
                "dropped": _obj({"by": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                                 "below": {"type": "number", "minimum": 0, "maximum": 100}},
                                description="When a fall sends health.dropped: by points from the peak, or "
                                            "below a threshold."),
                "measures": {"type": "array", "items": _obj({
                    "id": _ref("slug"), "label": _text("How briefs name the measure."),
                    "weight": {"type": "number", "exclusiveMinimum": 0},
                    "worst": {"type": "number", "description": "At or beyond this the measure scores 0."},
                    "best": {"type": "number", "description": "At or beyond this it scores its full weight."},
                    "on": _ref("signal"), "over": _ref("duration"),
                    "measure": {"type": "string", "pattern": "^\\s*(count|sum|avg|min|max)\\s*(\\(.+\\))?\\s*$"},
                    "read": {"enum": ["value", "change", "previous", "count"]},
                    "where": _ref("expression"), "value": _ref("expression"),
                    "since": _ref("signal") | {"description": "Days since the account's newest signal of this type."},
                }, ["id", "weight", "worst", "best"], oneOf=[{"required": ["on", "over"]}, {"required": ["value"]},
                                                              {"required": ["since"]}])},
            }, description="The account health score: weighted, bounded measures (account.health)."),
            "steps": {"type": "array", "minItems": 1, "items": {
                "type": "object",
                "required": ["id", "kind"],
                "properties": {"kind": {"enum": [s["properties"]["kind"]["const"] for s in step_kinds]}},
                # if/then per kind gives editors the right completions once `kind` is typed.
                "allOf": [{"if": {"properties": {"kind": {"const": s["properties"]["kind"]["const"]}}},
                           "then": s} for s in step_kinds],
            }},
        }, ["id", "name", "stage", "maintainer", "enroll", "steps"]),
        "$defs": _defs(catalog),
    }
