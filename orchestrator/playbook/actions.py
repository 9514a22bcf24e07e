"""The action registry: what an automated step may do, and whether it touches the customer.

The protected-human-zone lint rule and the engine's customer-touch caps read
`customer_facing` from here; it is declared per action, never guessed from a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Target = Literal["crm", "email", "webhook", "chat", "journey"]


@dataclass(frozen=True)
class ActionSpec:
    name: str
    description: str
    customer_facing: bool
    target: Target
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    @property
    def params(self) -> tuple[str, ...]:
        return self.required + self.optional


_ACTIONS = (
    ActionSpec("crm.update_field", "Set a field on the account in the CRM.", False, "crm",
               required=("field", "value")),
    ActionSpec("crm.create_note", "Add a note to the account in the CRM.", False, "crm",
               required=("body",)),
    ActionSpec("notify.email", "Email a person on our side (owner, manager, a team inbox).", False,
               "email", required=("to", "subject", "body")),
    ActionSpec("notify.webhook", "POST a JSON payload to an internal webhook (Slack, Teams...).",
               False, "webhook", required=("url",), optional=("payload",)),
    ActionSpec("notify.chat", "Message a person on our side in chat (Slack, Teams): the account owner, "
               "the owner's manager, the CSM or an email.", False, "chat", required=("to", "text")),
    ActionSpec("journey.set_stage", "Move the account to another journey stage.", False, "journey",
               required=("stage",)),
    ActionSpec("customer.email", "Send an email to a customer contact.", True, "email",
               required=("to", "subject", "body")),
    ActionSpec("customer.in_app_message", "Show an in-app message to the customer's users.", True,
               "webhook", required=("body",), optional=("audience",)),
    ActionSpec("customer.survey", "Send a survey (NPS, CSAT) to customer contacts.", True, "crm",
               required=("survey",), optional=("to",)),
)

REGISTRY: dict[str, ActionSpec] = {spec.name: spec for spec in _ACTIONS}


def get_action(name: str) -> ActionSpec:
    """The registered action called `name` (KeyError if unknown)."""
    return REGISTRY[name]
