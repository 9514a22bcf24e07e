"""Secrets at rest: Fernet under HANDOFF_SECRET_KEYS, rotation to a new key, clear errors without key material."""

from __future__ import annotations

import pytest

from orchestrator import crypto
from orchestrator.errors import ConfigError


def test_round_trip_and_the_token_does_not_contain_the_secret() -> None:
    env = {crypto.KEYS_VARIABLE: crypto.generate_key()}
    token = crypto.encrypt("hunter2", environ=env)
    assert token.startswith("fernet:") and "hunter2" not in token
    assert crypto.decrypt(token, environ=env) == "hunter2"


def test_rotation_moves_a_value_to_the_new_key_and_the_old_key_can_then_go() -> None:
    old, new = crypto.generate_key(), crypto.generate_key()
    stored = crypto.encrypt("api-token", environ={crypto.KEYS_VARIABLE: old})
    both = {crypto.KEYS_VARIABLE: f"{new},{old}"}
    assert crypto.decrypt(stored, environ=both) == "api-token"  # old values still read during rotation
    rotated = crypto.rotate(stored, environ=both)
    assert rotated != stored
    assert crypto.decrypt(rotated, environ={crypto.KEYS_VARIABLE: new}) == "api-token"
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        crypto.decrypt(stored, environ={crypto.KEYS_VARIABLE: new})


def test_missing_or_malformed_keys_are_named_without_showing_them() -> None:
    with pytest.raises(ConfigError, match="HANDOFF_SECRET_KEYS: not set"):
        crypto.encrypt("x", environ={})
    with pytest.raises(ConfigError, match="key 2 is not a Fernet key") as bad:
        crypto.secret_box({crypto.KEYS_VARIABLE: f"{crypto.generate_key()},not-a-key-at-all"})
    assert "not-a-key-at-all" not in str(bad.value)


def test_a_tampered_token_is_refused() -> None:
    env = {crypto.KEYS_VARIABLE: crypto.generate_key()}
    token = crypto.encrypt("value", environ=env)
    tampered = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    with pytest.raises(ConfigError, match="altered"):
        crypto.decrypt(tampered, environ=env, setting="connectors.x.token")
