"""The playbook format as marshmallow schemas: structure, types and leaf values.

Loading a raw document through `PlaybookSchema` returns plain dicts whose leaves are
already parsed (Duration, Expression, Template); `compile.py` turns those into the
immutable model. Error messages are addressed to RevOps: a message is either plain
text (rule `schema`) or a `Problem`, which also carries its rule id and, for
expressions and templates, where inside the value the problem is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any, ClassVar, Self

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validates_schema

from orchestrator.durations import Duration, DurationError, parse_duration
from orchestrator.hints import closest
from orchestrator.playbook.actions import REGISTRY
from orchestrator.playbook.expressions import ExpressionError, check_roots, parse_expression
from orchestrator.playbook.model import (
    BRIEF_SECTIONS,
    CONTEXT_ROOTS,
    HEALTH_READS,
    MEASURES,
    MONITOR_ROOTS,
    PERSON_REFERENCES,
    Oversight,
    Stage,
)
from orchestrator.playbook.templates import TemplateError, check_variables, compile_template

# Markers for marshmallow's own messages; `errors.py` turns them into sentences that
# can name the key, which marshmallow's message templates cannot.
REQUIRED = "@required"
NULL = "@null"
NOT_A_MAPPING = "@mapping"
NOT_A_LIST = "@list"

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")
SIGNAL_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
ESCALATE_AT = re.compile(r"^\s*(ack|due)\s*(?:\+\s*(.+?))?\s*$")
TOUCHES = re.compile(r"^\s*(\d+)\s+per\s+(.+?)\s*$")
# Local parts of shared inboxes: a task sent there belongs to nobody in particular.
SHARED_INBOXES = frozenset([
    "team", "all", "sales", "support", "success", "cs", "help", "info", "hello", "contact", "ops",
    "revops", "admin", "group", "inbox", "noreply", "no-reply", "marketing",
])


class Problem(str):
    """A message with its rule id and an optional (line, column) inside the value."""

    rule: str
    inner: tuple[int, int | None] | None
    at_key: bool

    def __new__(
        cls, message: str, rule: str = "schema", *, inner: tuple[int, int | None] | None = None,
        at_key: bool = False,
    ) -> Self:
        made = super().__new__(cls, message)
        made.rule = rule
        made.inner = inner
        made.at_key = at_key
        return made


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' for a close match, else ''."""
    close = closest(word, choices)
    return f' (did you mean "{close}"?)' if close else ""


def _one_of(words: Iterable[str]) -> str:
    items = list(words)
    return ", ".join(items[:-1]) + f" or {items[-1]}" if len(items) > 1 else items[0]


# -- leaf fields ----------------------------------------------------------------------


class _Field(fields.Field):
    default_error_messages = {"required": REQUIRED, "null": NULL}  # noqa: RUF012 - marshmallow's own attribute


class Text(_Field):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise ValidationError(f"must be text, got {_shown(value)}")
        if not value.strip():
            raise ValidationError("is blank; write something here")
        return value


class Slug(_Field):
    """Ids and role names: lowercase letters, digits, - and _."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str) or not SLUG.match(value):
            raise ValidationError(
                f"{_shown(value)} is not a valid name; use lowercase letters, digits, - and _ "
                f'(e.g. "kickoff-call")'
            )
        return value


class SignalType(_Field):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str) or not SIGNAL_TYPE.match(value):
            raise ValidationError(
                f'{_shown(value)} is not a signal type; signal types look like "deal.closed_won"'
            )
        return value


class Whole(_Field):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValidationError(f"must be a whole number above zero, got {_shown(value)}")
        return value


class Flag(_Field):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            hint = ""
            if isinstance(value, str) and value.lower() in ("yes", "no", "on", "off", "y", "n"):
                hint = f' (in playbooks "{value}" is text; write true or false)'
            raise ValidationError(f"must be true or false, got {_shown(value)}{hint}")
        return value


class Choice(_Field):
    def __init__(self, choices: Iterable[str], what: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.choices = tuple(choices)
        self.what = what

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if value not in self.choices or not isinstance(value, str):
            hint = did_you_mean(value, self.choices) if isinstance(value, str) else ""
            raise ValidationError(
                f"{_shown(value)} is not a {self.what}; use {_one_of(self.choices)}{hint}"
            )
        return value


class DurationField(_Field):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Duration:
        try:
            return parse_duration(value)
        except DurationError as error:
            raise ValidationError(Problem(str(error), "duration")) from None


class WallClockDurationField(DurationField):
    """A signal's age is wall-clock time: "30d", not "30 business days"."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Duration:
        duration = super()._deserialize(value, attr, data, **kwargs)
        if duration.is_business:
            raise ValidationError(Problem(
                f'"{duration.text}" counts business time; a signal\'s age is wall-clock time, e.g. "30d"',
                "duration"))
        return duration


