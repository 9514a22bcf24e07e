"""Build the immutable model from the schema's validated output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.playbook.model import (
    ActionCall,
    Assignment,
    AutomatedStep,
    BranchRule,
    BranchStep,
    Enrollment,
    Escalation,
    ExitStep,
    GotoStep,
    HealthDrop,
    HealthMeasure,
    HealthModel,
    HumanStep,
    HybridStep,
    Jump,
    KeywordScorer,
    Monitor,
    Oversight,
    Playbook,
    Position,
    Risk,
    RouteStep,
    SetStageStep,
    Sla,
    SplitStep,
    Stage,
    Step,
    TaskText,
    TouchLimit,
    Variant,
    WaitStep,
)
from orchestrator.playbook.templates import compile_template
from orchestrator.playbook.yamlsafe import Document

__all__ = ["build_playbook"]

DEFAULT_BRIEF = ("trigger", "account", "recent_signals", "journey", "automations")
# A hybrid step without its own task text still gives the reviewer a clear task.
_REVIEW_TITLE = "Review and publish the draft for {{ account.name }}"
_REVIEW_RECOMMEND = "Read the draft, correct anything wrong, then publish it."


def build_playbook(data: Mapping[str, Any], doc: Document, path: str) -> Playbook:
    """The compiled playbook; `data` must have passed PlaybookSchema."""
    enroll = data["enroll"]
    limits = data.get("limits") or {}
    touches = limits.get("customer_touches")
    return Playbook(
        id=data["id"],
        name=data["name"],
        stage=Stage(data["stage"]),
        maintainer=data["maintainer"],
        review_every=data.get("review_every"),
        reviewed_on=data.get("reviewed_on"),
        enroll=Enrollment(
            signal=enroll["on"], when=enroll.get("when"), once_per=enroll.get("once_per", "account"),
            max_age=enroll.get("max_age"),
        ),
        steps=tuple(_step(step, index, doc) for index, step in enumerate(data["steps"])),
        exit_on=tuple(data.get("exit_on") or ()),
        touch_limit=TouchLimit(count=touches[0], period=touches[1]) if touches else None,
        sensitive_signals=tuple(data.get("sensitive_signals") or ()),
        description=data.get("description", ""),
        path=path,
        monitors=tuple(_monitor(monitor) for monitor in data.get("monitors") or ()),
        health=_health(data["health"]) if data.get("health") else None,
    )


def _health(data: Mapping[str, Any]) -> HealthModel:
    dropped = data.get("dropped") or {}
    return HealthModel(measures=tuple(_health_measure(m) for m in data.get("measures") or ()),
                       imported=data.get("imported"),
                       dropped=HealthDrop(by=dropped.get("by"), below=dropped.get("below")))


def _health_measure(data: Mapping[str, Any]) -> HealthMeasure:
    window = None
    if "on" in data:
        measure, field = data.get("measure") or ("count", None)
        # The window is kept exactly as a monitor's (monitor_windows); it never emits itself.
        window = Monitor(id=data["id"], signal=data["on"], emit="health.dropped", window=data["over"],
                         measure=measure, field=field)
    return HealthMeasure(id=data["id"], label=data.get("label") or data["id"].replace("_", " ").replace("-", " "),
                         weight=data["weight"], worst=data["worst"], best=data["best"], window=window,
                         read=data.get("read", "value"), where=data.get("where"), value=data.get("value"),
                         since=data.get("since"))


def _monitor(data: Mapping[str, Any]) -> Monitor:
    measure, field = data.get("measure") or ("count", None)
    absent = "absent" in data
    return Monitor(id=data["id"], signal=data["absent"] if absent else data["on"], emit=data["emit"],
                   window=data["for_"] if absent else data["over"], absent=absent, measure=measure,
                   field=field, when=data.get("when"))


def _step(data: Mapping[str, Any], index: int, doc: Document) -> Step:
    line, column = doc.position(("steps", index))
    common = {"id": data["id"], "position": Position(line, column),
              "estimate_minutes": data.get("estimate_minutes")}
    kind = data["kind"]
    if kind == "automated":
        override = data.get("override") or {}
        approval = data.get("approval") or {}
        return AutomatedStep(
            **common,
            call=_call(data),
            oversight=Oversight(data["oversight"]),
            risk=Risk(**data["risk"]) if data.get("risk") else None,
            override_window=override.get("window"),
            compensate=_call(override["compensate"]) if override.get("compensate") else None,
            approval=_assign(approval["assign"]) if approval else None,
            approval_sla=_sla(approval["sla"]) if approval.get("sla") else None,
            on_reject=_jump(data["on_reject"]) if data.get("on_reject") else None,
        )
    if kind == "human":
        return HumanStep(**common, assign=_assign(data["assign"]), task=_task(data["task"]),
                         sla=_sla(data["sla"]))
    if kind == "hybrid":
        task = data.get("task") or {
            "title": compile_template(_REVIEW_TITLE),
            "recommend": compile_template(_REVIEW_RECOMMEND),
        }
        return HybridStep(
            **common,
            draft=data["draft"],
            publish=_call(data["publish"]) if data.get("publish") else None,
            assign=_assign(data["assign"]),
            task=_task(task),
            sla=_sla(data["sla"]),
            risk=Risk(**data["risk"]) if data.get("risk") else None,
            drafter=data.get("drafter", "template"),
        )
    if kind == "wait":
        return WaitStep(**common, signal=data.get("for_"), until=data.get("until"),
                        timeout=data["timeout"], on_timeout=_jump(data["on_timeout"]))
    if kind == "branch":
        rules = tuple(BranchRule(when=rule["when"], goto=_jump(rule)) for rule in data["rules"])
        otherwise = _jump(data["otherwise"]) if data.get("otherwise") else None
        return BranchStep(**common, rules=rules, otherwise=otherwise)
    if kind == "goto":
        return GotoStep(**common, to=data["to"])
    if kind == "exit":
        return ExitStep(**common, reason=data.get("reason", "completed"))
    if kind == "split":
        return SplitStep(**common, experiment=data.get("experiment") or data["id"],
                         variants=tuple(Variant(name=v["name"], weight=v["weight"], goto=_jump(v))
                                        for v in data["variants"]))
    if kind == "route":
        scorer = data.get("scorer")
        return RouteStep(
            **common, threshold=data["threshold"],
            automated=tuple((category, _jump(jump)) for category, jump in data["automated"].items()),
            assign=_assign(data["assign"]), task=_task(data["task"]), sla=_sla(data["sla"]),
            score=data.get("score"), category=data.get("category"), evidence=data.get("evidence"),
            scorer=KeywordScorer(text=scorer["text"], keywords=scorer["keywords"]) if scorer else None,
            on_human=_jump(data["on_human"]) if data.get("on_human") else None,
        )
    return SetStageStep(**common, stage=Stage(data["stage"]))


def _call(data: Mapping[str, Any]) -> ActionCall:
    return ActionCall(action=data["do"], args=dict(data.get("with_") or {}))


def _jump(data: Mapping[str, Any]) -> Jump:
    return Jump(goto=data.get("goto"), exit=bool(data.get("exit")))


def _assign(data: Mapping[str, Any]) -> Assignment:
    fallback = data.get("fallback")
    return Assignment(
        to=data.get("to"),
        role=data.get("role"),
        strategy=data.get("strategy", "round_robin"),
        fallback=_assign(fallback) if fallback else None,
    )


def _sla(data: Mapping[str, Any]) -> Sla:
    return Sla(
        due=data["due"],
        ack=data.get("ack"),
        calendar=data.get("calendar"),
        escalate=tuple(_escalation(rung) for rung in data.get("escalate") or ()),
    )


def _escalation(data: Mapping[str, Any]) -> Escalation:
    anchor, offset = data["at"]
    return Escalation(
        anchor=anchor,
        offset=offset,
        notify=data.get("notify"),
        reassign=_assign(data["reassign"]) if data.get("reassign") else None,
        raise_priority=bool(data.get("raise_priority")),
    )


def _task(data: Mapping[str, Any]) -> TaskText:
    return TaskText(
        title=data["title"],
        recommend=data["recommend"],
        brief=tuple(data.get("brief") or DEFAULT_BRIEF),
    )
