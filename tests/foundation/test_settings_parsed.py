"""Settings hold parsed values, made once at start; reading them needs no ORM and no playbook compiler."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pytest

from orchestrator import calendars, config, durations, exception_queue
from orchestrator.journeys import governance
from orchestrator.models.exceptions import Category


def test_importing_the_settings_loads_neither_the_orm_nor_the_playbook_compiler():
    probe = ("import sys, orchestrator.config; "
             "print(' '.join(sorted(m for m in sys.modules if m.startswith(('orchestrator.', 'sqlalchemy.orm', "
             "'jinja2')))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            timeout=60).stdout.split()
    assert "orchestrator.config" in loaded
    assert [m for m in loaded if m.startswith(("orchestrator.models", "orchestrator.playbook", "sqlalchemy.orm",
                                              "jinja2", "orchestrator.db"))] == []


def test_caps_quiet_hours_calendars_and_windows_are_parsed_values(settings):
    settings = replace(settings, customer_touch_cap="3 per 7d", quiet_hours="20:00-08:00",
                       quiet_hours_timezone="America/New_York")
    assert settings.touch_cap is not None and settings.touch_cap[0] == 3
    assert settings.touch_cap[1].calendar == timedelta(days=7)
    assert settings.quiet_window == (time(20, 0), time(8, 0))
    assert settings.quiet_zone.key == "America/New_York"
    assert settings.calendar() is settings.calendar()  # one calendar object, not rebuilt per call
    assert settings.exception_category("unknown_account").window.is_business


def _refuse(*_args, **_kwargs):
    raise AssertionError("parsed again on use")


def test_nothing_is_parsed_again_when_the_settings_are_used(session, settings, monkeypatch):
    settings = replace(settings, customer_touch_cap="1 per 7d", quiet_hours="20:00-08:00",
                       quiet_hours_timezone="America/New_York")
    for module in (durations, config, governance, calendars, exception_queue):
        for name in ("parse_touch_cap", "parse_quiet_hours", "parse_duration", "calendar_from_config"):
            monkeypatch.setattr(module, name, _refuse, raising=False)
    night = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)  # 22:00 in New York

    assert governance.in_quiet_hours(night, settings)
    assert governance.quiet_hours_end(night, settings) == datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
    from tests.factories import AccountFactory
    account = AccountFactory()
    session.flush()
    assert governance.touch_block_reason(session, account_id=account.id, now=night, settings=settings) is None
    item = exception_queue.raise_item(session, settings=settings, category=Category.UNKNOWN_ACCOUNT,
                                      message="who?", at=night)
    assert item.respond_by > night


def test_a_bad_value_given_in_code_fails_when_the_settings_are_made(settings):
    with pytest.raises(durations.GovernanceError):
        replace(settings, quiet_hours="late")