class ExpressionField(_Field):
    """A condition, parsed now so a typo is found before the playbook runs."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool):
            raise ValidationError(
                Problem(f"must be a condition such as \"deal.amount >= 10000\", got {_shown(value)}",
                        "expression")
            )
        if isinstance(value, (int, float)) or not isinstance(value, str):
            raise ValidationError(Problem(f"must be a condition, got {_shown(value)}", "expression"))
        try:
            expression = parse_expression(value)
        except ExpressionError as error:
            raise ValidationError(
                Problem(error.message, "expression", inner=(error.line, error.column))
            ) from None
        problems = check_roots(expression, CONTEXT_ROOTS)
        if problems:
            raise ValidationError([Problem(message, "expression") for message in problems])
        return expression


class TemplateField(_Field):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        return parse_template(value)


def parse_template(value: Any, roots: frozenset[str] = CONTEXT_ROOTS) -> Any:
    """A compiled template, or ValidationError with a `template` Problem."""
    if not isinstance(value, str):
        raise ValidationError(Problem(f"must be text, got {_shown(value)}", "template"))
    try:
        template = compile_template(value)
    except TemplateError as error:
        inner = (error.line, error.column) if error.line else None
        raise ValidationError(Problem(error.message, "template", inner=inner)) from None
    problems = check_variables(template, roots)
    if problems:
        raise ValidationError([Problem(message, "template") for message in problems])
    return template


class PersonRef(_Field):
    """Who: account.owner, deal.owner, owner.manager... or a person's email address."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(Problem(f"must name a person, got {_shown(value)}", "named-owner"))
        if value in PERSON_REFERENCES:
            return value
        if "@" in value:
            local = value.split("@", 1)[0].lower()
            if local in SHARED_INBOXES:
                raise ValidationError(Problem(
                    f'"{value}" looks like a shared inbox; a task needs one named person '
                    "(use a person's address, account.owner, or a role)",
                    "named-owner",
                ))
            return value
        raise ValidationError(Problem(
            f'"{value}" does not name a person; use {_one_of(sorted(PERSON_REFERENCES))}, '
            f"a person's email address, or a role{did_you_mean(value, PERSON_REFERENCES)}",
            "named-owner",
        ))


class ActionName(_Field):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str) or value not in REGISTRY:
            hint = did_you_mean(value, REGISTRY) if isinstance(value, str) else ""
            raise ValidationError(Problem(
                f"{_shown(value)} is not an action Handoff knows{hint}; "
                f"see `handoff playbooks schema` for the list",
                "action",
            ))
        return value


class Args(_Field):
    """An action's arguments; text arguments are templates."""

    roots = CONTEXT_ROOTS

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ValidationError(NOT_A_MAPPING)
        out: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for name, arg in value.items():
            try:
                out[name] = parse_template(arg, self.roots) if isinstance(arg, str) else arg
            except ValidationError as error:
                errors[name] = error.messages
        if errors:
            raise ValidationError(errors)
        return out


