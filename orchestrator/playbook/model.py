"""The compiled playbook: immutable, validated, ready for the engine.

The loader turns YAML into these objects; nothing downstream ever sees raw YAML.
Expressions and templates arrive pre-parsed so the engine never parses at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any, Literal

from orchestrator.durations import Duration
from orchestrator.models.crm import JourneyStage
from orchestrator.playbook.expressions import Expression
from orchestrator.playbook.templates import Template

# What expressions and templates may read: the context the engine provides.
CONTEXT_ROOTS: frozenset[str] = frozenset({"account", "deal", "signal", "journey", "owner", "now"})

# The sections a decision brief can carry, in the order they are usually shown.
BRIEF_SECTIONS: tuple[str, ...] = (
    "trigger", "account", "contacts", "recent_signals", "journey", "automations", "deal",
)

# Person references an assignment (`to`) or an escalation (`notify`) may use besides a
# person's email address; the engine resolves each to one named person.
PERSON_REFERENCES: dict[str, str] = {
    "account.owner": "the account's owner in the CRM",
    "account.csm": "the account's customer success manager",
    "deal.owner": "the owner of the deal that triggered the journey",
    "owner.manager": "the manager of the task's current owner",
}


# The journey loop, in order; a renewal starts a new adopt phase. One enum, with the tables.
Stage = JourneyStage


class Oversight(StrEnum):
    OUT_OF_LOOP = "out_of_loop"
    ON_THE_LOOP = "on_the_loop"
    IN_THE_LOOP = "in_the_loop"


@dataclass(frozen=True)
class Position:
    """Where a node stands in its source file (1-based)."""

    line: int
    column: int


@dataclass(frozen=True)
class Risk:
    error_cost: Literal["low", "high"]
    correction: Literal["fast", "slow"]


@dataclass(frozen=True)
class ActionCall:
    """An action from the registry with its arguments; string arguments are templates."""

    action: str
    args: dict[str, Template | Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Assignment:
    """Who gets a task: a person reference, or a role pool, with a fallback.

    `to` is a reference such as "account.owner", "deal.owner" or an email address;
    `role` picks from active people with that role using `strategy`.
    """

    to: str | None = None
    role: str | None = None
    strategy: Literal["round_robin", "least_loaded"] = "round_robin"
    fallback: Assignment | None = None


@dataclass(frozen=True)
class Escalation:
    """One rung of an escalation chain: at `anchor` (+ `offset`), do one thing."""

    anchor: Literal["ack", "due"]
    offset: Duration | None
    notify: str | None = None  # a person reference: "owner.manager", "account.owner", an email
    reassign: Assignment | None = None
    raise_priority: bool = False


@dataclass(frozen=True)
class Sla:
    due: Duration
    ack: Duration | None = None
    calendar: str | None = None  # a calendar name from configuration; default: the owner's
    escalate: tuple[Escalation, ...] = ()


@dataclass(frozen=True)
class TaskText:
    title: Template
    recommend: Template
    brief: tuple[str, ...]  # brief sections, in order: trigger, account, contacts, ...


@dataclass(frozen=True)
class Jump:
    """Where control goes: a step id, or the end of the journey."""

    goto: str | None = None
    exit: bool = False


@dataclass(frozen=True)
class StepBase:
    id: str
    position: Position
    estimate_minutes: int | None  # human effort, for simulation; None for automated steps


@dataclass(frozen=True)
class AutomatedStep(StepBase):
    call: ActionCall
    oversight: Oversight
    risk: Risk | None = None
    # on_the_loop: how long the owner may override, and what undoes the action
    override_window: Duration | None = None
    compensate: ActionCall | None = None
    # in_the_loop: who approves, by when, and where a rejection goes
    approval: Assignment | None = None
    approval_sla: Sla | None = None
    on_reject: Jump | None = None
    kind: Literal["automated"] = "automated"


@dataclass(frozen=True)
class HumanStep(StepBase):
    assign: Assignment
    task: TaskText
    sla: Sla
    kind: Literal["human"] = "human"


@dataclass(frozen=True)
class HybridStep(StepBase):
    """The system drafts, a person reviews and publishes."""

    draft: Template
    publish: ActionCall | None  # what "publish" does once the reviewer approves
    assign: Assignment
    task: TaskText
    sla: Sla
    oversight: Oversight = Oversight.IN_THE_LOOP
    risk: Risk | None = None  # of the publish action
    drafter: str = "template"  # who writes the draft (orchestrator/drafting.py); a person always reviews it
    kind: Literal["hybrid"] = "hybrid"


@dataclass(frozen=True)
class WaitStep(StepBase):
    """Wait for a signal (optionally matching `until`) or a condition, up to `timeout`.

    A condition-only wait is checked whenever a signal for the account arrives, and
    gives up at its timeout; nothing re-checks it in between.
    """

    signal: str | None
    until: Expression | None
    timeout: Duration
    on_timeout: Jump
    kind: Literal["wait"] = "wait"


@dataclass(frozen=True)
class BranchRule:
    when: Expression
    goto: Jump


@dataclass(frozen=True)
class BranchStep(StepBase):
    """Ordered rules; the first match wins; no match sends the journey to the exception queue."""

    rules: tuple[BranchRule, ...]
    otherwise: Jump | None = None
    kind: Literal["branch"] = "branch"


@dataclass(frozen=True)
class GotoStep(StepBase):
    to: str
    kind: Literal["goto"] = "goto"


@dataclass(frozen=True)
class ExitStep(StepBase):
    reason: str = "completed"
    kind: Literal["exit"] = "exit"


@dataclass(frozen=True)
class SetStageStep(StepBase):
    """Move the account to another journey stage."""

    stage: Stage
    kind: Literal["set_stage"] = "set_stage"


@dataclass(frozen=True)
class KeywordScorer:
    """Scores text by keyword hits per category: the top category, and how sure the hits make it."""

    text: Template
    keywords: tuple[tuple[str, tuple[str, ...]], ...]  # (category, its keywords), in file order


@dataclass(frozen=True)
class RouteStep(StepBase):
    """Extract-decide-route: a confident decision of a known category goes its automated way;
    a doubtful one, or a category the playbook does not list, goes to a person with its evidence.

    The score and category come from the signal (`score`, `category`, optional `evidence`
    expressions) or from a `scorer`. A person confirming the proposal takes its automated
    path; overturning it (or handling a novel category) continues at `on_human`.
    """

    threshold: float
    automated: tuple[tuple[str, Jump], ...]  # (category, where its automated path starts)
    assign: Assignment
    task: TaskText
    sla: Sla
    score: Expression | None = None
    category: Expression | None = None
    evidence: Expression | None = None
    scorer: KeywordScorer | None = None
    on_human: Jump | None = None  # default: the next step
    kind: Literal["route"] = "route"

    def path_for(self, category: str | None) -> Jump | None:
        """The automated path of a category the playbook lists, else None."""
        return next((jump for name, jump in self.automated if name == category), None)


@dataclass(frozen=True)
class Variant:
    name: str
    weight: int  # share of accounts, relative to the other variants' weights
    goto: Jump


@dataclass(frozen=True)
class SplitStep(StepBase):
    """A play experiment: each account goes down one variant, by a stable hash bucket of its id.

    The same account always gets the same variant of the same experiment (a re-enrollment
    too); the assignment is recorded on the journey (`context.variants`) and audited.
    """

    experiment: str
    variants: tuple[Variant, ...]
    kind: Literal["split"] = "split"


Step = (AutomatedStep | HumanStep | HybridStep | WaitStep | BranchStep | GotoStep | ExitStep | SetStageStep
        | RouteStep | SplitStep)


@dataclass(frozen=True)
class Enrollment:
    signal: str
    when: Expression | None = None
    once_per: Literal["account", "deal", "signal"] = "account"
    # A signal older than this enrolls nobody (a deal closed weeks ago is no "new" deal).
    max_age: Duration | None = None


# What a monitor's `when` may read: the window's measure, the previous window's, the change
# between them in percent (None without a previous value), and the window's signal count.
MONITOR_ROOTS: frozenset[str] = frozenset({"value", "previous", "change", "count"})
MEASURES: tuple[str, ...] = ("count", "sum", "avg", "min", "max")


@dataclass(frozen=True)
class Monitor:
    """A watch over one account's signals: a window measure crossing `when`, or an absence.

    A firing sends a signal of type `emit` for the account, once per account and window
    (or per silence), which playbooks enroll on like any other.
    """

    id: str
    signal: str  # the type watched (aggregated, or expected for an absence)
    emit: str
    window: Duration  # `over` for a window monitor, `for` for an absence
    absent: bool = False
    measure: str = "count"  # one of MEASURES
    field: str | None = None  # the payload field sum/avg/min/max read
    when: Expression | None = None


# What a health measure over a signal window reads (`read:`), as a monitor's `when` does.
HEALTH_READS: tuple[str, ...] = ("value", "change", "previous", "count")


@dataclass(frozen=True)
class HealthMeasure:
    """One weighted, bounded part of a health score.

    The measure's raw value is read from a window of the account's signals (`window`, kept in
    the monitors' window rows), from an expression over the account (`value`, e.g.
    account.days_to_renewal), or is the days since the account's newest signal of a type (`since`).
    It scores its full weight at `best` or beyond, nothing at `worst` or beyond, and linearly in
    between (worst may be above best: more tickets is worse).
    """

    id: str
    label: str
    weight: float
    worst: float
    best: float
    window: Monitor | None = None  # a window measure: its signal type, measure and duration
    read: str = "value"  # which of the window's figures (HEALTH_READS)
    where: Expression | None = None  # only signals of the type for which this holds are counted
    value: Expression | None = None  # an account measure: an expression over the context
    since: str | None = None  # days since the account's newest signal of this type (engagement)


@dataclass(frozen=True)
class HealthDrop:
    """When a fall of the score sends `health.dropped`: by `by` points from its peak, or below `below`."""

    by: float | None = None
    below: float | None = None


@dataclass(frozen=True)
class HealthModel:
    """A playbook's account health score: weighted measures, an optional imported score, a drop rule."""

    measures: tuple[HealthMeasure, ...] = ()
    # An account field the CRM fills ("account.health", "account.cs_score"): when the account has a
    # value there it is the score, as imported; the measures score the accounts that have none.
    imported: str | None = None
    dropped: HealthDrop = HealthDrop()

    def signal_types(self) -> frozenset[str]:
        """The signal types that change a measure: the engine recomputes on these."""
        windows = {m.window.signal for m in self.measures if m.window is not None}
        return frozenset(windows | {m.since for m in self.measures if m.since is not None})


@dataclass(frozen=True)
class TouchLimit:
    """At most `count` automated customer-facing touches per account per `period`."""

    count: int
    period: Duration


@dataclass(frozen=True)
class Playbook:
    id: str
    name: str
    stage: Stage
    maintainer: str
    review_every: Duration | None
    enroll: Enrollment
    steps: tuple[Step, ...]
    exit_on: tuple[str, ...] = ()
    touch_limit: TouchLimit | None = None
    sensitive_signals: tuple[str, ...] = ()
    description: str = ""
    path: str = ""  # the file it came from, for messages
    monitors: tuple[Monitor, ...] = ()
    reviewed_on: date | None = None  # the last review, written in the file (else git history counts)
    health: HealthModel | None = None  # the account health score this playbook defines

    def step(self, step_id: str) -> Step:
        """The step with this id (KeyError if none)."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def next_step_id(self, step_id: str) -> str | None:
        """The step after `step_id` in file order, or None at the end."""
        ids = [s.id for s in self.steps]
        index = ids.index(step_id)
        return ids[index + 1] if index + 1 < len(ids) else None
