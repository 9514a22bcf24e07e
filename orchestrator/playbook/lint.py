"""Lint: the decision rules of the seeds, as code.

Every rule Handoff checks has an id, a severity and an explanation (`RULES`, listed by
`handoff playbooks rules`). Some are checked while loading, because a playbook that
breaks them cannot even be compiled (a task without an SLA); the rest run here on the
compiled playbook.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from orchestrator.durations import Duration
from orchestrator.playbook import flow
from orchestrator.playbook.actions import REGISTRY
from orchestrator.playbook.findings import Finding, Severity
from orchestrator.playbook.locate import value_at
from orchestrator.playbook.model import (
    AutomatedStep,
    HumanStep,
    HybridStep,
    Oversight,
    Playbook,
    Step,
    WaitStep,
)
from orchestrator.playbook.references import jump_paths
from orchestrator.playbook.yamlsafe import DocPath, Document, render_doc_path

__all__ = ["RULES", "Rule", "lint_playbook", "rule"]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    title: str
    explanation: str
    checked: str = "lint"  # "load" when checked while loading the file

    def __str__(self) -> str:
        return f"{self.id} ({self.severity}): {self.title}"


RULES: tuple[Rule, ...] = (
    # -- checked while loading -------------------------------------------------------
    Rule("file", "error", "The file exists and can be read",
         "Paths given to validate, apply or diff exist; folders are searched for *.yaml and *.yml.",
         "load"),
    Rule("yaml", "error", "The file is valid, safe YAML",
         "One YAML document, UTF-8, at most 256 KiB, no duplicate keys, keys are names, no custom "
         "tags (!!python/...), at most 100 aliases. true/false are the only booleans: on, off, yes "
         "and no are plain text.", "load"),
    Rule("schema", "error", "Every key has a value of the right type",
         "Required keys are present and each value has the expected form.", "load"),
    Rule("unknown-key", "error", "No unknown keys",
         "A misspelt key would otherwise be silently ignored; the message suggests the closest "
         "known key.", "load"),
    Rule("duration", "error", "Durations are understood",
         'Write "14d", "1h30m", "4 business hours" or "2 business days".', "load"),
    Rule("expression", "error", "Conditions parse and read only known data",
         "Conditions (when, until, branch rules) may read account, deal, signal, journey, owner "
         "and now.", "load"),
    Rule("template", "error", "Templates compile and read only known data",
         "Task titles, recommendations, drafts and action text may read account, deal, signal, "
         "journey, owner and now.", "load"),
    Rule("action", "error", "Actions exist and get the arguments they need",
         "`do` names an action from Handoff's registry; `with` gives its required arguments and "
         "no others.", "load"),
    Rule("step-id", "error", "Step ids are unique", "Jumps and reports name steps by id.", "load"),
    Rule("unknown-step", "error", "Jumps go to steps that exist",
         "goto, on_timeout, on_reject and branch rules name a step id of the same playbook.", "load"),
    Rule("duplicate-playbook", "error", "Playbook ids are unique across files",
         "Versions are stored by playbook id; two files with one id would overwrite each other.",
         "load"),
    Rule("sla-required", "error", "Every human task has an SLA",
         "Human and hybrid steps, and approvals of in_the_loop steps, give a person a task; "
         "each needs a due time (sla.due) so someone watches it.", "load"),
    Rule("named-owner", "error", "Every task resolves to one named person",
         'An assignment gives "to" (account.owner, account.csm, deal.owner, owner.manager or a '
         'person\'s email) or "role" (one person picked from the role). A team, a shared inbox '
         "or nothing at all is refused: a task that belongs to everyone belongs to no one.",
         "load"),
    # -- checked on the compiled playbook --------------------------------------------
    Rule("high-risk-unattended", "error", "No out_of_loop step with a high error cost",
         "A step whose wrong output is costly (risk.error_cost: high) must be watched: use "
         "on_the_loop (runs, owner may override) or in_the_loop (approval first)."),
    Rule("risk-without-publish", "warning", "A hybrid step's risk describes what it publishes",
         "On a hybrid step, risk is the risk of its publish action (publishing is automated once the "
         "reviewer approves); a hybrid step without publish has nothing the risk applies to."),
    Rule("protected-human-zone", "error",
         "No automated customer-facing step after a sensitive signal",
         "Signals listed in sensitive_signals (complaints, negative sentiment, churn risk) open a "
         "protected human zone. The zone starts at the first step when the playbook enrolls on a "
         "sensitive signal, and at the step after a wait whose `for` is a sensitive signal, or that "
         "waits on a condition alone and so can be woken by any signal (the path taken when the "
         "wait is satisfied, not the timeout path). It follows the flow "
         "(file order, goto, branch, on_timeout, on_reject) and ends at a human or hybrid step, "
         "where a person has taken the moment over. Inside the zone an automated step may not "
         "run an action that touches the customer (the registry's customer_facing flag), "
         "whatever its oversight level."),
    Rule("override-missing", "error", "on_the_loop steps can be overridden and undone",
         "An on_the_loop step can be overridden by its owner inside override.window (how long). An "
         "internal action runs at once and needs override.compensate (the action that undoes it); a "
         "customer-facing action is held in the outbox until the window ends and an override "
         "cancels it unsent, so it needs no compensation."),
    Rule("unreachable-step", "error", "Every step can run",
         "Following the flow from the first step (file order, goto, branch, on_timeout, "
         "on_reject; exit ends), every step is reached."),
    Rule("loop-without-wait", "error", "No loop that never waits",
         "A loop must pass through a step that surely pauses the journey: a wait `for` a signal, "
         "a human or hybrid step, or an in_the_loop approval of an action that does not touch the "
         "customer. A wait on a condition alone moves on at once when it holds, and a "
         "customer-facing step can be skipped by a cap, so neither counts; otherwise the loop "
         "spins forever."),
    Rule("review-overdue", "warning", "The playbook was reviewed recently enough",
         "The last review (reviewed_on: YYYY-MM-DD in the file, else the file's last git commit, or "
         "its modification time outside git) plus review_every is in the past: ask the maintainer "
         "to review it."),
)

_BY_ID = {r.id: r for r in RULES}


def rule(rule_id: str) -> Rule:
    """The rule with this id (KeyError if none)."""
    return _BY_ID[rule_id]


@dataclass
class _Context:
    playbook: Playbook
    doc: Document
    path: str
    findings: list[Finding]

    def index(self, step: Step) -> int:
        return next(i for i, s in enumerate(self.playbook.steps) if s.id == step.id)

    def report(self, rule_id: str, at: DocPath, message: str, *, key: bool = False) -> None:
        line, column = self.doc.key_position(at) if key else self.doc.position(at)
        self.findings.append(Finding(
            self.path, line, column, _BY_ID[rule_id].severity, rule_id, message, render_doc_path(at)
        ))


def lint_playbook(
    playbook: Playbook,
    *,
    doc: Document,
    path: str,
    now: datetime | None = None,
    last_changed: datetime | None = None,
) -> list[Finding]:
    """Findings of the lint rules; the review rule runs only with `now` and `last_changed`."""
    ctx = _Context(playbook, doc, path, [])
    _high_risk_unattended(ctx)
    _risk_without_publish(ctx)
    _override_missing(ctx)
    _protected_human_zone(ctx)
    _unreachable(ctx)
    _loops(ctx)
    if now is not None and (playbook.reviewed_on is not None or last_changed is not None):
        _review_overdue(ctx, now, last_changed)
    return ctx.findings


def _automated(playbook: Playbook) -> list[AutomatedStep]:
    return [s for s in playbook.steps if isinstance(s, AutomatedStep)]


def _high_risk_unattended(ctx: _Context) -> None:
    for step in _automated(ctx.playbook):
        if step.oversight == Oversight.OUT_OF_LOOP and step.risk and step.risk.error_cost == "high":
            ctx.report("high-risk-unattended", ("steps", ctx.index(step), "oversight"),
                       f'step "{step.id}" runs unwatched (out_of_loop) but a wrong result is costly '
                       "(error_cost: high); use on_the_loop or in_the_loop")


def _risk_without_publish(ctx: _Context) -> None:
    for step in ctx.playbook.steps:
        if isinstance(step, HybridStep) and step.risk is not None and step.publish is None:
            ctx.report("risk-without-publish", ("steps", ctx.index(step), "risk"),
                       f'step "{step.id}" has a risk but publishes nothing; risk describes the publish '
                       'action, so add "publish" or remove "risk"')


def _override_missing(ctx: _Context) -> None:
    for step in _automated(ctx.playbook):
        if step.oversight != Oversight.ON_THE_LOOP:
            continue
        held = REGISTRY[step.call.action].customer_facing
        needed = (("override.window", step.override_window),) + \
            (() if held else (("override.compensate", step.compensate),))
        missing = [name for name, value in needed if not value]
        if missing:
            why = ("the owner needs time to override it before it is sent" if held else
                   "the owner needs time to override it and an action that undoes it")
            ctx.report("override-missing", ("steps", ctx.index(step), "oversight"),
                       f'step "{step.id}" is on_the_loop but has no {" and no ".join(missing)}; {why}')


def _zone_starts(playbook: Playbook) -> dict[str, str]:
    """First steps of protected zones, each with a description of what opened it."""
    sensitive = set(playbook.sensitive_signals)
    starts: dict[str, str] = {}
    if playbook.enroll.signal in sensitive:
        starts[playbook.steps[0].id] = f"the playbook starts on {playbook.enroll.signal}"
    for step in playbook.steps:
        if isinstance(step, WaitStep) and step.signal in sensitive:
            for target in flow.arrival_successor(playbook, step):
                starts.setdefault(target, f'wait "{step.id}" receives {step.signal}')
        elif isinstance(step, WaitStep) and step.signal is None and sensitive:
            # A wait on a condition alone is woken by any signal, sensitive ones included.
            for target in flow.arrival_successor(playbook, step):
                starts.setdefault(target, f'wait "{step.id}" can be woken by any signal, '
                                          f'{" or ".join(sorted(sensitive))} included')
    return starts


def _protected_human_zone(ctx: _Context) -> None:
    playbook = ctx.playbook
    todo = list(_zone_starts(playbook).items())
    seen: set[str] = set()
    while todo:
        step_id, origin = todo.pop(0)
        if step_id in seen:
            continue
        seen.add(step_id)
        step = playbook.step(step_id)
        if isinstance(step, AutomatedStep):
            spec = REGISTRY.get(step.call.action)
            if spec and spec.customer_facing:
                ctx.report("protected-human-zone", ("steps", ctx.index(step), "do"),
                           f'step "{step.id}" runs {step.call.action} automatically after a '
                           f"sensitive signal ({origin}); this is a protected human zone: make it a "
                           "human or hybrid step")
        if isinstance(step, (HumanStep, HybridStep)):
            continue  # a person has taken the moment over
        todo.extend((target, origin) for target in flow.successors(playbook, step))


def _unreachable(ctx: _Context) -> None:
    reached = flow.reachable(ctx.playbook)
    for index, step in enumerate(ctx.playbook.steps):
        if step.id not in reached:
            ctx.report("unreachable-step", ("steps", index),
                       f'step "{step.id}" can never run: no step leads to it (the steps before it '
                       "jump elsewhere or exit)")


def _loops(ctx: _Context) -> None:
    for loop in flow.loops_without_pause(ctx.playbook):
        cycle = " → ".join([*loop, loop[0]])
        ctx.report("loop-without-wait", _closing_jump(ctx, loop),
                   f"this jump closes the loop {cycle}, which never waits, so it would run forever; "
                   "put a wait or a human step in the loop, or jump out of it")


def _closing_jump(ctx: _Context, loop: list[str]) -> DocPath:
    """Where the loop is closed: the jump back to an earlier step of the loop (else its first step)."""
    order = {step_id: ctx.index(ctx.playbook.step(step_id)) for step_id in loop}
    for step_id in sorted(loop, key=order.__getitem__, reverse=True):
        index = order[step_id]
        raw = value_at(ctx.doc.value, ("steps", index))
        for where in jump_paths(raw, index):
            if where[-1] == "to" and not (isinstance(raw, dict) and raw.get("kind") == "goto"):
                continue  # "to" is a person on other kinds
            target = value_at(ctx.doc.value, where)
            if isinstance(target, str) and target in order and order[target] <= index:
                return where
    return ("steps", min(order.values()))


def _review_overdue(ctx: _Context, now: datetime, last_changed: datetime | None) -> None:
    every = ctx.playbook.review_every
    if every is None:
        return
    reviewed = ctx.playbook.reviewed_on
    if reviewed is not None:
        if reviewed > now.date():
            ctx.report("review-overdue", ("reviewed_on",),
                       f"reviewed_on is {reviewed.isoformat()}, a day that has not come yet; write the day "
                       "the review happened")
            return
        since, what = datetime.combine(reviewed, time(), tzinfo=UTC), "was last reviewed on"
    else:
        assert last_changed is not None  # lint_playbook runs this rule only with one of the two
        since, what = last_changed, "was last changed on"
    due = since + _approximate(every)
    if now > due:
        hint = "" if reviewed is not None else (" (or, if it was reviewed without a change, write "
                                                 "reviewed_on: YYYY-MM-DD in the file)")
        ctx.report("review-overdue", ("reviewed_on",) if reviewed is not None else ("review_every",),
                   f"this playbook {what} {since.date().isoformat()} and is due "
                   f"a review every {every.text}, so it was due on {due.date().isoformat()}; ask its "
                   f"maintainer ({ctx.playbook.maintainer}) to review it{hint}", key=True)


def _approximate(every: Duration) -> timedelta:
    # A review cycle is calendar time; business days are read as working weeks.
    extra_days = every.business_days * 7 / 5
    return every.calendar + timedelta(days=extra_days, minutes=every.business_minutes)