class EscalateAt(_Field):
    """"due", "ack", or "due + 1 business day"."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> tuple[str, Any]:
        match = ESCALATE_AT.match(value) if isinstance(value, str) else None
        if not match:
            raise ValidationError(
                f'{_shown(value)} is not a point in the SLA; use "ack", "due", or e.g. '
                f'"due + 1 business day"'
            )
        offset = None
        if match.group(2):
            try:
                offset = parse_duration(match.group(2))
            except DurationError as error:
                raise ValidationError(Problem(str(error), "duration")) from None
        return match.group(1), offset


class TouchLimitField(_Field):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> tuple[int, Duration]:
        match = TOUCHES.match(value) if isinstance(value, str) else None
        if not match or int(match.group(1)) <= 0:
            raise ValidationError(f'{_shown(value)} is not a limit; write e.g. "2 per 7d"')
        try:
            return int(match.group(1)), parse_duration(match.group(2))
        except DurationError as error:
            raise ValidationError(Problem(str(error), "duration")) from None


class ListOf(fields.List):
    default_error_messages = {"invalid": NOT_A_LIST, "required": REQUIRED, "null": NULL}  # noqa: RUF012 - marshmallow's own attribute

    def __init__(self, inner: fields.Field, *, non_empty: bool = False, **kwargs: Any) -> None:
        super().__init__(inner, **kwargs)
        self.non_empty = non_empty

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list[Any]:
        result = super()._deserialize(value, attr, data, **kwargs)
        if self.non_empty and not result:
            raise ValidationError("is empty; list at least one")
        return result


class Nested(fields.Nested):
    default_error_messages = {"type": NOT_A_MAPPING, "required": REQUIRED, "null": NULL}  # noqa: RUF012 - marshmallow's own attribute


def _all_of(words: Iterable[str]) -> str:
    items = list(words)
    return ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else items[0]


def _shown(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, Mapping)):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    return f'"{text[:60]}…"' if len(text) > 60 else f'"{text}"'


# -- schemas --------------------------------------------------------------------------


class Strict(Schema):
    """Unknown keys are errors with a hint; they are checked here rather than by
    marshmallow's RAISE so that all other errors of the same mapping are reported too."""

    error_messages = {"type": NOT_A_MAPPING, "unknown": "@unknown"}  # noqa: RUF012 - marshmallow's own attribute

    class Meta:
        unknown = EXCLUDE

    # Keys valid elsewhere in a step, so that an unknown key can say "not on this kind".
    where_else: ClassVar[dict[str, str]] = {}

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _no_unknown_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping):
            return
        known = {f.data_key or name for name, f in self.fields.items()}
        errors = {}
        for key in original_data:
            if key in known:
                continue
            if key in self.where_else:
                text = f'"{key}" is not used {self.where_else[key]}'
            else:
                text = f'unknown key "{key}"{did_you_mean(key, known)}'
            errors[key] = [Problem(text, "unknown-key", at_key=True)]
        if errors:
            raise ValidationError(errors)


def _exactly_one(data: Any, keys: tuple[str, ...], what: str) -> str | None:
    if not isinstance(data, Mapping):
        return None
    present = [k for k in keys if data.get(k) not in (None, False)]
    if len(present) == 1:
        return None
    if not present:
        return f"{what} needs one of {_one_of(keys)}"
    return f"{what} has {_all_of(present)}; keep only one"


def _check_action_args(action: Any, args: Any, errors: dict[str, Any], args_key: str) -> None:
    """Required and unknown arguments of an action call, located under `args_key`."""
    spec = REGISTRY.get(action) if isinstance(action, str) else None
    if spec is None or (args is not None and not isinstance(args, Mapping)):
        return
    given = args if isinstance(args, Mapping) else {}
    for name in given:
        if name not in spec.params:
            errors.setdefault(args_key, {})[name] = [Problem(
                f'{action} has no argument "{name}"{did_you_mean(name, spec.params)}; '
                f"it takes {_one_of(spec.params)}",
                "action", at_key=True,
            )]
    missing = [name for name in spec.required if name not in given]
    if missing:
        errors.setdefault(args_key, {})["_schema"] = [Problem(
            f'{action} needs {_all_of(missing)} under "{args_key}"', "action",
        )]
    _check_recipient(action, given, errors, args_key)
    stage = given.get("stage") if action == "journey.set_stage" else None
    if isinstance(stage, str) and "{" not in stage and stage not in {s.value for s in Stage}:
        errors.setdefault(args_key, {})["stage"] = [Problem(
            f'"{stage}" is not a journey stage; use {_one_of([s.value for s in Stage])}'
            f"{did_you_mean(stage, [s.value for s in Stage])}", "action",
        )]


# People an internal notification may name besides an email address; the delivery connector
# reads them from the account when it sends (connectors/recipients.py).
NOTIFY_REFERENCES = ("account.owner", "owner.manager", "account.csm")
CONTACT_ROLES = ("champion", "admin", "economic_buyer")


