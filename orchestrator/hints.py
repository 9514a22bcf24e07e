"""Did-you-mean hints, shared by every place that tells a person a name is wrong."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The choice closest to `word`, if any is close enough to be a likely typo."""
    match = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=cutoff)
    return match[0] if match else None


def unknown_names(used: Iterable[str], allowed: Iterable[str]) -> list[str]:
    """One message per name in `used` that is not in `allowed`, with a hint."""
    allowed_set = set(allowed)
    messages = []
    for name in sorted(set(used) - allowed_set):
        close = closest(name, allowed_set)
        if close:
            messages.append(f'"{name}" is not available here; did you mean "{close}"?')
        else:
            known = ", ".join(sorted(allowed_set)) or "nothing"
            messages.append(f'"{name}" is not available here (available: {known})')
    return messages
