from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from sqlalchemy.orm import Session

from orchestrator import exception_queue, schema
from orchestrator.audit import timeline
from orchestrator.cli import main
from orchestrator.config import ExceptionCategory, Settings
from orchestrator.db import make_engine
from orchestrator.exception_queue import Category
from tests.factories import AccountFactory


def test_an_item_goes_to_the_configured_owner_due_in_business_time(session, settings, clock):
    account = AccountFactory()

    item = exception_queue.raise_item(session, settings=settings, category=Category.UNKNOWN_ACCOUNT,
                                      message="who is this?", at=clock.now(), account_id=account.id)

    assert item.owner == "data-steward@example.com"
    # 09:00 in New York plus 4 business hours.
    assert item.respond_by == datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
    assert [e.action for e in timeline(session, account_id=account.id)] == ["exception_raised"]


def test_a_window_skips_closing_time_and_public_holidays(session, settings):
    # Wednesday 15:00 New York: two hours left that day, Thursday is Thanksgiving.
    at = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)

    item = exception_queue.raise_item(session, settings=settings, category=Category.UNKNOWN_ACCOUNT,
                                      message="late", at=at)

    assert item.respond_by == datetime(2026, 11, 27, 16, 0, tzinfo=UTC)


def test_an_unconfigured_category_goes_to_the_default_owner_within_one_business_day(session, settings, clock):
    item = exception_queue.raise_item(session, settings=settings, category=Category.NO_ASSIGNEE,
                                      message="nobody to assign", at=clock.now())

    assert item.owner == "ops-lead@example.com"
    assert item.respond_by == datetime(2026, 11, 24, 14, 0, tzinfo=UTC)


def test_without_a_default_calendar_windows_are_utc_office_hours(session, clock):
    settings = Settings(database_url=session.get_bind().engine.url, exception_owner="lead@acme.example")
    friday_evening = datetime(2026, 11, 27, 16, 30, tzinfo=UTC)

    item = exception_queue.raise_item(session, settings=settings, category=Category.LOOP_GUARD,
                                      message="loop", at=friday_evening)

    assert item.owner == "lead@acme.example"
    assert item.respond_by == datetime(2026, 11, 30, 16, 30, tzinfo=UTC)
    assert clock.now() < item.respond_by


def test_listing_filters_by_status_and_category_most_urgent_first(session, settings, clock):
    late = exception_queue.raise_item(session, settings=settings, category=Category.NO_ASSIGNEE,
                                      message="b", at=clock.now())
    soon = exception_queue.raise_item(session, settings=settings, category=Category.UNKNOWN_ACCOUNT,
                                      message="a", at=clock.now())
    done = exception_queue.raise_item(session, settings=settings, category=Category.UNKNOWN_ACCOUNT,
                                      message="c", at=clock.now() - timedelta(days=3))
    exception_queue.resolve_item(session, item_id=done.id, by="steward@example.com", at=clock.now())

    assert exception_queue.list_items(session) == [soon, late]
    assert exception_queue.list_items(session, category="unknown_account") == [soon]
    assert exception_queue.list_items(session, status=None, category="unknown_account") == [done, soon]
    assert done.resolved_by == "steward@example.com" and done.resolved_at == clock.now()


def test_the_fallback_report_ranks_categories_by_frequency(session, settings, clock):
    t0 = clock.now()
    for category, times in ((Category.UNMATCHED_BRANCH, 1), (Category.NO_ASSIGNEE, 3),
                            (Category.UNKNOWN_ACCOUNT, 2)):
        for i in range(times):
            exception_queue.raise_item(session, settings=settings, category=category, message="x",
                                       at=t0 + timedelta(hours=i))
    exception_queue.raise_item(session, settings=settings, category=Category.UNMATCHED_BRANCH,
                                         message="last week", at=t0 - timedelta(days=7))
    first_unknown = exception_queue.list_items(session, category="unknown_account")[0]
    exception_queue.resolve_item(session, item_id=first_unknown.id, by="a@example.com", at=t0)

    report = exception_queue.fallback_report(session, since=t0 - timedelta(days=1), until=t0 + timedelta(days=1))

    assert [(r.category, r.count) for r in report] == [
        ("no_assignee", 3), ("unknown_account", 2), ("unmatched_branch", 1)]
    assert report[0].owner == "ops-lead@example.com"
    assert report[0].oldest_open == t0
    assert report[1].owner == "data-steward@example.com"
    assert report[1].oldest_open == t0 + timedelta(hours=1)


def test_the_weekly_report_groups_by_iso_week_current_week_last(session, settings, clock):
    t0 = clock.now()  # Monday of 2026-W48
    exception_queue.raise_item(session, settings=settings, category=Category.NO_ASSIGNEE, message="x", at=t0)
    for days_back in (1, 2):  # Sunday and Saturday of W47
        exception_queue.raise_item(session, settings=settings, category=Category.MISSING_FIELD, message="x",
                                   at=t0 - timedelta(days=days_back))

    weeks = exception_queue.weekly_fallback_report(session, now=t0 + timedelta(days=2), weeks=3)

    assert [w.week for w in weeks] == ["2026-W46", "2026-W47", "2026-W48"]
    assert weeks[0].categories == []
    assert [(r.category, r.count) for r in weeks[1].categories] == [("missing_field", 2)]
    assert [(r.category, r.count) for r in weeks[2].categories] == [("no_assignee", 1)]


def _cli_database(url) -> dict[str, str]:
    engine = make_engine(url)
    schema.upgrade(engine)
    engine.dispose()
    return {"HANDOFF_DATABASE_URL": url.render_as_string(hide_password=False)}


def test_exceptions_commands_list_report_and_resolve(fresh_database):
    env = _cli_database(fresh_database)
    engine = make_engine(fresh_database)
    now = datetime.now(UTC)
    settings = Settings(database_url=engine.url, exception_owner="ops@example.com",
                        exception_categories={"unknown_account": ExceptionCategory(
                            owner="steward@example.com")})
    with Session(engine) as session:
        for category in (Category.UNKNOWN_ACCOUNT, Category.UNKNOWN_ACCOUNT, Category.NO_ASSIGNEE):
            exception_queue.raise_item(session, settings=settings, category=category,
                                       message=f"{category} happened", at=now)
        session.commit()
    engine.dispose()
    runner = CliRunner()

    listed = runner.invoke(main, ["exceptions", "list", "--category", "unknown_account"], env=env)
    assert listed.exit_code == 0, listed.output
    assert len(listed.output.splitlines()) == 2
    assert "owner steward@example.com" in listed.output and "unknown_account happened" in listed.output

    resolved = runner.invoke(main, ["exceptions", "resolve", "1", "--by", "steward@example.com"], env=env)
    assert resolved.output == "#1 resolved by steward@example.com\n"
    assert len(runner.invoke(main, ["exceptions", "list"], env=env).output.splitlines()) == 2
    assert "resolved" in runner.invoke(main, ["exceptions", "list", "--all"], env=env).output

    report = runner.invoke(main, ["exceptions", "report", "--weeks", "2"], env=env)
    assert report.exit_code == 0, report.output
    lines = report.output.splitlines()
    assert lines[0].endswith(": 0 items")
    assert lines[1].endswith(": 3 items")
    assert lines[2].split()[:3] == ["1.", "unknown_account", "2"]
    assert lines[3].split()[:3] == ["2.", "no_assignee", "1"]