def _check_recipient(action: Any, given: Mapping[str, Any], errors: dict[str, Any], args_key: str) -> None:
    """A literal `to` of notify.email / notify.chat names a person; a literal webhook url is http(s)."""
    to = given.get("to")
    if action in ("notify.email", "notify.chat") and isinstance(to, str) and "{" not in to:
        if to.strip() not in NOTIFY_REFERENCES and "@" not in to:
            errors.setdefault(args_key, {})["to"] = [Problem(
                f'"{to}" is not a recipient; use {_one_of(NOTIFY_REFERENCES)} or an email address'
                f"{did_you_mean(to, NOTIFY_REFERENCES)}", "action",
            )]
    if action in ("customer.email", "customer.survey") and isinstance(to, str) and "{" not in to \
            and "@" not in to and to.strip() not in CONTACT_ROLES:
        # A literal word would be stored as the address; only a contact role is looked up when it runs.
        errors.setdefault(args_key, {})["to"] = [Problem(
            f'"{to}" is neither an email address nor a contact role{did_you_mean(to.strip(), CONTACT_ROLES)}; '
            f"a customer email goes to an address (e.g. {{{{ deal.champion_email }}}}) or to the account's "
            f"contact in a role: {_one_of(CONTACT_ROLES)}", "recipient",
        )]
    url = given.get("url")
    if action == "notify.webhook" and isinstance(url, str) and "{" not in url \
            and not url.lower().startswith(("https://", "http://")):
        errors.setdefault(args_key, {})["url"] = [Problem(
            f'"{url}" is not a webhook URL; it must start with https:// (or http://)', "action",
        )]


class JumpSchema(Strict):
    goto = Slug()
    exit = Flag()

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _one_target(self, data: Mapping[str, Any], original_data: Any, **kwargs: Any) -> None:
        problem = _exactly_one(original_data, ("goto", "exit"), "this jump")
        if problem:
            raise ValidationError(problem)


class ActionCallSchema(Strict):
    do = ActionName(required=True)
    with_ = Args(data_key="with")

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _args(self, data: Mapping[str, Any], original_data: Any, **kwargs: Any) -> None:
        errors: dict[str, Any] = {}
        given = original_data if isinstance(original_data, Mapping) else {}
        _check_action_args(data.get("do"), given.get("with"), errors, "with")
        if errors:
            raise ValidationError(errors)


class RiskSchema(Strict):
    error_cost = Choice(("low", "high"), "error cost", required=True)
    correction = Choice(("fast", "slow"), "correction speed", required=True)


class AssignSchema(Strict):
    to = PersonRef()
    role = Slug()
    strategy = Choice(("round_robin", "least_loaded"), "strategy")
    fallback = Nested(lambda: AssignSchema())

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _names_someone(self, data: Mapping[str, Any], original_data: Any, **kwargs: Any) -> None:
        given = original_data if isinstance(original_data, Mapping) else {}
        if "to" not in given and "role" not in given:
            raise ValidationError(Problem(
                'this assignment names nobody; give "to" (e.g. account.owner) or "role" '
                "(e.g. csm): a task needs one named person, never a team",
                "named-owner",
            ))
        if "to" in given and "role" in given:
            raise ValidationError('give either "to" or "role", not both; put the other under "fallback"')
        if "strategy" in given and "role" not in given:
            raise ValidationError({"strategy": ['"strategy" picks among people with a "role"; add "role"']})


class EscalationSchema(Strict):
    at = EscalateAt(required=True)
    notify = PersonRef()
    reassign = Nested(AssignSchema)
    raise_priority = Flag()

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _one_action(self, data: Mapping[str, Any], original_data: Any, **kwargs: Any) -> None:
        problem = _exactly_one(original_data, ("notify", "reassign", "raise_priority"), "this escalation")
        if problem:
            raise ValidationError(problem)


class SlaSchema(Strict):
    ack = DurationField()
    due = DurationField(required=True)
    calendar = Slug()
    escalate = ListOf(Nested(EscalationSchema))

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _ack_defined(self, data: Mapping[str, Any], original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping) or "ack" in original_data:
            return
        errors = {
            index: {"at": ['escalation at "ack", but this SLA has no "ack" time; add "ack" or use "due"']}
            for index, rung in enumerate(data.get("escalate") or [])
            if isinstance(rung, Mapping) and rung.get("at", ("",))[0] == "ack"
        }
        if errors:
            raise ValidationError({"escalate": errors})


class TaskSchema(Strict):
    title = TemplateField(required=True)
    recommend = TemplateField(required=True)
    brief = ListOf(Choice(BRIEF_SECTIONS, "brief section"))


class OverrideSchema(Strict):
    window = DurationField()
    compensate = Nested(ActionCallSchema)


