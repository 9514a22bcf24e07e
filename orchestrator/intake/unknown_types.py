"""Signals of a type the catalog does not know: stored and handled as usual, and flagged.

A typo in a connector or a webhook (`product.usge`) would otherwise be accepted silently and
never enroll anyone. Each unknown type raises one exception item per UTC day; further signals
of that type that day are counted on it (the exception queue's group key), so a flood of them
is one line in the queue, not thousands.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from orchestrator import exception_queue
from orchestrator.config import Settings
from orchestrator.models.exceptions import Category
from orchestrator.playbook.catalog import Catalog, SignalSpec, shipped_catalog
from orchestrator.playbook.model import WaitStep
from orchestrator.playbook.store import active_playbooks

__all__ = ["IncomingSignal", "flag_unknown_types", "known_catalog"]

_KNOWN = "handoff_known_signal_catalog"


@dataclass(frozen=True)
class IncomingSignal:
    """What the check needs of a stored signal."""

    signal_id: int
    type: str
    account_id: int | None


def flag_unknown_types(
    session: Session,
    *,
    settings: Settings,
    signals: Iterable[IncomingSignal],
    at: datetime,
    catalog: Catalog | None = None,
) -> int:
    """Flag each signal of a type `catalog` (default: the shipped one) does not know; returns how many.

    Safe to call per signal or per batch: the items are grouped by (type, day) either way.
    """
    shipped = shipped_catalog()
    known: Catalog | None = catalog
    day = at.astimezone(UTC).date().isoformat()
    flagged = 0
    for signal in signals:
        if catalog is None and shipped.knows(signal.type):
            continue  # known either way: the active playbooks' types are read only for a type the shipped catalog lacks
        if known is None:
            known = known_catalog(session)
        if known.knows(signal.type):
            continue
        exception_queue.raise_item(
            session, settings=settings, category=Category.INVALID_SIGNAL, at=at,
            message=(f'signals of type "{signal.type}" arrived, a type the signal catalog does not know; '
                     "no playbook will react to them unless the type is added to a signals.yaml "
                     "in the playbooks folder (or the sender fixes a typo)"),
            account_id=signal.account_id, signal_id=signal.signal_id,
            detail={"type": signal.type, "day": day},
            field=f"unknown-type:{signal.type}:{day}",
        )
        flagged += 1
    return flagged


def known_catalog(session: Session) -> Catalog:
    """The shipped catalog plus every type an active playbook reacts to, once per session.

    A deployment's own types (declared in a signals.yaml beside its playbooks) reach intake
    this way: a playbook that passed validation against them has been applied.
    """
    cached = session.info.get(_KNOWN)
    if isinstance(cached, Catalog):
        return cached
    extra: dict[str, SignalSpec] = {}
    for _version, playbook in active_playbooks(session=session):
        types = {playbook.enroll.signal, *playbook.exit_on, *playbook.sensitive_signals}
        types |= {step.signal for step in playbook.steps if isinstance(step, WaitStep) and step.signal}
        extra.update({name: SignalSpec(name, name) for name in types if isinstance(name, str)})
    known = shipped_catalog().merged(Catalog(extra))
    session.info[_KNOWN] = known
    return known
