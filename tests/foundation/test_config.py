from pathlib import Path

import pytest

from orchestrator.config import load_settings
from orchestrator.errors import ConfigError


def test_defaults_to_a_sqlite_file_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.database_url.render_as_string() == "sqlite:///handoff.db"
    assert settings.config_file is None


def test_plain_postgresql_urls_use_psycopg_3():
    settings = load_settings({"HANDOFF_DATABASE_URL": "postgresql://u:pw@db.internal/handoff"})
    assert settings.database_url.drivername == "postgresql+psycopg"


@pytest.mark.parametrize("raw, fragment", [
    ("mysql://root@localhost/x", "unsupported database 'mysql'"),
    ("::not a url::", "is not a database URL"),
])
def test_a_wrong_database_url_names_the_setting(raw, fragment):
    with pytest.raises(ConfigError) as error:
        load_settings({"HANDOFF_DATABASE_URL": raw})
    assert str(error.value).startswith("HANDOFF_DATABASE_URL: ")
    assert fragment in str(error.value)


def test_a_password_never_appears_in_messages_or_descriptions():
    with pytest.raises(ConfigError) as error:
        load_settings({"HANDOFF_DATABASE_URL": "oracle://scott:tiger-secret@db/x"})
    assert "tiger-secret" not in str(error.value)
    settings = load_settings({"HANDOFF_DATABASE_URL": "postgresql://u:tiger-secret@db/x"})
    assert "tiger-secret" not in str(settings.describe())
    assert "tiger-secret" not in repr(settings)


def test_a_bad_log_level_names_the_setting():
    with pytest.raises(ConfigError, match="HANDOFF_LOG_LEVEL"):
        load_settings({"HANDOFF_LOG_LEVEL": "LOUD"})


def test_the_config_file_supplies_exception_owners_and_governance(tmp_path: Path):
    path = tmp_path / "handoff.toml"
    path.write_text("""
[exceptions]
default_owner = "lead@acme.example"
[exceptions.categories.unknown_account]
owner = "steward@acme.example"
respond_within = "4 business hours"
[governance]
customer_touches = "3 per 7d"
quiet_hours = "20:00-08:00"
""")
    settings = load_settings({"HANDOFF_CONFIG": str(path)})
    assert settings.exception_category("unknown_account").owner == "steward@acme.example"
    assert settings.exception_category("unmatched_branch").owner == "lead@acme.example"
    assert settings.customer_touch_cap == "3 per 7d"
    assert settings.quiet_hours == "20:00-08:00"


def test_a_wrong_value_in_the_config_file_names_file_and_key(tmp_path: Path):
    path = tmp_path / "handoff.toml"
    path.write_text('[exceptions.categories.no_assignee]\nowner = "the team"\n')
    with pytest.raises(ConfigError) as error:
        load_settings({"HANDOFF_CONFIG": str(path)})
    assert str(path) in str(error.value)
    assert "exceptions.categories.no_assignee" in str(error.value) and "owner" in str(error.value)


def test_a_config_file_that_is_not_toml_is_one_clear_error(tmp_path: Path):
    path = tmp_path / "handoff.toml"
    path.write_text("[exceptions\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({"HANDOFF_CONFIG": str(path)})


def test_a_missing_config_file_is_reported():
    with pytest.raises(ConfigError, match="HANDOFF_CONFIG: no such file"):
        load_settings({"HANDOFF_CONFIG": "/nonexistent/handoff.toml"})


@pytest.mark.parametrize("body, fragment", [
    ('[governance]\ncustomer_touches = "3 per 7x"\n', "governance.customer_touches"),
    ('[governance]\nquiet_hours = "25:00-08:00"\n', "governance.quiet_hours"),
    ('[governance]\ntimezone = "Mars/Base"\n', "governance.timezone"),
])
def test_governance_settings_are_checked_when_handoff_starts(tmp_path: Path, body, fragment):
    path = tmp_path / "handoff.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=fragment):
        load_settings({"HANDOFF_CONFIG": str(path)})


def test_a_calendar_with_a_bad_value_stops_handoff_at_start(tmp_path: Path):
    path = tmp_path / "handoff.toml"
    path.write_text('[calendars.default]\ntimezone = "America/New_Yrok"\n')
    with pytest.raises(ConfigError, match="calendars") as error:
        load_settings({"HANDOFF_CONFIG": str(path)})
    assert "America/New_York" in str(error.value)  # the did-you-mean hint


def test_settings_hand_out_named_calendars_and_a_default():
    settings = load_settings({})
    assert settings.calendar().timezone == "UTC"
    with pytest.raises(Exception, match='no calendar named "emea"'):
        settings.calendar("emea")


@pytest.mark.parametrize("body, fragment", [
    ('[exceptions.categories.unknown_account]\nowner = "a@b.example"\nrespond_within = "4 busines hours"\n',
     'did you mean "business"'),
    ('[exceptions.categories.unknown_acount]\nowner = "a@b.example"\n',
     'did you mean "unknown_account"'),
])
def test_exception_categories_and_windows_are_checked_when_handoff_starts(tmp_path: Path, body, fragment):
    path = tmp_path / "handoff.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match="exceptions.categories") as error:
        load_settings({"HANDOFF_CONFIG": str(path)})
    assert fragment in str(error.value)


def test_the_config_file_supplies_sla_enforcement_settings(tmp_path: Path):
    path = tmp_path / "handoff.toml"
    path.write_text('[sla]\nat_risk_share = 0.5\nreminder_lead = "1 business hour"\n'
                    'waiting_statuses = ["Waiting on customer"]\nexhausted_after = "4 business hours"\n')
    settings = load_settings({"HANDOFF_CONFIG": str(path)})
    assert settings.sla_at_risk_share == 0.5
    assert settings.sla_reminder_lead == "1 business hour"
    assert settings.sla_waiting_statuses == ("Waiting on customer",)
    assert settings.sla_exhausted_after == "4 business hours"


@pytest.mark.parametrize("line, key", [("at_risk_share = 1.5", "sla.at_risk_share"),
                                       ('reminder_lead = "soon"', "sla.reminder_lead")])
def test_a_wrong_sla_setting_names_its_key(tmp_path: Path, line, key):
    path = tmp_path / "handoff.toml"
    path.write_text(f"[sla]\n{line}\n")
    with pytest.raises(ConfigError) as error:
        load_settings({"HANDOFF_CONFIG": str(path)})
    assert key in str(error.value)


def test_the_config_file_supplies_the_brief_thresholds(tmp_path: Path):
    path = tmp_path / "handoff.toml"
    path.write_text("[briefs]\nstale_after_days = 3\nrenewal_within_days = 90\n")
    settings = load_settings({"HANDOFF_CONFIG": str(path)})
    assert (settings.brief_stale_after_days, settings.brief_renewal_within_days) == (3, 90)
    path.write_text("")
    assert load_settings({"HANDOFF_CONFIG": str(path)}).brief_stale_after_days == 7


def test_a_wrong_brief_threshold_names_its_key(tmp_path: Path):
    path = tmp_path / "handoff.toml"
    path.write_text('[briefs]\nstale_after_days = "a week"\n')
    with pytest.raises(ConfigError) as error:
        load_settings({"HANDOFF_CONFIG": str(path)})
    assert "briefs.stale_after_days" in str(error.value)