class ApprovalSchema(Strict):
    assign = Nested(AssignSchema, required=True)
    sla = Nested(SlaSchema)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _has_sla(self, data: Mapping[str, Any], original_data: Any, **kwargs: Any) -> None:
        if isinstance(original_data, Mapping) and "sla" not in original_data:
            raise ValidationError(Problem(
                'this approval has no "sla"; say by when it must be approved (e.g. sla: {due: 4 business hours})',
                "sla-required",
            ))


# -- steps ----------------------------------------------------------------------------


STEP_KINDS = ("automated", "human", "hybrid", "wait", "branch", "goto", "exit", "set_stage", "route", "split")


class StepSchema(Strict):
    id = Slug(required=True)
    kind = Choice(STEP_KINDS, "step kind", required=True)


class _HumanWork(StepSchema):
    assign = Nested(AssignSchema, required=True)
    sla = Nested(SlaSchema)
    estimate_minutes = Whole()

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _has_sla(self, data: Mapping[str, Any], original_data: Any, **kwargs: Any) -> None:
        if isinstance(original_data, Mapping) and "sla" not in original_data:
            raise ValidationError(Problem(
                f'this {original_data.get("kind")} step has no "sla"; every task a person gets needs '
                'a due time (e.g. sla: {due: 2 business days})',
                "sla-required",
            ))


class AutomatedSchema(StepSchema):
    oversight = Choice(tuple(Oversight), "oversight level", required=True)
    risk = Nested(RiskSchema)
    do = ActionName(required=True)
    with_ = Args(data_key="with")
    override = Nested(OverrideSchema)
    approval = Nested(ApprovalSchema)
    on_reject = Nested(JumpSchema)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _oversight_fits(self, data: Mapping[str, Any], original_data: Any, **kwargs: Any) -> None:
        given = original_data if isinstance(original_data, Mapping) else {}
        level = data.get("oversight")
        errors: dict[str, Any] = {}
        _check_action_args(data.get("do"), given.get("with"), errors, "with")
        if level and level != Oversight.ON_THE_LOOP and "override" in given:
            errors["override"] = [f'"override" only applies to on_the_loop steps; this one is {level}']
        if level and level != Oversight.IN_THE_LOOP:
            for key in ("approval", "on_reject"):
                if key in given:
                    errors[key] = [f'"{key}" only applies to in_the_loop steps; this one is {level}']
        if level == Oversight.IN_THE_LOOP and "approval" not in given:
            errors.setdefault("_schema", []).append(
                'an in_the_loop step needs "approval": who approves it (assign) and by when (sla)'
            )
        if errors:
            raise ValidationError(errors)


class PublishArgs(Args):
    """Publishing a hybrid step's draft: its arguments may also read the reviewed `draft`."""

    roots = CONTEXT_ROOTS | {"draft"}


class PublishCallSchema(ActionCallSchema):
    with_ = PublishArgs(data_key="with")


class HumanSchema(_HumanWork):
    task = Nested(TaskSchema, required=True)


class HybridSchema(_HumanWork):
    # Publishing is an automated action, so its risk is described as on an automated step.
    risk = Nested(RiskSchema)
    draft = TemplateField(required=True)
    # template: render the draft; llm: an OpenAI-compatible endpoint writes it from the template (see drafting.py)
    drafter = Choice(("template", "llm"), "drafter")
    publish = Nested(PublishCallSchema)
    task = Nested(TaskSchema)
    oversight = Choice((Oversight.IN_THE_LOOP.value,), "oversight level for a hybrid step "
                       "(a person always reviews the draft before it is published)")


class WaitSchema(StepSchema):
    for_ = SignalType(data_key="for")
    until = ExpressionField()
    timeout = DurationField(required=True)
    on_timeout = Nested(JumpSchema, required=True)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _waits_for_something(self, data: Mapping[str, Any], original_data: Any, **kwargs: Any) -> None:
        if isinstance(original_data, Mapping) and not ({"for", "until"} & set(original_data)):
            raise ValidationError('a wait needs "for" (a signal type), "until" (a condition), or both')


class RuleSchema(Strict):
    when = ExpressionField(required=True)
    goto = Slug()
    exit = Flag()

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _one_target(self, data: Mapping[str, Any], original_data: Any, **kwargs: Any) -> None:
        problem = _exactly_one(original_data, ("goto", "exit"), "this rule")
        if problem:
            raise ValidationError(problem)


