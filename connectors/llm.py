"""The `llm` drafter: a hybrid step's draft from an OpenAI-compatible chat completions endpoint.

One POST to HANDOFF_LLM_BASE_URL + "/chat/completions" with the model, a system message (write
the draft for a person to review; keep to the facts given) and a user message holding the
account context and the template's rendering. The URL passes the webhooks' SSRF guard (an
internal address only when HANDOFF_LLM_ALLOW_HOSTS lists it), redirects are not followed,
the answer is bounded, and the connect and read timeouts are HANDOFF_LLM_TIMEOUT. Anything
but a 200 with a non-empty `choices[0].message.content` raises DrafterFailed, and the engine
uses the template instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from connectors.webhook import http
from connectors.webhook.ssrf import Refused, check_url, parse_allow_list
from orchestrator.config import Settings
from orchestrator.drafting import DrafterFailed, DrafterNotConfigured, register_drafter

__all__ = ["draft_with_llm"]

MAX_DRAFT_CHARS = 20_000
_INSTRUCTIONS = (
    "You draft a message for a revenue team. A person reviews and edits your draft before anything is "
    "sent, so write only the draft itself, in plain text. Keep to the facts in the account context; do not "
    "invent numbers, dates or commitments. Follow the template's purpose, structure and tone."
)


def draft_with_llm(*, settings: Settings, rendered: str, context: Mapping[str, Any]) -> tuple[str, str]:
    """(the endpoint's draft, "llm MODEL"); DrafterFailed with a short reason otherwise."""
    llm = settings.llm
    if llm is None:
        raise DrafterNotConfigured("no drafter endpoint is configured (HANDOFF_LLM_BASE_URL)")
    url = llm.base_url.rstrip("/") + "/chat/completions"
    try:
        target = check_url(url, allow=parse_allow_list(llm.allow_hosts))
    except Refused as exc:
        raise DrafterFailed(str(exc).replace("webhook", "drafter")) from None
    account_context = {name: context.get(name) for name in ("account", "deal", "signal", "owner")}
    body = json.dumps({
        "model": llm.model,
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": _INSTRUCTIONS},
            {"role": "user", "content": "Account context (JSON):\n"
                                        + json.dumps(account_context, default=str, sort_keys=True)
                                        + "\n\nTemplate, as rendered for this account:\n" + rendered},
        ],
    }).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if llm.api_key:
        headers["Authorization"] = f"Bearer {llm.api_key}"
    try:
        response = http.post(target, body=body, headers=headers, connect_timeout=llm.timeout,
                             read_timeout=llm.timeout)
    except http.HttpFailure as exc:
        raise DrafterFailed(f"the drafter endpoint gave no answer ({exc})") from None
    if response.status != 200:
        raise DrafterFailed(f"the drafter endpoint answered {response.status}")
    try:
        content = json.loads(response.body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise DrafterFailed("the drafter endpoint's answer is not a chat completion") from None
    if not isinstance(content, str) or not content.strip():
        raise DrafterFailed("the drafter endpoint wrote an empty draft")
    return content.strip()[:MAX_DRAFT_CHARS], f"llm {llm.model}"


register_drafter("llm", draft_with_llm)
