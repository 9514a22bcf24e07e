"""`[connectors.hubspot]`: a wrong value is one line naming the setting; secrets never show."""

from __future__ import annotations

from dataclasses import replace

import pytest

from connectors.registry import connector_config, load_registry, printable_config
from orchestrator.errors import ConfigError
from tests.connectors.hubspot.conftest import plain_settings


def config(**section: object) -> dict[str, object]:
    settings = replace(plain_settings(), connectors={"hubspot": section})
    return connector_config(name="hubspot", settings=settings, registry=load_registry(),
                            environ={"HS_TOKEN": "pat-na1-secret"})


def test_a_private_app_token_from_the_environment() -> None:
    loaded = config(access_token="env:HS_TOKEN")
    assert loaded["access_token"] == "pat-na1-secret"
    shown = printable_config(name="hubspot", config=loaded, registry=load_registry())
    assert shown["access_token"] == "***" and "pat-na1-secret" not in repr(shown)


@pytest.mark.parametrize("section, field, words", [
    ({}, "access_token", "client_id, client_secret and refresh_token"),
    ({"access_token": "x", "host": "http://api.hubapi.com"}, "host", "https"),
    ({"access_token": "x", "host": "https://api.hubapi.com/crm"}, "host", "bare origin"),
    ({"access_token": "x", "daily_reset_timezone": "Mars/Olympus"}, "daily_reset_timezone", "IANA"),
    ({"access_token": "x", "match": "external_id"}, "match_property", "required"),
    ({"access_token": "x", "requests_per_10s": 0}, "requests_per_10s", "greater than or equal to 1"),
])
def test_wrong_values_name_the_setting(section: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(**section)
    text = str(caught.value)
    assert f"connectors.hubspot.{field}" in text and words in text
    assert "\n" not in text


def test_loopback_http_is_allowed_for_local_servers() -> None:
    assert config(access_token="x", host="http://127.0.0.1:8443")["host"] == "http://127.0.0.1:8443"