class BranchSchema(StepSchema):
    rules = ListOf(Nested(RuleSchema), required=True, non_empty=True)
    otherwise = Nested(JumpSchema)


class GotoSchema(StepSchema):
    to = Slug(required=True)


class ExitSchema(StepSchema):
    reason = Text()


class SetStageSchema(StepSchema):
    stage = Choice(tuple(Stage), "journey stage", required=True)


# -- route (extract-decide-route) -------------------------------------------------------


class Confidence(_Field):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValidationError(f"must be a confidence between 0 and 1 (e.g. 0.8), got {_shown(value)}")
        return float(value)


class Keywords(_Field):
    """category: [keyword, ...], in file order."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
        if not isinstance(value, Mapping) or not value:
            raise ValidationError('must map each category to its keywords, e.g. {billing: [invoice, refund]}')
        out = []
        for category, words in value.items():
            Slug().deserialize(category)
            if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
                raise ValidationError({category: [f"must be a list of keywords, got {_shown(words)}"]})
            out.append((category, tuple(w.strip().lower() for w in words)))
        return tuple(out)


class ScorerSchema(Strict):
    text = TemplateField(required=True)
    keywords = Keywords(required=True)


class CategoryPaths(_Field):
    """category: {goto: step} for each category the automation handles."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping) or not value:
            raise ValidationError("must map each category the automation handles to where it goes, "
                                  "e.g. {billing: {goto: billing-reply}}")
        out: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for category, jump in value.items():
            try:
                Slug().deserialize(category)
                out[category] = JumpSchema().load(jump)
            except ValidationError as error:
                errors[str(category)] = error.messages
        if errors:
            raise ValidationError(errors)
        return out


class RouteSchema(_HumanWork):
    score = ExpressionField()
    category = ExpressionField()
    evidence = ExpressionField()
    scorer = Nested(ScorerSchema)
    threshold = Confidence(required=True)
    automated = CategoryPaths(required=True)
    task = Nested(TaskSchema, required=True)
    on_human = Nested(JumpSchema)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _scored_once(self, data: Mapping[str, Any], original_data: Any, **kwargs: Any) -> None:
        given = original_data if isinstance(original_data, Mapping) else {}
        if "scorer" in given and ({"score", "category", "evidence"} & set(given)):
            raise ValidationError('give either "scorer" or "score" and "category" (read from the signal), not both')
        if "scorer" not in given and not {"score", "category"} <= set(given):
            raise ValidationError('a route needs "score" and "category" (e.g. signal.confidence, '
                                  'signal.category) or a "scorer"')


class VariantSchema(Strict):
    name = Slug(required=True)
    weight = Whole(required=True)
    goto = Slug()
    exit = Flag()

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _one_target(self, data: Mapping[str, Any], original_data: Any, **kwargs: Any) -> None:
        problem = _exactly_one(original_data, ("goto", "exit"), "this variant")
        if problem:
            raise ValidationError(problem)


class SplitSchema(StepSchema):
    experiment = Slug()
    variants = ListOf(Nested(VariantSchema), required=True, non_empty=True)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _two_distinct(self, data: Mapping[str, Any], original_data: Any, **kwargs: Any) -> None:
        variants = [v for v in data.get("variants") or [] if isinstance(v, Mapping)]
        names = [v.get("name") for v in variants]
        if len(variants) < 2 and "variants" in data:
            raise ValidationError({"variants": ["an experiment needs at least two variants to compare"]})
        if len(set(names)) != len(names):
            raise ValidationError({"variants": ["variant names must be unique within the split"]})


STEP_SCHEMAS: dict[str, type[StepSchema]] = {
    "automated": AutomatedSchema,
    "human": HumanSchema,
    "hybrid": HybridSchema,
    "wait": WaitSchema,
    "branch": BranchSchema,
    "goto": GotoSchema,
    "exit": ExitSchema,
    "set_stage": SetStageSchema,
    "route": RouteSchema,
    "split": SplitSchema,
}


def _where_else() -> dict[str, dict[str, str]]:
    """For each kind: keys that belong to other kinds, with where they belong."""
    owners: dict[str, list[str]] = {}
    for kind, schema in STEP_SCHEMAS.items():
        for name, field in schema._declared_fields.items():
            owners.setdefault(field.data_key or name, []).append(kind)
    return {
        kind: {key: f"on a {kind} step (it belongs on {_one_of(k for k in kinds)} steps)"
               for key, kinds in owners.items() if kind not in kinds}
        for kind in STEP_SCHEMAS
    }


