"""The registry finds connectors through entry points, shows a missing SDK, and resolves configuration."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from connectors.base import Connector, DeliveryConnector, secret_fields
from connectors.registry import (
    build_connector,
    connector_config,
    connector_status,
    enabled_names,
    load_registry,
    printable_config,
)
from orchestrator import crypto
from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from tests.connectors.plugins import installed_plugin

PLUGIN = """
    from marshmallow import Schema, fields
    from connectors.base import DeliveryConnector, PushResult

    class _Config(Schema):
        url = fields.String(required=True)
        token = fields.String(required=True, metadata={"secret": True})

    class Echo(DeliveryConnector):
        slug = "echo"
        title = "Echo"
        config_schema = _Config
        handles = frozenset({"crm.create_task"})

        def push(self, messages):
            return [PushResult(message_id=m.id, outcome="delivered", remote_id=f"echo-{m.id}") for m in messages]
"""

MISSING_SDK = """
    from connectors.base import DeliveryConnector

    class NeedsSdk(DeliveryConnector):
        slug = "needs"
        title = "Needs an SDK"
        sdk_modules = ("handoff_no_such_sdk",)

        def push(self, messages):
            return []
"""

BROKEN_IMPORT = """
    import handoff_no_such_sdk_at_import  # noqa: F401
"""


def _settings(**connectors: dict) -> Settings:
    return Settings(database_url=make_url("sqlite:////tmp/x/handoff.db"), connectors=connectors)


def test_a_plugin_connector_is_found_through_its_entry_point(tmp_path: Path) -> None:
    assert "echo" not in load_registry()
    with installed_plugin(tmp_path, slug="echo", source=PLUGIN, class_name="Echo"):
        entry = load_registry()["echo"]
        assert entry.available and entry.error is None
        assert entry.cls is not None and issubclass(entry.cls, DeliveryConnector)
        assert entry.capabilities == ["delivery"]
        assert secret_fields(entry.cls.config_schema) == {"token"}
    assert "echo" not in load_registry()


def test_a_missing_sdk_is_reported_not_raised(tmp_path: Path) -> None:
    with installed_plugin(tmp_path, slug="needs", source=MISSING_SDK, class_name="NeedsSdk"), \
         installed_plugin(tmp_path, slug="broken", source=BROKEN_IMPORT, class_name="Nothing"):
        registry = load_registry()
        assert not registry["needs"].available
        assert registry["needs"].error == "missing SDK: handoff_no_such_sdk"
        assert registry["broken"].cls is None
        assert registry["broken"].error == "missing SDK: handoff_no_such_sdk_at_import"
        status = connector_status(name="needs", settings=_settings(needs={}), registry=registry)
        assert status.installed and status.configured and not status.enabled
        with pytest.raises(ConfigError, match="cannot be used: missing SDK"):
            build_connector(name="needs", settings=_settings(needs={}), registry=registry)


def test_installed_configured_and_enabled_are_separate(tmp_path: Path) -> None:
    with installed_plugin(tmp_path, slug="echo", source=PLUGIN, class_name="Echo"):
        registry = load_registry()
        unconfigured = connector_status(name="echo", settings=_settings(), registry=registry)
        assert (unconfigured.installed, unconfigured.configured, unconfigured.enabled) == (True, False, False)
        disabled = connector_status(name="echo", settings=_settings(echo={"enabled": False, "url": "u"}),
                                    registry=registry)
        assert (disabled.installed, disabled.configured, disabled.enabled) == (True, True, False)
        on = _settings(echo={"url": "u", "token": "t"})
        assert connector_status(name="echo", settings=on, registry=registry).enabled
        assert "echo" in enabled_names(settings=on, registry=registry)
        ghost = connector_status(name="ghost", settings=_settings(ghost={}), registry=registry)
        assert (ghost.installed, ghost.configured, ghost.enabled, ghost.problem) == (False, True, False,
                                                                                     "not installed")


def test_config_reads_env_references_and_encrypted_values_and_masks_secrets(tmp_path: Path) -> None:
    keys = {crypto.KEYS_VARIABLE: crypto.generate_key()}
    token = crypto.encrypt("s3cret-token", environ=keys)
    with installed_plugin(tmp_path, slug="echo", source=PLUGIN, class_name="Echo"):
        registry = load_registry()
        settings = _settings(echo={"url": "env:ECHO_URL", "token": token})
        config = connector_config(name="echo", settings=settings, registry=registry,
                                  environ={**keys, "ECHO_URL": "https://echo.example"})
        assert config == {"url": "https://echo.example", "token": "s3cret-token"}
        assert printable_config(name="echo", config=config, registry=registry) == {
            "url": "https://echo.example", "token": "***"}
        connector = build_connector(name="echo", settings=settings, registry=registry,
                                    environ={**keys, "ECHO_URL": "https://echo.example"})
        assert isinstance(connector, Connector) and "s3cret" not in repr(connector)
        assert connector.context.data_dir == Path("/tmp/x")

        with pytest.raises(ConfigError, match=r"connectors\.echo\.url: .*ECHO_URL, which is not set"):
            connector_config(name="echo", settings=settings, registry=registry, environ=keys)
        with pytest.raises(ConfigError, match=r"connectors\.echo\.token: cannot be decrypted") as wrong_key:
            connector_config(name="echo", settings=settings, registry=registry,
                             environ={crypto.KEYS_VARIABLE: crypto.generate_key(), "ECHO_URL": "u"})
        assert "s3cret" not in str(wrong_key.value)
        with pytest.raises(ConfigError, match=r"connectors\.echo\.token: Missing data"):
            connector_config(name="echo", settings=replace(settings, connectors={"echo": {"url": "u"}}),
                             registry=registry)


def test_an_unknown_connector_name_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"connectors\.nope: no connector 'nope' is installed"):
        build_connector(name="nope", settings=_settings(), registry=load_registry())
