"""Account health scores: a playbook's `health:` model, scored per account, kept with its history.

A model is weighted, bounded measures. A window measure (`on: product.usage, measure:
avg(active_users), over: 7d, read: change`) keeps its figures in the monitors' window rows
(`monitor_windows`, keyed "health:PLAYBOOK/MEASURE"), so a signal costs two indexed row reads
whatever the history; an account measure (`value: account.days_to_renewal`) is an expression
over the account; an engagement measure (`since: meeting.held`) is the days since the account's
newest signal of the type, one read at the top of the signal index. Each measure scores its
share of the weights linearly between `worst` (0) and `best` (all of it); a measure with no
value yet is left out and the others share its weight.
`imported: account.health` makes the CRM's own score (a mapped field such as Salesforce
`Health_Score__c`) the score of every account that has one.

The engine rescores an account after a signal one of its measures reads; the `health.recompute`
job rescores every account (time moves days to renewal and ends windows). A score that differs
from the account's current one is a new `health_scores` row with each measure's contribution;
a fall of `dropped.by` points from the peak since the last drop, or across `dropped.below`, sends
one `health.dropped` signal through intake, which playbooks enroll on. Nothing here commits
except the job, per page of accounts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from orchestrator import audit
from orchestrator.audit import AuditAction
from orchestrator.config import Settings
from orchestrator.db import connection_lost, describe_error, is_transient, unit_of_work
from orchestrator.intake import signals
from orchestrator.journeys import monitors
from orchestrator.journeys.steps import Run, lock_accounts
from orchestrator.models import Account, AccountHealth, HealthScore, PlaybookVersion, Signal
from orchestrator.models.health import top_reasons
from orchestrator.playbook.context import build_context
from orchestrator.playbook.expressions import ExpressionError
from orchestrator.playbook.model import HealthDrop, HealthMeasure, HealthModel, Playbook
from orchestrator.worker.jobs import JobResult, job

if TYPE_CHECKING:
    from orchestrator.runtime import Runtime

__all__ = ["Scored", "active_model", "observe", "recompute_all", "rescore", "score", "standing", "windows_to_preload"]

log = logging.getLogger(__name__)

DROPPED = "health.dropped"
SOURCE = "health"  # the intake source of health.dropped signals


@dataclass(frozen=True)
class Scored:
    score: int
    source: str  # computed, or imported
    contributions: list[dict[str, Any]]


def active_model(playbooks: Sequence[tuple[PlaybookVersion, Playbook]]) -> tuple[str, HealthModel] | None:
    """The health model in force: the one of the first active playbook (by id) that declares one."""
    for _version, playbook in sorted(playbooks, key=lambda pair: pair[1].id):
        if playbook.health is not None:
            return playbook.id, playbook.health
    return None


def measure_key(playbook_id: str, measure: HealthMeasure) -> str:
    return f"health:{playbook_id}/{measure.id}"


# -- the engine's part ------------------------------------------------------------------------


def windows_to_preload(run: Run, batch: Sequence[Signal]) -> list[tuple[str, int]]:
    """The measure windows the batch's accounts are scored on, as (key, account) pairs for `monitors.preload`.

    An account whose signal a measure counts is rescored on every measure: each window measure's
    latest window and the one before it, for each such account, read with the monitors' windows.
    """
    found = run.derived("health model", lambda: active_model(run.playbooks())) if run.memo is not None else None
    if found is None:
        return []
    playbook_id, model = found
    types = model.signal_types()
    account_ids = sorted({signal.account_id for signal in batch
                          if signal.account_id is not None and signal.type in types})
    return [(measure_key(playbook_id, measure), account_id)
            for measure in model.measures if measure.window is not None for account_id in account_ids]


def observe(run: Run, account: Account, signal: Signal) -> None:
    """Count `signal` in the windows of the measures that read its type, then rescore the account."""
    found = run.derived("health model", lambda: active_model(run.playbooks()))
    if found is None:
        return
    playbook_id, model = found
    if signal.type not in model.signal_types():
        return
    counted = False
    for measure in model.measures:
        if measure.since == signal.type:
            counted = True  # the days since it start again from this signal
        if measure.window is None or measure.window.signal != signal.type or not _selected(run, measure, account,
                                                                                           signal):
            continue
        monitors.fold(run, measure_key(playbook_id, measure), measure.window, account.id, signal)
        counted = True
    if counted:
        rescore(run, account, playbook_id=playbook_id, model=model, at=signal.occurred_at,
                trigger=f"signal:{signal.id}")


def _selected(run: Run, measure: HealthMeasure, account: Account, signal: Signal) -> bool:
    if measure.where is None:
        return True
    try:
        context = build_context(run.session, account=account, now=run.now, signal=signal,
                                reads=measure.where.references())
        return bool(measure.where.evaluate(context))
    except ExpressionError:
        return False  # the signal lacks what the filter reads: it is not one of those counted


def standing(session: Session, *, account: Account, limit: int) -> dict[str, Any]:
    """The account's health as the API and the CLI show it: score, source, model, top reasons, each measure's
    contribution, and its latest `limit` history rows, newest first (the CRM field when no model scored it)."""
    history = list(session.scalars(select(HealthScore).where(HealthScore.account_id == account.id)
                                   .order_by(HealthScore.computed_at.desc(), HealthScore.id.desc()).limit(limit)))
    state = account.health_state
    if state is None:
        return {"account_id": account.id, "score": account.health, "computed_at": None, "model": None,
                "source": "crm_field" if account.health is not None else None, "reasons": [],
                "contributions": [], "history": history}
    return {"account_id": account.id, "score": state.score, "source": state.source, "model": state.playbook_id,
            "computed_at": state.computed_at, "reasons": top_reasons(state.contributions),
            "contributions": state.contributions, "history": history}


# -- scoring -----------------------------------------------------------------------------------


def score(run: Run, account: Account, *, playbook_id: str, model: HealthModel, at: datetime) -> Scored | None:
    """The account's score under `model` at `at` (None when nothing can be scored yet)."""
    imported = _imported(account, model.imported)
    if imported is not None:
        return Scored(score=_bounded(imported), source="imported", contributions=[])
    raw = [(measure, _raw(run, account, playbook_id=playbook_id, measure=measure, at=at))
           for measure in model.measures]
    weights = sum(measure.weight for measure, value in raw if value is not None)
    if not weights:
        return None
    contributions = []
    total = 0.0
    for measure, value in raw:
        entry: dict[str, Any] = {"id": measure.id, "label": measure.label, "weight": measure.weight,
                                 "value": _rounded(value), "unit": "%" if measure.read == "change" else "",
                                 "max_points": None, "points": None}
        if value is not None:
            fraction = min(1.0, max(0.0, (value - measure.worst) / (measure.best - measure.worst)))
            share = measure.weight / weights * 100
            entry.update(max_points=_rounded(share), points=_rounded(share * fraction))
            total += share * fraction
        contributions.append(entry)
    return Scored(score=_bounded(total), source="computed", contributions=contributions)