for _kind, _others in _where_else().items():
    STEP_SCHEMAS[_kind].where_else = _others
# Keys people put on the step itself that belong one level down.
for _key in ("window", "compensate"):
    AutomatedSchema.where_else[_key] = (
        'directly on a step; put it under "override" '
        "(override: {window: 2h, compensate: {do: ..., with: ...}})"
    )


class StepField(_Field):
    """A step, validated by the schema of its kind."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ValidationError('a step must be a mapping with at least "id" and "kind"')
        kind = value.get("kind")
        if not isinstance(kind, str) or kind not in STEP_SCHEMAS:
            errors: dict[str, Any] = {}
            if "kind" not in value:
                errors["_schema"] = [f'this step has no "kind"; use {_one_of(STEP_KINDS)}']
            else:
                hint = did_you_mean(kind, STEP_KINDS) if isinstance(kind, str) else ""
                errors["kind"] = [f"{_shown(kind)} is not a step kind; use {_one_of(STEP_KINDS)}{hint}"]
            if "id" in value:
                try:
                    Slug().deserialize(value["id"])
                except ValidationError as error:
                    errors["id"] = error.messages
            raise ValidationError(errors)
        try:
            return STEP_SCHEMAS[kind]().load(value)
        except ValidationError as error:
            raise ValidationError(error.messages) from None


# -- the playbook ---------------------------------------------------------------------


class EnrollSchema(Strict):
    on = SignalType(required=True)
    when = ExpressionField()
    once_per = Choice(("account", "deal", "signal"), "enrollment scope")
    max_age = WallClockDurationField()


# -- monitors (monitor-alert-act) --------------------------------------------------------

MEASURE = re.compile(r"^\s*(count|sum|avg|min|max)\s*(?:\(\s*([a-z_][a-z0-9_]*)\s*\))?\s*$")


class Measure(_Field):
    """count, or sum/avg/min/max of a payload field: "avg(active_users)"."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> tuple[str, str | None]:
        match = MEASURE.match(value) if isinstance(value, str) else None
        if not match or (match.group(1) == "count") != (match.group(2) is None):
            raise ValidationError(f'{_shown(value)} is not a measure; use count, or {_one_of(MEASURES[1:])} of a '
                                  'payload field, e.g. "avg(active_users)"')
        return match.group(1), match.group(2)


class MonitorCondition(ExpressionField):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str):
            raise ValidationError(Problem(f"must be a condition such as \"change <= -40\", got {_shown(value)}",
                                          "expression"))
        try:
            expression = parse_expression(value)
        except ExpressionError as error:
            raise ValidationError(Problem(error.message, "expression", inner=(error.line, error.column))) from None
        problems = check_roots(expression, MONITOR_ROOTS)
        if problems:
            raise ValidationError([Problem(message, "expression") for message in problems])
        return expression


class MonitorSchema(Strict):
    id = Slug(required=True)
    on = SignalType()
    absent = SignalType()
    measure = Measure()
    over = DurationField()
    for_ = DurationField(data_key="for")
    when = MonitorCondition()
    emit = SignalType(required=True)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _one_kind(self, data: Mapping[str, Any], original_data: Any, **kwargs: Any) -> None:
        given = set(original_data) if isinstance(original_data, Mapping) else set()
        if ("on" in given) == ("absent" in given):
            raise ValidationError('a monitor watches "on: TYPE" (a window measure) or "absent: TYPE" '
                                  "(no such signal for a while), one of the two")
        if "on" in given:
            missing = [key for key in ("over", "when") if key not in given]
            if missing or "for" in given:
                raise ValidationError('a window monitor needs "over" (e.g. 7d) and "when" (e.g. change <= -40); '
                                      '"for" belongs to an absent monitor')
        elif "for" not in given or {"over", "when", "measure"} & given:
            raise ValidationError('an absent monitor needs "for" (e.g. 14d) and takes no over, when or measure')


# -- health scores -----------------------------------------------------------------------

ACCOUNT_FIELD = re.compile(r"^account\.[a-z_][a-z0-9_]*$")


