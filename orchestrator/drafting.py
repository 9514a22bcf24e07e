"""Drafters: who writes a hybrid step's draft before a person reviews it.

`template` (the default) renders the step's `draft` template: deterministic and offline.
`llm` asks an OpenAI-compatible chat completions endpoint, when one is configured
(`HANDOFF_LLM_BASE_URL`, `HANDOFF_LLM_MODEL`, `HANDOFF_LLM_API_KEY`), with the account
context and the rendered template as instructions; it lives in `connectors/llm.py`, which
registers itself here, because it calls out through the connectors' SSRF guard. Any failure
(not configured, refused address, timeout, an error status, an empty answer) falls back to
the template and says so. Whatever wrote it, the draft is reviewed by a person before it is
published; the brief names the drafter.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.config import Settings

__all__ = ["DRAFTERS", "Draft", "DrafterFailed", "DrafterNotConfigured", "register_drafter", "write_draft"]

log = logging.getLogger(__name__)

TEMPLATE = "template"
DRAFTERS = (TEMPLATE, "llm")
# Modules that register drafters, imported by name on first use, so the core depends on none of them.
DRAFTER_MODULES = {"llm": "connectors.llm"}


class DrafterFailed(Exception):
    """The drafter wrote nothing usable; the message says why, without customer data."""


class DrafterNotConfigured(DrafterFailed):
    """The deployment configured no endpoint for this drafter: the template, as intended, without a warning."""


class Drafter(Protocol):
    def __call__(self, *, settings: Settings, rendered: str, context: Mapping[str, Any]) -> tuple[str, str]:
        """(the draft, a short description of who wrote it, e.g. "llm gpt-4o-mini"); raises DrafterFailed."""
        ...


@dataclass(frozen=True)
class Draft:
    text: str
    drafter: str  # who wrote the text: "template" or e.g. "llm gpt-4o-mini"
    requested: str  # the drafter the step asked for
    fallback: str = ""  # why the template stood in for the requested drafter

    def brief(self) -> dict[str, str]:
        return {"drafter": self.drafter, "requested": self.requested, "fallback": self.fallback}


_REGISTRY: dict[str, Drafter] = {}


def register_drafter(name: str, drafter: Drafter) -> None:
    _REGISTRY[name] = drafter


def write_draft(*, requested: str, rendered: str, context: Mapping[str, Any], settings: Settings) -> Draft:
    """The draft from the requested drafter, or the rendered template with the reason it stood in."""
    if requested == TEMPLATE:
        return Draft(text=rendered, drafter=TEMPLATE, requested=requested)
    drafter = _REGISTRY.get(requested)
    if drafter is None and requested in DRAFTER_MODULES:
        try:
            importlib.import_module(DRAFTER_MODULES[requested])
        except ImportError as exc:
            log.warning("drafter %s could not be loaded: %s", requested, exc)
        drafter = _REGISTRY.get(requested)
    if drafter is None:
        return Draft(text=rendered, drafter=TEMPLATE, requested=requested,
                     fallback=f"the {requested} drafter is not installed")
    try:
        text, who = drafter(settings=settings, rendered=rendered, context=context)
    except DrafterFailed as exc:
        if not isinstance(exc, DrafterNotConfigured):
            log.warning("drafter %s failed; the template stands in: %s", requested, exc)
        return Draft(text=rendered, drafter=TEMPLATE, requested=requested, fallback=str(exc))
    return Draft(text=text, drafter=who, requested=requested)