def _raw(run: Run, account: Account, *, playbook_id: str, measure: HealthMeasure, at: datetime) -> float | None:
    if measure.window is not None:
        figures = monitors.figures_at(run, measure_key(playbook_id, measure), measure.window, account.id, at)
        return _number(figures.get(measure.read))
    if measure.since is not None:
        return _days_since(run, account, measure.since)
    assert measure.value is not None
    try:
        context = build_context(run.session, account=account, now=run.now, reads=measure.value.references())
        return _number(measure.value.evaluate(context))
    except ExpressionError:
        return None  # e.g. no renewal date: the measure has no value for this account


def _days_since(run: Run, account: Account, signal_type: str) -> float | None:
    """Whole days from the account's newest signal of the type to now (None: it never sent one).

    One read at the top of the (account_id, type, occurred_at) index, whatever the history.
    """
    last = run.session.scalar(select(Signal.occurred_at).where(
        Signal.account_id == account.id, Signal.type == signal_type, Signal.occurred_at <= run.now)
        .order_by(Signal.occurred_at.desc()).limit(1))
    return None if last is None else float(max(0, (run.now - last) // timedelta(days=1)))


def _imported(account: Account, field: str | None) -> float | None:
    if field is None:
        return None
    name = field.removeprefix("account.")
    value = account.health if name == "health" else (account.attributes or {}).get(name)
    return _number(value)


def _bounded(value: float) -> int:
    return int(min(100, max(0, math.floor(value + 0.5))))  # half up, as people round


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# -- keeping the score -------------------------------------------------------------------------


def rescore(run: Run, account: Account, *, playbook_id: str, model: HealthModel, at: datetime,
            trigger: str) -> HealthScore | None:
    """Score the account and keep the score; the new history row, or None when the score did not change."""
    scored = score(run, account, playbook_id=playbook_id, model=model, at=at)
    state = account.health_state
    if scored is None:
        return None
    if state is None:
        state = AccountHealth(account_id=account.id, score=scored.score, source=scored.source,
                              playbook_id=playbook_id, computed_at=run.now, peak=scored.score, contributions=[])
        account.health_state = state
        previous = None
    else:
        previous = state.score
        state.computed_at = run.now  # looked at now, changed or not
        if (state.score, state.source, state.playbook_id) == (scored.score, scored.source, playbook_id):
            # The same score: its parts may have moved (a new usage reading), the history has not.
            if state.contributions != scored.contributions:
                state.contributions = scored.contributions
            return None
    row = HealthScore(account_id=account.id, score=scored.score, previous=previous, source=scored.source,
                      playbook_id=playbook_id, computed_at=run.now, trigger=trigger,
                      contributions=scored.contributions, detail={})
    run.session.add(row)
    fell = _fell(model.dropped, previous=previous, peak=state.peak, score=scored.score)
    if fell is not None:
        run.session.flush()  # the health.dropped signal names the row
        row.dropped_signal_id = _send_dropped(run, account, row, peak=state.peak, fell=fell, playbook_id=playbook_id)
        row.detail = {"dropped": fell}
        state.peak = scored.score  # the next fall is measured from here
    else:
        state.peak = max(state.peak, scored.score)
    state.score, state.source, state.playbook_id = scored.score, scored.source, playbook_id
    state.contributions = scored.contributions
    return row


def _fell(rule: HealthDrop, *, previous: int | None, peak: int, score: int) -> str | None:
    """Why this score is a drop (`by` from the peak, or across `below`), or None."""
    if previous is None or score >= previous:
        return None
    if rule.below is not None and previous >= rule.below > score:
        return f"below {rule.below:g}"
    if rule.by is not None and peak - score >= rule.by:
        return f"by {peak - score} from {peak}"
    return None


def _send_dropped(run: Run, account: Account, row: HealthScore, *, peak: int, fell: str,
                  playbook_id: str) -> int | None:
    reasons = top_reasons(row.contributions)
    payload = {"score": row.score, "previous": row.previous, "peak": peak, "fell_by": peak - row.score,
               "rule": fell, "reasons": "; ".join(reasons) or "the imported score fell", "model": playbook_id,
               "health_score_id": row.id}
    # The key is the history row: a rerun that finds the same score adds no row and sends nothing.
    result = signals.ingest(session=run.session, now=run.now, settings=run.settings, source=SOURCE, raw={
        "type": DROPPED, "account": {"id": account.id}, "occurred_at": run.now.isoformat(),
        "payload": payload, "dedupe_key": f"health.dropped:{account.id}:{row.id}"})
    audit.record(run.session, at=run.now, action=AuditAction.HEALTH_DROPPED, rule=f"health: dropped {fell}",
                 reason=f"health fell from {row.previous} to {row.score} ({fell})", account_id=account.id,
                 playbook_id=playbook_id, detail=payload)
    return result.signal_id


# -- the scheduler's part ----------------------------------------------------------------------


@dataclass
class RecomputeReport:
    accounts: int = 0
    changed: int = 0
    dropped: int = 0
    errors: int = 0


def recompute_all(*, runtime: Runtime, now: datetime, page: int = 500) -> RecomputeReport:
    """Rescore every account that has not churned, a page of accounts per transaction.

    Accounts another worker holds are left for the next run; one account that fails is logged and
    counted, never stops the rest.
    """
    report = RecomputeReport()
    after = 0
    while True:
        with unit_of_work(runtime.sessions) as session:
            ids = list(session.scalars(select(Account.id).where(Account.id > after, Account.churned_at.is_(None))
                                       .order_by(Account.id).limit(page)))
            if not ids:
                return report
            after = ids[-1]
            _recompute_page(session, settings=runtime.settings, now=now, ids=ids, report=report)
            if len(ids) < page:
                return report


def _recompute_page(session: Session, *, settings: Settings, now: datetime, ids: list[int],
                    report: RecomputeReport) -> None:
    run = Run(session, settings, now)
    found = active_model(run.playbooks())
    if found is None:
        # No model in force (deactivated or paused): account.health reads the CRM's field again.
        # The history stays; a model applied later starts from a first score without a drop.
        session.execute(delete(AccountHealth).where(AccountHealth.account_id.in_(ids)))
        return
    playbook_id, model = found
    for account in lock_accounts(session, ids, skip_locked=True):
        report.accounts += 1
        try:
            with session.begin_nested():
                row = rescore(run, account, playbook_id=playbook_id, model=model, at=now, trigger="scheduler")
        except Exception as exc:
            if connection_lost(exc):
                raise
            if is_transient(exc):  # nothing was kept; the next run scores the account again
                log.warning("health of account %s deferred to the next run: %s", account.id, describe_error(exc))
                continue
            log.error("health of account %s could not be recomputed: %s", account.id, describe_error(exc))
            report.errors += 1
            continue
        if row is not None:
            report.changed += 1
            report.dropped += int(row.dropped_signal_id is not None)


@job("health.recompute", title="Recompute account health scores", every=timedelta(hours=1))
def _recompute_job(*, runtime: Runtime, now: datetime) -> JobResult:
    report = recompute_all(runtime=runtime, now=now)
    return JobResult(items=report.changed, errors=report.errors,
                     detail=f"{report.accounts} accounts scored, {report.dropped} health.dropped sent")