class Real(_Field):
    """A number (not a flag), optionally at least `low` / more than zero."""

    def __init__(self, *, positive: bool = False, low: float | None = None, high: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.positive, self.low, self.high = positive, low, high

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError(f"must be a number, got {_shown(value)}")
        if self.positive and value <= 0:
            raise ValidationError(f"must be more than 0, got {_shown(value)}")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ValidationError(f"must be between {self.low:g} and {self.high:g}, got {_shown(value)}")
        return float(value)


class AccountField(_Field):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str) or not ACCOUNT_FIELD.match(value):
            raise ValidationError(f'{_shown(value)} is not an account field; write it as "account.health" '
                                  '(the field a CRM connector maps, e.g. Salesforce Health_Score__c)')
        return value


class HealthMeasureSchema(Strict):
    id = Slug(required=True)
    label = Text()
    weight = Real(required=True, positive=True)
    worst = Real(required=True)
    best = Real(required=True)
    on = SignalType()
    measure = Measure()
    over = DurationField()
    read = Choice(HEALTH_READS, "window figure")
    where = ExpressionField()
    value = ExpressionField()
    since = SignalType()

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _one_kind(self, data: Mapping[str, Any], original_data: Any, **kwargs: Any) -> None:
        given = set(original_data) if isinstance(original_data, Mapping) else set()
        if len({"on", "value", "since"} & given) != 1:
            raise ValidationError('a health measure reads a window of signals ("on: TYPE" with "over"), an '
                                  'account value ("value: account.days_to_renewal") or the days since a signal '
                                  '("since: TYPE"), one of the three')
        if "on" in given and "over" not in given:
            raise ValidationError('a window measure needs "over" (e.g. 30d), as a monitor does')
        for kind in ("value", "since"):
            if kind in given and {"over", "measure", "read", "where"} & given:
                raise ValidationError(f'a "{kind}" measure takes no over, measure, read or where')
        if "worst" in data and "best" in data and data["worst"] == data["best"]:
            raise ValidationError('"worst" and "best" are the same number; the measure could only score '
                                  "all or nothing")


class HealthDropSchema(Strict):
    by = Real(positive=True, high=100.0)
    below = Real(low=0.0, high=100.0)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _some_rule(self, data: Mapping[str, Any], original_data: Any, **kwargs: Any) -> None:
        if isinstance(original_data, Mapping) and not ({"by", "below"} & set(original_data)):
            raise ValidationError('"dropped" needs "by" (points fallen from the peak) and/or "below" (a threshold)')


class HealthSchema(Strict):
    measures = ListOf(Nested(HealthMeasureSchema))
    imported = AccountField()
    dropped = Nested(HealthDropSchema)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _something_to_score(self, data: Mapping[str, Any], original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping):
            return
        if not original_data.get("measures") and "imported" not in original_data:
            raise ValidationError('a health model needs "measures" (weighted, bounded measures) or "imported" '
                                  "(a score the CRM keeps), or both")
        seen: set[str] = set()
        for index, measure in enumerate(original_data.get("measures") or ()):
            name = measure.get("id") if isinstance(measure, Mapping) else None
            if isinstance(name, str) and name in seen:
                raise ValidationError({"measures": {index: {"id": [f'the measure id "{name}" is used twice']}}})
            if isinstance(name, str):
                seen.add(name)


class LimitsSchema(Strict):
    customer_touches = TouchLimitField()


class Maintainer(_Field):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str) or "@" not in value:
            raise ValidationError(
                f"{_shown(value)} is not an email address; review reminders are sent to the maintainer"
            )
        return value


class DateField(_Field):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> date:
        try:
            return date.fromisoformat(value) if isinstance(value, str) else _not_a_date(value)
        except ValueError:
            return _not_a_date(value)


def _not_a_date(value: Any) -> date:
    raise ValidationError(f"{_shown(value)} is not a date; write it as YYYY-MM-DD, e.g. 2026-11-30")


class PlaybookSchema(Strict):
    id = Slug(required=True)
    name = Text(required=True)
    description = Text()
    stage = Choice(tuple(Stage), "journey stage", required=True)
    maintainer = Maintainer(required=True)
    review_every = DurationField()
    reviewed_on = DateField()
    enroll = Nested(EnrollSchema, required=True)
    exit_on = ListOf(SignalType())
    limits = Nested(LimitsSchema)
    sensitive_signals = ListOf(SignalType())
    monitors = ListOf(Nested(MonitorSchema))
    health = Nested(HealthSchema)
    steps = ListOf(StepField(), required=True, non_empty=True)
