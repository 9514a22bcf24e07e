"""Monitors: watches over each account's signals that fire a signal of their own.

A window monitor (`on: product.usage, measure: avg(active_users), over: 7d, when: change <= -40`)
folds each arriving signal into its account's current window (`monitor_windows`) and checks
`when` against that window and the one before it: two indexed row reads per signal, whatever
the history. Wall-clock windows are aligned to Mondays 00:00 UTC (7d windows are ISO weeks);
business-time windows ("4 business days") follow one another from the account's first signal,
on the default calendar. A signal older than the account's current window is counted in the
window that holds it, if that window is still kept, and never fires.

An absence monitor (`absent: product.usage, for: 14d`) keeps when the type was last seen per
account (`monitor_silences`); the `monitors.absence` job fires for the accounts whose silence
is due, an index range read. Only accounts that sent the type once can go quiet.

A firing is stored once per monitor, account and window (`monitor_firings`, unique) and sends
a signal of the monitor's `emit` type through intake (dedupe key of the same three), which
playbooks enroll on. Nothing here commits.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import Select, bindparam, select, union_all
from sqlalchemy.orm import Session

from orchestrator import audit
from orchestrator.audit import AuditAction
from orchestrator.config import Settings
from orchestrator.db import unit_of_work
from orchestrator.intake import signals
from orchestrator.journeys.steps import Run, fresh, lock_accounts
from orchestrator.models import Account, MonitorFiring, MonitorSilence, MonitorWindow, Signal
from orchestrator.playbook.expressions import ExpressionError
from orchestrator.playbook.model import Monitor, Playbook
from orchestrator.playbook.store import active_playbooks
from orchestrator.worker.jobs import JobResult, job

if TYPE_CHECKING:
    from orchestrator.runtime import Runtime

__all__ = ["figures_at", "fold", "observe", "preload", "preload_windows", "sweep_silences"]

log = logging.getLogger(__name__)

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday: wall-clock windows start on its multiples
T = TypeVar("T")
_MAX_CHAINED_WINDOWS = 1000  # after a longer gap a business-time window restarts at the signal


def monitor_key(playbook: Playbook, monitor: Monitor) -> str:
    return f"{playbook.id}/{monitor.id}"


def observe(run: Run, account: Account, signal: Signal) -> None:
    """Fold `signal` into every active monitor that watches its type, firing those it crosses."""
    for playbook, monitor in run.watching(signal.type):
        key = monitor_key(playbook, monitor)
        if monitor.absent:
            _seen(run, key, monitor, account.id, signal.occurred_at)
        else:
            _aggregate(run, key, monitor, account.id, signal)


def preload(run: Run, batch: Sequence[Signal], *, windows: Sequence[tuple[str, int]] = ()) -> None:
    """Read the windows and silences this batch's signals fold into, one statement for each kind.

    What `_window_for`, `_aggregate` and `_seen` would ask per monitor and account (the latest
    window and the one before it, the silence) goes into the batch's memo up front; without a
    memo (one signal at a time) nothing is read ahead. `windows` are other (key, account) pairs
    to read with them (the health measures').
    """
    if run.memo is None:
        return
    accounts_by_type: dict[str, set[int]] = {}
    for signal in batch:
        if signal.account_id is not None:
            accounts_by_type.setdefault(signal.type, set()).add(signal.account_id)
    windowed: list[tuple[str, int]] = []
    silent: list[tuple[str, int]] = []
    for _version, playbook in run.playbooks():
        for monitor in playbook.monitors:
            for account_id in sorted(accounts_by_type.get(monitor.signal, ())):
                (silent if monitor.absent else windowed).append((monitor_key(playbook, monitor), account_id))
    preload_windows(run, [*windowed, *windows])
    for first in range(0, len(silent), _PRELOAD_CHUNK):
        _preload_silences(run, silent[first:first + _PRELOAD_CHUNK])


_PRELOAD_CHUNK = 100  # (monitor, account) pairs per statement


def preload_windows(run: Run, pairs: list[tuple[str, int]]) -> None:
    """Remember the latest window of each (key, account) pair and the one before it, for the batch.

    Health measures keep their windows under their own keys and read them through this too.
    """
    for first in range(0, len(pairs), _PRELOAD_CHUNK):
        _preload_windows(run, pairs[first:first + _PRELOAD_CHUNK])


def _preload_windows(run: Run, pairs: list[tuple[str, int]]) -> None:
    # One index probe per pair (its two newest windows), so the cost does not grow with history.
    if run.memo is None or not pairs:
        return
    params: dict[str, Any] = {}
    for i, (key, account_id) in enumerate(pairs):
        params[f"key_{i}"], params[f"account_{i}"] = key, account_id
    found: dict[tuple[str, int], list[MonitorWindow]] = {pair: [] for pair in pairs}
    for window in run.session.scalars(_windows_query(len(pairs)), params):
        found[(window.monitor_key, window.account_id)].append(window)
    memo = cast(dict[tuple[Any, ...], Any], run.memo)
    for (key, account_id), windows in found.items():
        windows.sort(key=lambda window: window.window_start, reverse=True)
        latest = windows[0] if windows else None
        memo[("monitor_latest", key, account_id)] = latest
        if latest is not None:
            memo[("monitor_previous", key, account_id, latest.window_start)] = windows[1] if len(windows) > 1 else None


@functools.lru_cache(maxsize=_PRELOAD_CHUNK)
def _windows_query(pairs: int) -> Select[tuple[MonitorWindow]]:
    # Built once per number of pairs: a hundred probes cost far more to build and key than to run.
    probes = [select(MonitorWindow.id).where(MonitorWindow.monitor_key == bindparam(f"key_{i}"),
                                             MonitorWindow.account_id == bindparam(f"account_{i}"))
              .order_by(MonitorWindow.window_start.desc()).limit(2).subquery() for i in range(pairs)]
    return select(MonitorWindow).where(MonitorWindow.id.in_(union_all(*[select(probe.c.id) for probe in probes])))


def _preload_silences(run: Run, pairs: list[tuple[str, int]]) -> None:
    keys = sorted({key for key, _ in pairs})
    account_ids = sorted({account_id for _, account_id in pairs})
    found = {(silence.monitor_key, silence.account_id): silence for silence in run.session.scalars(
        select(MonitorSilence).where(MonitorSilence.monitor_key.in_(keys), MonitorSilence.account_id.in_(account_ids)))}
    memo = cast(dict[tuple[Any, ...], Any], run.memo)
    for key, account_id in pairs:
        memo[("monitor_silence", key, account_id)] = found.get((key, account_id))


# -- window monitors ---------------------------------------------------------------------


def fold(run: Run, key: str, monitor: Monitor, account_id: int,
         signal: Signal) -> tuple[MonitorWindow | None, bool]:
    """Count `signal` in the window of `key` that holds it; that window, and whether it is the current one.

    Health measures keep their windows here too (under their own keys), so they read the same
    figures a monitor's `when` does at the same cost.
    """
    window, current = _window_for(run, key, monitor, account_id, signal.occurred_at)
    if window is None:
        return None, False  # older than every window still kept
    value = _number((signal.payload or {}).get(monitor.field)) if monitor.field else None
    window.signals += 1
    if value is not None:
        window.values += 1
        window.total += value
        window.low = value if window.low is None else min(window.low, value)
        window.high = value if window.high is None else max(window.high, value)
    window.updated_at = run.now
    return window, current


def figures_at(run: Run, key: str, monitor: Monitor, account_id: int, at: datetime) -> dict[str, Any]:
    """value, previous, change and count of the account's window at `at` (the current one if `at` is older).

    A window that has ended with no signal after it reads as empty (count and sum 0), with the
    ended one as the window before when they are adjacent: the scheduler's view of a quiet account.
    """
    latest = _remembered(run, ("monitor_latest", key, account_id), lambda: run.session.scalar(
        select(MonitorWindow).where(MonitorWindow.monitor_key == key, MonitorWindow.account_id == account_id)
        .order_by(MonitorWindow.window_start.desc()).limit(1)))
    if latest is None:
        return _figures(monitor, None, None)
    if at < latest.window_end:
        return _figures(monitor, latest, _previous(run, key, account_id, latest))
    start, _end = _bounds(run, monitor, at, after=latest.window_end)
    return _figures(monitor, None, latest if start == latest.window_end else None)


def _previous(run: Run, key: str, account_id: int, window: MonitorWindow) -> MonitorWindow | None:
    previous = _remembered(run, ("monitor_previous", key, account_id, window.window_start), lambda: run.session.scalar(
        select(MonitorWindow).where(MonitorWindow.monitor_key == key, MonitorWindow.account_id == account_id,
                                    MonitorWindow.window_start < window.window_start)
        .order_by(MonitorWindow.window_start.desc()).limit(1)))
    if previous is not None and previous.window_end != window.window_start:
        return None  # the window just before had no signal at all
    return previous


def _aggregate(run: Run, key: str, monitor: Monitor, account_id: int, signal: Signal) -> None:
    window, current = fold(run, key, monitor, account_id, signal)
    if window is None or not current:
        return  # a late signal corrects an older window's figures; only the current window fires
    previous = _previous(run, key, account_id, window)
    figures = _figures(monitor, window, previous)
    try:
        crossed = bool(monitor.when is not None and monitor.when.evaluate(figures))
    except ExpressionError:
        crossed = False  # e.g. `change` is unknown without a previous window: nothing to compare
    if crossed:
        payload = {"monitor": monitor.id, "measure": _measure_text(monitor), "over": monitor.window.text,
                   **{name: _rounded(v) for name, v in figures.items()},
                   "window_start": window.window_start.isoformat(), "window_end": window.window_end.isoformat(),
                   "trigger_signal_id": signal.id}
        fire(run.session, settings=run.settings, key=key, monitor=monitor, account_id=account_id,
             window_key=window.window_start.isoformat(), occurred_at=signal.occurred_at, payload=payload,
             now=run.now)


def _window_for(run: Run, key: str, monitor: Monitor, account_id: int,
                at: datetime) -> tuple[MonitorWindow | None, bool]:
    """The window that holds `at` (created when it is a new current one), and whether it is the current one."""
    session = run.session
    latest = _remembered(run, ("monitor_latest", key, account_id), lambda: session.scalar(
        select(MonitorWindow).where(MonitorWindow.monitor_key == key, MonitorWindow.account_id == account_id)
        .order_by(MonitorWindow.window_start.desc()).limit(1)))
    if latest is not None and at < latest.window_start:
        older = session.scalar(
            select(MonitorWindow).where(MonitorWindow.monitor_key == key, MonitorWindow.account_id == account_id,
                                        MonitorWindow.window_start <= at)
            .order_by(MonitorWindow.window_start.desc()).limit(1))
        return (older, False) if older is not None and at < older.window_end else (None, False)
    if latest is not None and at < latest.window_end:
        return latest, True
    start, end = _bounds(run, monitor, at, after=latest.window_end if latest is not None else None)
    window = MonitorWindow(monitor_key=key, account_id=account_id, window_start=start, window_end=end,
                           signals=0, values=0, total=0.0, updated_at=run.now)
    session.add(window)
    session.flush()
    if run.memo is not None:
        run.memo[("monitor_latest", key, account_id)] = window
        # The window before the new one is the one that was the latest.
        run.memo[("monitor_previous", key, account_id, start)] = latest
    return window, True


def _remembered(run: Run, question: tuple[Any, ...], ask: Callable[[], T]) -> T:
    """The answer to `question`, asked of the database once per engine batch (every time outside one).

    What is remembered is the row object itself, which the batch then changes in place.
    """
    if run.memo is None:
        return ask()
    if question not in run.memo:
        run.memo[question] = ask()
    return cast(T, run.memo[question])


def _bounds(run: Run, monitor: Monitor, at: datetime, *, after: datetime | None) -> tuple[datetime, datetime]:
    duration = monitor.window
    if not duration.is_business:
        length = duration.calendar
        start = EPOCH + ((at - EPOCH) // length) * length
        return start, start + length
    calendar = run.settings.calendar()
    start = after if after is not None else at
    for _ in range(_MAX_CHAINED_WINDOWS):
        end = calendar.add(start, duration)
        if at < end:
            return start, end
        start = end
    return at, calendar.add(at, duration)


def _figures(monitor: Monitor, window: MonitorWindow | None, previous: MonitorWindow | None) -> dict[str, Any]:
    value = _measure(monitor, window)
    before = _measure(monitor, previous)
    if monitor.measure in ("count", "sum"):
        # No signal in a window: it counted nothing.
        value = 0.0 if value is None else value
        before = 0.0 if before is None else before
    change = (value - before) / abs(before) * 100 if value is not None and before else None
    return {"value": value, "previous": before, "change": change, "count": window.signals if window else 0}


def _measure(monitor: Monitor, window: MonitorWindow | None) -> float | None:
    if window is None:
        return None
    if monitor.measure == "count":
        return float(window.signals)
    if monitor.measure == "sum":
        return window.total
    if monitor.measure == "avg":
        return window.total / window.values if window.values else None
    return window.low if monitor.measure == "min" else window.high


def _measure_text(monitor: Monitor) -> str:
    return monitor.measure if monitor.field is None else f"{monitor.measure}({monitor.field})"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


# -- absence monitors --------------------------------------------------------------------


def _seen(run: Run, key: str, monitor: Monitor, account_id: int, at: datetime) -> None:
    silence = _remembered(run, ("monitor_silence", key, account_id), lambda: run.session.scalar(
        select(MonitorSilence).where(MonitorSilence.monitor_key == key, MonitorSilence.account_id == account_id)))
    if silence is None:
        silence = MonitorSilence(monitor_key=key, account_id=account_id, last_seen_at=at)
        run.session.add(silence)
        if run.memo is not None:
            run.memo[("monitor_silence", key, account_id)] = silence
    elif at <= silence.last_seen_at:
        return  # a late signal: the clock runs from the newest one
    silence.last_seen_at = at
    silence.silent_at = run.settings.calendar().add(at, monitor.window)


@dataclass
class SilenceReport:
    fired: int = 0
    checked: int = 0


def sweep_silences(*, session: Session, settings: Settings, now: datetime, limit: int = 500) -> SilenceReport:
    """Fire the absence monitors whose silence is due, once per silence; the caller commits."""
    report = SilenceReport()
    monitors = {monitor_key(playbook, m): m for _v, playbook in active_playbooks(session=session)
                for m in playbook.monitors if m.absent}
    due = session.execute(select(MonitorSilence.id, MonitorSilence.account_id)
                          .where(MonitorSilence.silent_at <= now).order_by(MonitorSilence.silent_at)
                          .limit(limit)).all()
    # Accounts another worker holds (the engine taking their signals) are left for the next run.
    locked = {account.id for account in lock_accounts(session, [account_id for _id, account_id in due],
                                                      skip_locked=True)}
    for silence_id, account_id in due:
        if account_id not in locked:
            continue
        silence = fresh(session, MonitorSilence, silence_id)
        if silence is None or silence.silent_at is None or silence.silent_at > now:
            continue  # another worker fired it, or a signal moved the clock meanwhile
        report.checked += 1
        monitor = monitors.get(silence.monitor_key)
        if monitor is None:
            silence.silent_at = None  # its playbook is no longer active: stop watching
            continue
        if _arrived_since(session, monitor, silence):
            continue  # a signal of the type is stored but not yet evaluated: the engine moves the clock
        payload = {"monitor": monitor.id, "absent": monitor.signal, "silent_for": monitor.window.text,
                   "last_seen_at": silence.last_seen_at.isoformat(),
                   "days_silent": (now - silence.last_seen_at) // timedelta(days=1)}
        if fire(session, settings=settings, key=silence.monitor_key, monitor=monitor, account_id=silence.account_id,
                window_key=f"silence:{silence.last_seen_at.isoformat()}", occurred_at=silence.silent_at,
                payload=payload, now=now):
            report.fired += 1
        silence.silent_at = None
    return report


def _arrived_since(session: Session, monitor: Monitor, silence: MonitorSilence) -> bool:
    return session.scalar(select(Signal.id).where(Signal.account_id == silence.account_id,
                                                  Signal.type == monitor.signal,
                                                  Signal.occurred_at > silence.last_seen_at).limit(1)) is not None


# -- firing ------------------------------------------------------------------------------


def fire(session: Session, *, settings: Settings, key: str, monitor: Monitor, account_id: int, window_key: str,
         occurred_at: datetime, payload: dict[str, Any], now: datetime) -> bool:
    """Record a firing and send its signal, unless this monitor already fired for the account and window."""
    if session.scalar(select(MonitorFiring.id).where(MonitorFiring.monitor_key == key,
                                                     MonitorFiring.account_id == account_id,
                                                     MonitorFiring.window_key == window_key)) is not None:
        return False
    result = signals.ingest(session=session, now=now, settings=settings, source="monitor", raw={
        "type": monitor.emit, "account": {"id": account_id}, "occurred_at": occurred_at.isoformat(),
        "payload": payload, "dedupe_key": f"monitor:{key}:{account_id}:{window_key}"})
    session.add(MonitorFiring(monitor_key=key, account_id=account_id, window_key=window_key, fired_at=now,
                              signal_id=result.signal_id, detail=payload))
    playbook_id = key.split("/", 1)[0]
    audit.record(session, at=now, action=AuditAction.MONITOR_FIRED, rule=f"monitor:{key}",
                 reason=f"{monitor.id} fired ({monitor.emit})", account_id=account_id, playbook_id=playbook_id,
                 detail={"window": window_key, **payload})
    session.flush()
    return True


@job("monitors.absence", title="Fire absence monitors whose silence is due", every=timedelta(minutes=15))
def _absence_job(*, runtime: Runtime, now: datetime) -> JobResult:
    with unit_of_work(runtime.sessions) as session:
        report = sweep_silences(session=session, settings=runtime.settings, now=now)
    return JobResult(items=report.fired, detail=f"{report.checked} silences due")
