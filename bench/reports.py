"""Report query time over many tasks against few, in one run.

    python bench/reports.py [--small 10000] [--large 1000000] [--database-url URL]

Builds two scratch databases (SQLite files, or with --database-url new PostgreSQL databases beside
the one named, dropped afterwards) with `small` and `large` tasks, each task the approval of its own
step run, spread over 40 steps of 4 playbooks, 20 owners in 4 teams, 100 accounts, 30 days and a mix
of outcomes; per ten tasks a journey started by a signal, a stage change and an escalation; per twenty
a feedback verdict; per hundred an exception item. On top of those, per ten tasks a ticket-triage journey
whose `route` step ran (half automated, half to a person: an approval to confirm or overturn, or an action
for a novel or unscored ticket) and an expansion-first-touch journey whose `split` step put it in its
account's variant (the human variant's CSM call a task, a quarter of them rated; every fourth converting
to renew), with the step ids, threshold, categories, experiment and variant hashing of the shipped
playbooks: the rows the routing and experiments reports aggregate. Bulk inserted with Core executemany.
Then times each report in the catalog (best of 3; sla by team and week, time-saved by playbook and week)
on both and prints the times and the ratio large/small next to the ratio of the sizes. Exits non-zero
when a report returns no rows, or routing or experiments count nothing: timing an empty query says nothing.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Connection, Engine, create_engine, func, insert, select, text
from sqlalchemy.engine import URL

from orchestrator import schema
from orchestrator.db import make_engine, make_session_factory, parse_database_url
from orchestrator.journeys.experiments import account_key, assign_variant
from orchestrator.models import (
    Account,
    ExceptionItem,
    Journey,
    Owner,
    PlaybookVersion,
    Signal,
    SlaEvent,
    StageChange,
    StepRun,
    Task,
    TaskFeedback,
)
from orchestrator.playbook.loader import load_playbook
from orchestrator.playbook.model import Playbook, RouteStep, SplitStep
from orchestrator.reports.catalog import REPORTS, run_report

T0 = datetime(2026, 11, 1, tzinfo=UTC)
CHUNK = 20_000
OUTCOMES = [("done", "approved"), ("done", "approved"), ("done", "approved"), ("rejected", "rejected"),
            ("cancelled", "cancelled"), ("open", None)]
OVERSIGHT = ["in_the_loop", "on_the_loop", None, None]
STEP_STATUS = ["done", "done", "overridden", "skipped", "done"]
BY = {"sla": "team,week", "time-saved": "playbook,week"}  # the widest grouping each offers
PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
TRIAGE = PLAYBOOKS / "adopt" / "ticket-triage.yaml"
EXPANSION = PLAYBOOKS / "expand" / "expansion-first-touch.yaml"
# Figures that must add up to more than 0 over the report's rows, beyond the rows being there: a routing
# report of only automated runs, or an experiment nobody converted in, would time half the query.
MUST_COUNT = {"routing": ("decisions", "automated", "human", "proposed", "confirmed", "overturned", "undecided",
                          "no_proposal"),
              "experiments": ("journeys", "converted", "tasks", "rated")}


def _fill(engine: Engine, tasks: int) -> None:
    with engine.begin() as connection:
        owners = [connection.execute(insert(Owner).values(
            email=f"o{n}@x.example", name=f"O{n}", role="csm", team=None if n == 19 else f"team{n % 4}")
            .returning(Owner.id)).scalar_one() for n in range(20)]
        accounts = [connection.execute(insert(Account).values(
            name=f"A{n}", owner_id=owners[n % 20], stage="onboard", segment=["smb", "mid", "enterprise"][n % 3])
            .returning(Account.id)).scalar_one() for n in range(100)]
        versions = [connection.execute(insert(PlaybookVersion).values(
            playbook_id=f"pb{n}", version=1, name=f"PB{n}", stage=["acquire", "onboard", "adopt", "renew"][n],
            checksum=hashlib.sha256(str(n).encode()).hexdigest(), source_text="", source_path=f"pb{n}.yaml")
            .returning(PlaybookVersion.id)).scalar_one() for n in range(4)]
        journeys = max(1, tasks // 10)
        for start in range(0, journeys, CHUNK):
            connection.execute(insert(Signal), [
                {"type": "lead.created", "dedupe_key": f"s{j}", "account_id": accounts[j % 100], "source": "cli",
                 "payload": {}, "occurred_at": T0 + timedelta(seconds=(j * 7907) % (30 * 86400)),
                 "received_at": T0} for j in range(start, min(journeys, start + CHUNK))])
        first_signal = connection.execute(text("SELECT min(id) FROM signals")).scalar_one()
        for start in range(0, journeys, CHUNK):
            connection.execute(insert(Journey), [
                {"account_id": accounts[j % 100], "playbook_id": f"pb{j % 4}", "playbook_version_id": versions[j % 4],
                 "enrollment_key": f"k{j}", "status": "waiting", "enrolled_at": T0, "context": {},
                 "trigger_signal_id": first_signal + j} for j in range(start, min(journeys, start + CHUNK))])
        first_journey = connection.execute(text("SELECT min(id) FROM journeys")).scalar_one()
        stages = ["acquire", "onboard", "adopt", "expand", "renew"]
        for start in range(0, journeys, CHUNK):
            connection.execute(insert(StageChange), [
                {"account_id": accounts[j % 100], "from_stage": stages[j % 4], "to_stage": stages[(j % 4) + 1],
                 "at": T0 + timedelta(seconds=(j * 7901) % (30 * 86400)), "seconds_in_previous": 3600 * (j % 500),
                 "journey_id": first_journey + j, "reason": ""} for j in range(start, min(journeys, start + CHUNK))])
        items = max(1, tasks // 100)
        connection.execute(insert(ExceptionItem), [
            {"category": ["missing_field", "unknown_account", "no_assignee"][i % 3], "owner": f"o{i % 20}@x.example",
             "message": "m", "detail": {}, "status": "open" if i % 2 else "resolved", "occurrences": 1 + i % 3,
             "journey_id": first_journey + i % journeys,
             "created_at": T0 + timedelta(seconds=(i * 7919) % (30 * 86400)),
             "respond_by": T0 + timedelta(seconds=(i * 7919) % (30 * 86400) + 8 * 3600)} for i in range(items)])
        for start in range(0, tasks, CHUNK):
            ids = range(start, min(tasks, start + CHUNK))
            connection.execute(insert(StepRun), [
                {"journey_id": first_journey + i % journeys, "step_id": f"s{i % 10}",
                 "kind": ["automated", "automated", "human", "hybrid"][i % 4],
                 "oversight": OVERSIGHT[i % 4], "status": STEP_STATUS[i % 5],
                 "reason": "crm.update_field ran" if i % 4 == 1 else "", "outcome": {"estimate_minutes": 15},
                 "started_at": T0 + timedelta(seconds=(i * 7919) % (30 * 86400))} for i in ids])
        first_run = connection.execute(text("SELECT min(id) FROM step_runs")).scalar_one()
        for start in range(0, tasks, CHUNK):
            ids = range(start, min(tasks, start + CHUNK))
            rows = []
            for i in ids:
                status, outcome = OUTCOMES[i % 6]
                created = T0 + timedelta(seconds=(i * 7919) % (30 * 86400))
                rows.append({"account_id": accounts[i % 100], "journey_id": first_journey + i % journeys,
                             "step_run_id": first_run + i, "owner_id": owners[i % 20], "kind": "approval",
                             "title": "t", "recommendation": "", "brief": {}, "brief_text": "", "status": status,
                             "outcome": outcome, "priority": "normal", "created_at": created,
                             "due_at": created + timedelta(days=1), "escalation_level": 0, "sla_state": "on_track",
                             "paused_seconds": (i % 7) * 60, "ack_outcome": "met" if i % 3 else "breached",
                             "due_outcome": None if outcome is None else ("met" if i % 5 else "breached"),
                             "acknowledged_at": created + timedelta(seconds=60 + i % 900) if i % 2 else None,
                             "completed_at": created + timedelta(seconds=5 + i % 400) if outcome else None})
            connection.execute(insert(Task), rows)
        first_task = connection.execute(text("SELECT min(id) FROM tasks")).scalar_one()
        for start in range(0, tasks // 10, CHUNK):  # an escalation for every tenth task, rung 1 or 2
            connection.execute(insert(SlaEvent), [
                {"task_id": first_task + i * 10, "kind": "escalated", "level": 1 + i % 2, "at": T0, "detail": {}}
                for i in range(start, min(tasks // 10, start + CHUNK))])
        for start in range(0, tasks // 20, CHUNK):  # feedback on every twentieth task
            connection.execute(insert(TaskFeedback), [
                {"task_id": first_task + i * 20, "by": "o@x.example", "useful": bool(i % 3), "note": "",
                 "created_at": T0, "updated_at": T0} for i in range(start, min(tasks // 20, start + CHUNK))])
        _fill_routing(connection, tasks, accounts, owners)
        _fill_experiments(connection, tasks, accounts, owners)


def _chunked(connection: Connection, model: Any, rows: Iterable[dict[str, Any]]) -> None:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == CHUNK:
            connection.execute(insert(model), batch)
            batch = []
    if batch:
        connection.execute(insert(model), batch)


def _next_id(connection: Connection, model: Any) -> int:
    # Ids are handed out in insert order on a scratch database nobody else writes to (as min(id) above).
    return int(connection.execute(select(func.coalesce(func.max(model.id), 0))).scalar_one()) + 1


def _version(connection: Connection, path: Path) -> tuple[Playbook, int]:
    playbook = load_playbook(path)
    source = path.read_text()
    version = connection.execute(insert(PlaybookVersion).values(
        playbook_id=playbook.id, version=1, name=playbook.name, stage=playbook.stage,
        checksum=hashlib.sha256(source.encode()).hexdigest(), source_text=source,
        source_path=str(path.relative_to(PLAYBOOKS.parent))).returning(PlaybookVersion.id)).scalar_one()
    return playbook, version


def _task(*, account: int, journey: int, run: int, owner: int, kind: str, outcome: str | None,
          created: datetime, n: int) -> dict[str, Any]:
    status = {None: "open", "approved": "done", "done": "done", "rejected": "rejected"}[outcome]
    return {"account_id": account, "journey_id": journey, "step_run_id": run, "owner_id": owner, "kind": kind,
            "title": "t", "recommendation": "", "brief": {}, "brief_text": "", "status": status, "outcome": outcome,
            "priority": "normal", "created_at": created, "due_at": created + timedelta(hours=4),
            "escalation_level": 0, "sla_state": "on_track", "paused_seconds": 0,
            "ack_outcome": "met" if n % 3 else "breached",
            "due_outcome": None if outcome is None else ("met" if n % 5 else "breached"),
            "acknowledged_at": created + timedelta(seconds=60 + n % 900) if n % 2 else None,
            "completed_at": created + timedelta(seconds=300 + n % 3600) if outcome else None}


def _fill_routing(connection: Connection, tasks: int, accounts: list[int], owners: list[int]) -> None:
    """Per ten tasks a ticket-triage journey and its route step's run; a task for each one routed to a person."""
    playbook, version = _version(connection, TRIAGE)
    step = next(s for s in playbook.steps if isinstance(s, RouteStep))
    categories = [category for category, _ in step.automated]
    count = max(1, tasks // 10)
    first_signal, first_journey, first_run = (_next_id(connection, m) for m in (Signal, Journey, StepRun))

    def at(r: int) -> datetime:
        return T0 + timedelta(seconds=(r * 7927) % (30 * 86400))

    def decision(r: int) -> tuple[str, str | None, str | None]:
        """(reason, category, task outcome): confident half the time; a quarter below the threshold (an
        approval: approved, approved, rejected or undecided); an eighth each novel and unscored (an action)."""
        if r % 4 < 2:
            return "confident", categories[r % len(categories)], None
        outcome = ["approved", "approved", "rejected", None][(r // 4) % 4]
        if r % 4 == 2:
            return "below_threshold", categories[r % len(categories)], outcome
        return ("novel_category", "refund_dispute", outcome) if (r // 4) % 2 else ("unscored", None, outcome)

    _chunked(connection, Signal, (
        {"type": playbook.enroll.signal, "dedupe_key": f"t{r}", "account_id": accounts[r % 100], "source": "cli",
         "payload": {"ticket_id": f"T{r}", "subject": "s"}, "occurred_at": at(r), "received_at": at(r)}
        for r in range(count)))
    _chunked(connection, Journey, (
        {"account_id": accounts[r % 100], "playbook_id": playbook.id, "playbook_version_id": version,
         "enrollment_key": f"t{r}", "status": "waiting" if decision(r)[0] != "confident" and decision(r)[2] is None
         else "completed", "enrolled_at": at(r), "context": {}, "trigger_signal_id": first_signal + r}
        for r in range(count)))

    def run(r: int) -> dict[str, Any]:
        reason, category, outcome = decision(r)
        path = "automated" if reason == "confident" else "human"
        score = None if reason == "unscored" else (0.9 if path == "automated" else 0.5)
        routing = {"score": score, "threshold": step.threshold, "category": category, "path": path,
                   "reason": reason, "evidence": [] if score is None else ["invoice"],
                   "proposed": dict(step.automated)[category].goto if category in categories else None}
        waiting = path == "human" and outcome is None
        return {"journey_id": first_journey + r, "step_id": step.id, "kind": "route", "oversight": None,
                "status": "waiting" if waiting else "done", "reason": reason,
                "outcome": {"routing": routing, "estimate_minutes": step.estimate_minutes},
                "started_at": at(r), "finished_at": None if waiting else at(r) + timedelta(minutes=30)}

    _chunked(connection, StepRun, (run(r) for r in range(count)))
    _chunked(connection, Task, (
        _task(account=accounts[r % 100], journey=first_journey + r, run=first_run + r, owner=owners[r % 20],
              kind="approval" if decision(r)[0] == "below_threshold" else "action",
              outcome=decision(r)[2] if decision(r)[0] == "below_threshold" or decision(r)[2] is None else "done",
              created=at(r), n=r)
        for r in range(count) if decision(r)[0] != "confident"))


def _fill_experiments(connection: Connection, tasks: int, accounts: list[int], owners: list[int]) -> None:
    """Per ten tasks an expansion-first-touch journey whose split step ran, then its variant's first step."""
    playbook, version = _version(connection, EXPANSION)
    split = next(s for s in playbook.steps if isinstance(s, SplitStep))
    # The variant is the account's, by the engine's own hash: every journey of an account goes the same way.
    variant = {a: assign_variant(split, playbook_id=playbook.id, key=account_key(domain=None, account_id=a))
               for a in accounts}
    count = max(1, tasks // 10)
    first_signal, first_journey, first_run, first_task = (
        _next_id(connection, m) for m in (Signal, Journey, StepRun, Task))
    statuses = ["completed", "completed", "exited", "stalled", "waiting"]

    def at(e: int) -> datetime:
        return T0 + timedelta(seconds=(e * 7933) % (30 * 86400))

    def human(e: int) -> bool:
        return variant[accounts[e % 100]].variant.name == "human"

    _chunked(connection, Signal, (
        {"type": playbook.enroll.signal, "dedupe_key": f"x{e}", "account_id": accounts[e % 100], "source": "cli",
         "payload": {}, "occurred_at": at(e), "received_at": at(e)} for e in range(count)))
    _chunked(connection, Journey, (
        {"account_id": accounts[e % 100], "playbook_id": playbook.id, "playbook_version_id": version,
         "enrollment_key": f"x{e}", "status": statuses[e % 5], "enrolled_at": at(e),
         "context": {"variants": {split.experiment: variant[accounts[e % 100]].variant.name}},
         "trigger_signal_id": first_signal + e} for e in range(count)))

    def runs(e: int) -> Iterator[dict[str, Any]]:
        assigned = variant[accounts[e % 100]]
        yield {"journey_id": first_journey + e, "step_id": split.id, "kind": "split", "oversight": None,
               "status": "done", "reason": f"variant {assigned.variant.name}",
               "outcome": {"variant": assigned.record()}, "started_at": at(e), "finished_at": at(e)}
        assert assigned.variant.goto.goto is not None
        yield {"journey_id": first_journey + e, "step_id": assigned.variant.goto.goto,
               "kind": "human" if human(e) else "automated", "oversight": None if human(e) else "on_the_loop",
               "status": "waiting" if statuses[e % 5] == "waiting" else "done", "reason": "",
               "outcome": {}, "started_at": at(e), "finished_at": None}

    # Two runs per journey, split first: journey e's follow-up run is first_run + 2e + 1.
    _chunked(connection, StepRun, (row for e in range(count) for row in runs(e)))
    called = [e for e in range(count) if human(e)]
    _chunked(connection, Task, (
        _task(account=accounts[e % 100], journey=first_journey + e, run=first_run + 2 * e + 1, owner=owners[e % 20],
              kind="action", outcome=None if statuses[e % 5] == "waiting" else "done", created=at(e), n=e)
        for e in called))
    _chunked(connection, TaskFeedback, (
        {"task_id": first_task + k, "by": "o@x.example", "useful": bool(k % 3), "note": "", "created_at": T0,
         "updated_at": T0} for k in range(0, len(called), 4)))
    # Conversion: the account leaves expand for renew a few days after the assignment.
    _chunked(connection, StageChange, (
        {"account_id": accounts[e % 100], "from_stage": playbook.stage, "to_stage": "renew",
         "at": at(e) + timedelta(days=1 + e % 10), "seconds_in_previous": 86400 * (1 + e % 10),
         "journey_id": first_journey + e, "reason": ""} for e in range(0, count, 4)))


def _database(base: URL | None, folder: Path) -> tuple[URL, Engine | None]:
    if base is None:
        return parse_database_url(f"sqlite:///{folder / f'r-{uuid.uuid4().hex[:6]}.db'}"), None
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"bench_reports_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    return base.set(database=name), admin


def _problems(name: str, rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return [f"{name}: no rows"]
    return [f"{name}: {figure} is 0 in every row" for figure in MUST_COUNT.get(name, ())
            if not sum(row[figure] or 0 for row in rows)]


def _measure(base: URL | None, folder: Path, tasks: int) -> tuple[dict[str, float], list[str]]:
    url, admin = _database(base, folder)
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
        started = time.perf_counter()
        _fill(engine, tasks)
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("ANALYZE"))
        print(f"  {tasks:>9,} tasks inserted in {time.perf_counter() - started:6.1f} s", flush=True)
        sessions = make_session_factory(engine)
        times, problems = {}, []
        for name in REPORTS:
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                rows = run_report(name, sessions=sessions, since=T0, until=T0 + timedelta(days=31),
                                  by=BY.get(name), estimates={"crm.update_field": 3})
                best = min(best, time.perf_counter() - started)
            times[name] = best
            problems += [f"{tasks:,} tasks: {problem}" for problem in _problems(name, rows)]
        return times, problems
    finally:
        engine.dispose()
        if admin is not None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            admin.dispose()


@click.command()
@click.option("--small", default=10_000, show_default=True)
@click.option("--large", default=1_000_000, show_default=True)
@click.option("--database-url", default=None, help="PostgreSQL server to create scratch databases on")
def main(small: int, large: int, database_url: str | None) -> None:
    base = parse_database_url(database_url) if database_url else None
    with tempfile.TemporaryDirectory() as folder:
        print(f"backend: {base.get_backend_name() if base else 'sqlite'}")
        few, problems = _measure(base, Path(folder), small)
        if not problems:  # no point in the long run when the short one measured nothing
            many, more = _measure(base, Path(folder), large)
            problems += more
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        sys.exit(1)
    print(f"{'report':<12}{small:>12,} tasks{large:>14,} tasks{'ratio':>9}   (sizes: x{large / small:,.0f})")
    for name in REPORTS:
        print(f"{name:<12}{few[name] * 1000:>12.1f} ms{many[name] * 1000:>14.1f} ms{many[name] / few[name]:>9.1f}")


if __name__ == "__main__":
    main()
