from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator import models
from orchestrator.durations import parse_duration
from orchestrator.journeys.governance import (
    GovernanceError,
    in_quiet_hours,
    parse_touch_cap,
    quiet_hours_end,
    record_touch,
    touch_block_reason,
)
from orchestrator.playbook.model import TouchLimit
from tests.factories import AccountFactory


def _journey(session, account, playbook_id):
    version = models.PlaybookVersion(playbook_id=playbook_id, version=1, name=playbook_id, stage="onboard",
                                     checksum="x", source_text="", source_path=f"{playbook_id}.yaml")
    session.add(version)
    session.flush()
    journey = models.Journey(account_id=account.id, playbook_id=playbook_id, playbook_version_id=version.id,
                             enrollment_key=f"{playbook_id}:{account.id}")
    session.add(journey)
    session.flush()
    return journey


def test_a_touch_cap_reads_as_count_per_period():
    count, period = parse_touch_cap("3 per 7d")
    assert count == 3
    assert period.calendar == timedelta(days=7)


@pytest.mark.parametrize("text", ["3 every 7d", "per 7d", "3 per 2 business days", "3 per 7 parsecs"])
def test_a_malformed_touch_cap_is_refused_with_an_example(text):
    with pytest.raises(GovernanceError, match="3 per 7d|not a duration"):
        parse_touch_cap(text)


def test_the_global_cap_counts_touches_from_two_playbooks(session, clock, settings):
    settings = replace(settings, customer_touch_cap="2 per 7d")
    account = AccountFactory()
    onboarding, adoption = _journey(session, account, "onboard-kickoff"), _journey(session, account, "adopt-usage")
    now = clock.now()
    record_touch(session, account_id=account.id, journey_id=onboarding.id, step_id="welcome",
                 action="customer.email", at=now - timedelta(days=2))
    assert touch_block_reason(session, account_id=account.id, now=now, settings=settings) is None

    record_touch(session, account_id=account.id, journey_id=adoption.id, step_id="tips",
                 action="customer.in_app_message", at=now - timedelta(hours=1))

    reason = touch_block_reason(session, account_id=account.id, now=now, settings=settings)
    assert reason == ("customer-touch cap reached: 2 automated touches in the last 7d "
                      "(limit 2 per 7d, all playbooks)")


def test_touches_of_another_account_or_older_than_the_period_do_not_count(session, clock, settings):
    settings = replace(settings, customer_touch_cap="1 per 7d")
    account, other = AccountFactory(), AccountFactory()
    now = clock.now()
    record_touch(session, account_id=account.id, journey_id=None, step_id="s", action="customer.email",
                 at=now - timedelta(days=7, minutes=1))
    record_touch(session, account_id=other.id, journey_id=None, step_id="s", action="customer.email", at=now)

    assert touch_block_reason(session, account_id=account.id, now=now, settings=settings) is None


def test_a_playbook_limit_counts_only_that_playbooks_touches(session, clock, settings):
    account = AccountFactory()
    onboarding, adoption = _journey(session, account, "onboard-kickoff"), _journey(session, account, "adopt-usage")
    now = clock.now()
    limit = TouchLimit(count=2, period=parse_duration("7d"))
    for journey in (onboarding, adoption, adoption):
        record_touch(session, account_id=account.id, journey_id=journey.id, step_id="s",
                     action="customer.email", at=now - timedelta(hours=1))

    assert touch_block_reason(session, account_id=account.id, now=now, settings=settings,
                              playbook_limit=limit, playbook_id="onboard-kickoff") is None
    reason = touch_block_reason(session, account_id=account.id, now=now, settings=settings,
                                playbook_limit=limit, playbook_id="adopt-usage")
    assert reason == ("customer-touch cap reached: 2 automated touches in the last 7d "
                      "(limit 2 per 7d, playbook adopt-usage)")


def test_without_any_cap_touches_are_never_blocked(session, clock, settings):
    account = AccountFactory()
    for _ in range(5):
        record_touch(session, account_id=account.id, journey_id=None, step_id="s", action="customer.email",
                     at=clock.now())
    assert touch_block_reason(session, account_id=account.id, now=clock.now(), settings=settings) is None


@pytest.mark.parametrize(("local", "quiet"), [
    ("19:59", False), ("20:00", True), ("23:30", True), ("00:00", True), ("03:15", True),
    ("07:59", True), ("08:00", False), ("12:00", False),
])
def test_quiet_hours_wrap_midnight(settings, local, quiet):
    settings = replace(settings, quiet_hours="20:00-08:00", quiet_hours_timezone="America/New_York")
    hour, minute = (int(part) for part in local.split(":"))
    # 2026-11-24 in New York is UTC-5.
    at = datetime(2026, 11, 24, hour, minute, tzinfo=UTC) + timedelta(hours=5)
    assert in_quiet_hours(at, settings) is quiet


def test_quiet_hours_within_one_day_do_not_wrap(settings):
    settings = replace(settings, quiet_hours="12:00-13:00", quiet_hours_timezone="UTC")
    assert in_quiet_hours(datetime(2026, 11, 24, 12, 30, tzinfo=UTC), settings)
    assert not in_quiet_hours(datetime(2026, 11, 24, 23, 30, tzinfo=UTC), settings)


def test_quiet_hours_end_is_the_next_local_morning_before_midnight_and_the_same_morning_after(settings):
    settings = replace(settings, quiet_hours="20:00-08:00", quiet_hours_timezone="Europe/Berlin")
    evening = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)  # 22:00 in Berlin
    small_hours = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # 03:00 in Berlin

    assert quiet_hours_end(evening, settings) == datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
    assert quiet_hours_end(small_hours, settings) == datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
    daytime = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert quiet_hours_end(daytime, settings) == daytime


def test_no_quiet_hours_configured_means_never_quiet(settings):
    assert settings.quiet_hours is None
    assert not in_quiet_hours(datetime(2026, 11, 24, 3, 0, tzinfo=UTC), settings)
