"""Confidence routing: which way a `route` step sends a decision, and why.

A decision goes the automated way only when its score reaches the step's threshold and
its category is one the playbook lists; anything else (a doubtful score, a category
nobody described, an input that could not be scored) stays with a person until the
pattern is understood. Pure functions: the engine (`steps.py`, `decisions.py`) does the
writing, and records `audit_detail` with every routed decision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from orchestrator.playbook.expressions import Expression, ExpressionError
from orchestrator.playbook.model import Jump, KeywordScorer, RouteStep

__all__ = ["Routing", "decide_route", "score_keywords"]

Reason = Literal["confident", "below_threshold", "novel_category", "unscored"]


@dataclass(frozen=True)
class Routing:
    """One routed decision: what was proposed, how sure, and which path it takes."""

    step_id: str
    score: float | None
    category: str | None
    threshold: float
    evidence: tuple[str, ...]
    reason: Reason
    proposal: Jump | None  # the listed category's automated path; None for a novel category

    @property
    def path(self) -> Literal["automated", "human"]:
        return "automated" if self.reason == "confident" else "human"

    def why(self) -> str:
        """One sentence for the audit trail and the brief."""
        score = "no score" if self.score is None else f"score {self.score:.2f}"
        if self.reason == "confident":
            return f"{self.category}: {score} >= threshold {self.threshold:.2f}; automated"
        if self.reason == "below_threshold":
            return f"{self.category}: {score} is below the threshold {self.threshold:.2f}; a person decides"
        if self.reason == "novel_category":
            return (f"category {self.category or '(none)'} is not one the playbook automates; "
                    "a person decides until the pattern is understood")
        return "the input could not be scored; a person decides"

    def audit_detail(self) -> dict[str, Any]:
        return {"score": self.score, "threshold": self.threshold, "category": self.category,
                "path": self.path, "reason": self.reason, "evidence": list(self.evidence),
                "proposed": self.proposal.goto if self.proposal and not self.proposal.exit else
                ("exit" if self.proposal else None)}

    def brief(self) -> dict[str, Any]:
        """The brief's "proposed decision" section: the proposal, its score and its evidence."""
        return {"step_id": self.step_id, "category": self.category, "score": self.score,
                "threshold": self.threshold, "why": self.why(), "evidence": list(self.evidence),
                "proposed_path": self.audit_detail()["proposed"]}


def decide_route(step: RouteStep, context: Mapping[str, Any]) -> Routing:
    """Score the input and pick the path; never raises on missing data (that goes to a person)."""
    if step.scorer is not None:
        category, score, evidence = score_keywords(step.scorer, context)
    else:
        assert step.score is not None and step.category is not None  # the schema requires both
        score = _number(_read(step.score, context))
        raw_category = _read(step.category, context)
        category = str(raw_category) if raw_category not in (None, "") else None
        evidence = _evidence(_read(step.evidence, context)) if step.evidence is not None else ()
    proposal = step.path_for(category)
    reason: Reason
    if score is None or category is None:
        reason = "unscored"
    elif proposal is None:
        reason = "novel_category"
    elif score >= step.threshold:
        reason = "confident"
    else:
        reason = "below_threshold"
    return Routing(step_id=step.id, score=score, category=category, threshold=step.threshold,
                   evidence=evidence, reason=reason, proposal=proposal)


def score_keywords(scorer: KeywordScorer,
                   context: Mapping[str, Any]) -> tuple[str | None, float | None, tuple[str, ...]]:
    """(category, score, evidence) from keyword hits in the scorer's text.

    The score is the share of the hits that point to the top category, discounted when
    few keywords matched (one hit 0.5, two 0.75, three 0.875...): one word is weak evidence.
    Text that matches nothing has no category and no score.
    """
    text = scorer.text.render(context).lower()
    hits = {category: [word for word in words if re.search(rf"\b{re.escape(word)}\b", text)]
            for category, words in scorer.keywords}
    total = sum(len(found) for found in hits.values())
    if total == 0:
        return None, None, ()
    top = max(hits, key=lambda category: len(hits[category]))  # ties: the first in file order
    count = len(hits[top])
    score = round(count / total * (1 - 0.5 ** count), 4)
    evidence = tuple(f"{category}: {', '.join(found)}" for category, found in hits.items() if found)
    return top, score, evidence


def _read(expression: Expression | None, context: Mapping[str, Any]) -> Any:
    if expression is None:
        return None
    try:
        return expression.evaluate(context)
    except ExpressionError:
        return None  # a missing field: the input cannot be scored, so a person gets it


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value) if isinstance(value, str) else None
        except ValueError:
            return None
    if value is None or not 0 <= value <= 1:
        return None  # a confidence is between 0 and 1; anything else is not one
    return float(value)


def _evidence(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(item) for item in value)
    return (str(value),)
