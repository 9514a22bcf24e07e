"""`validate --against DATABASE`: a playbook checked against the live configuration it will run in.

The file alone cannot know whether anybody has the role `cs-lead`, whether `mia@acme.example`
is a person Handoff knows, or whether the calendar `emea` is configured; a journey would find
out when it ran (no assignee, a configuration item). Here those names are looked up in the
deployment's people (the `owners` table, active ones) and its settings' calendars, and each
miss is a located finding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.hints import closest
from orchestrator.models import Owner
from orchestrator.playbook.findings import Finding
from orchestrator.playbook.model import Assignment, AutomatedStep, HumanStep, HybridStep, Playbook, Sla
from orchestrator.playbook.yamlsafe import DocPath, Document, render_doc_path

__all__ = ["LiveConfiguration", "check_against", "live_configuration"]

RULE = "live-config"


@dataclass(frozen=True)
class LiveConfiguration:
    roles: frozenset[str]  # roles at least one active person has
    people: frozenset[str]  # emails of active people (lower case)
    calendars: frozenset[str]  # configured calendar names ("default" always)
    inactive: frozenset[str] = frozenset()  # emails of people marked inactive (lower case)

    def person_problem(self, email: str) -> str | None:
        """Why this email cannot be handed work here, or None."""
        known = email.lower()
        if known in self.people:
            return None
        if known in self.inactive:
            return f'"{email}" is marked inactive in this deployment; nothing can be handed to them'
        # No did-you-mean: addresses share their domain, so any two look alike.
        return f'"{email}" is not a person in this deployment'


def live_configuration(session: Session, *, calendars: set[str]) -> LiveConfiguration:
    """Who and what the deployment has right now."""
    rows = session.execute(select(Owner.email, Owner.role, Owner.active)).all()
    return LiveConfiguration(roles=frozenset(role for _, role, active in rows if role and active),
                             people=frozenset(email.lower() for email, _, active in rows if active),
                             calendars=frozenset(calendars | {"default"}),
                             inactive=frozenset(email.lower() for email, _, active in rows if not active))


def check_against(playbook: Playbook, *, doc: Document, path: str, live: LiveConfiguration) -> list[Finding]:
    """Findings for roles nobody active has, people Handoff does not know, and calendars not configured."""
    findings: list[Finding] = []

    def report(at: DocPath, message: str) -> None:
        line, column = doc.position(at)
        findings.append(Finding(path, line, column, "error", RULE, message, render_doc_path(at)))

    for at, assignment in _assignments(playbook):
        if assignment.role and assignment.role not in live.roles:
            report((*at, "role"), f'nobody active has the role "{assignment.role}" in this deployment'
                                  f"{_hint(assignment.role, live.roles)}; roles here: {_listed(live.roles)}")
        problem = live.person_problem(assignment.to) \
            if assignment.to and "@" in assignment.to and "{" not in assignment.to else None
        if problem:
            report((*at, "to"), problem)
    for at, sla in _slas(playbook):
        if sla.calendar and sla.calendar not in live.calendars:
            report((*at, "calendar"), f'the calendar "{sla.calendar}" is not configured here'
                                      f"{_hint(sla.calendar, live.calendars)}; calendars: {_listed(live.calendars)}")
        for index, rung in enumerate(sla.escalate):
            notify = rung.notify
            problem = live.person_problem(notify) if notify and "@" in notify and "{" not in notify else None
            if problem:
                report((*at, "escalate", index, "notify"), problem)
    return findings


def _assignments(playbook: Playbook) -> Iterator[tuple[DocPath, Assignment]]:
    for index, step in enumerate(playbook.steps):
        at: DocPath = ("steps", index)
        if isinstance(step, HumanStep | HybridStep):
            yield from _chain((*at, "assign"), step.assign)
            for rung_index, rung in enumerate(step.sla.escalate):
                if rung.reassign is not None:
                    yield from _chain((*at, "sla", "escalate", rung_index, "reassign"), rung.reassign)
        if isinstance(step, AutomatedStep) and step.approval is not None:
            yield from _chain((*at, "approval", "assign"), step.approval)


def _chain(at: DocPath, assignment: Assignment) -> Iterator[tuple[DocPath, Assignment]]:
    yield at, assignment
    if assignment.fallback is not None:
        yield from _chain((*at, "fallback"), assignment.fallback)


def _slas(playbook: Playbook) -> Iterator[tuple[DocPath, Sla]]:
    for index, step in enumerate(playbook.steps):
        if isinstance(step, HumanStep | HybridStep):
            yield ("steps", index, "sla"), step.sla
        if isinstance(step, AutomatedStep) and step.approval_sla is not None:
            yield ("steps", index, "approval", "sla"), step.approval_sla


def _hint(word: str, choices: frozenset[str]) -> str:
    close = closest(word, sorted(choices))
    return f' (did you mean "{close}"?)' if close else ""


def _listed(words: frozenset[str]) -> str:
    return ", ".join(sorted(words)) or "none"
