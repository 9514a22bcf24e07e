"""Secrets at rest: Fernet tokens under keys from HANDOFF_SECRET_KEYS, with key rotation.

`HANDOFF_SECRET_KEYS` is a comma-separated list of Fernet keys (`handoff secrets key` makes
one). The first key encrypts; every key decrypts, so a new key is put first and the old one
kept after it until `rotate` has re-encrypted what was stored under it (MultiFernet).
A connector setting written as `fernet:TOKEN` in the config file is decrypted on load.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from orchestrator.errors import ConfigError

__all__ = ["ENCRYPTED_PREFIX", "KEYS_VARIABLE", "decrypt", "encrypt", "generate_key", "is_encrypted",
           "rotate", "secret_box"]

KEYS_VARIABLE = "HANDOFF_SECRET_KEYS"
ENCRYPTED_PREFIX = "fernet:"


def generate_key() -> str:
    """A new random key, to put first in HANDOFF_SECRET_KEYS."""
    return Fernet.generate_key().decode("ascii")


def secret_box(environ: Mapping[str, str] | None = None) -> MultiFernet:
    """The configured keys, first one encrypting; ConfigError (one line, no key shown) when unusable."""
    env = os.environ if environ is None else environ
    raw = env.get(KEYS_VARIABLE, "")
    keys = [part.strip() for part in raw.split(",") if part.strip()]
    if not keys:
        raise ConfigError(KEYS_VARIABLE, "not set; generate a key with `handoff secrets key`")
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            # Never echo the key itself: say which one is wrong.
            raise ConfigError(KEYS_VARIABLE, f"key {position} is not a Fernet key "
                              "(32 url-safe base64-encoded bytes)") from None
    return MultiFernet(fernets)


def encrypt(plaintext: str, *, environ: Mapping[str, str] | None = None) -> str:
    """`fernet:TOKEN` for `plaintext`, under the first configured key."""
    token = secret_box(environ).encrypt(plaintext.encode("utf-8")).decode("ascii")
    return ENCRYPTED_PREFIX + token


def is_encrypted(value: str) -> bool:
    return value.startswith(ENCRYPTED_PREFIX)


def decrypt(value: str, *, environ: Mapping[str, str] | None = None, setting: str = KEYS_VARIABLE) -> str:
    """The plaintext of a `fernet:TOKEN` (or bare token); ConfigError naming `setting` if no key fits."""
    token = value.removeprefix(ENCRYPTED_PREFIX)
    try:
        return secret_box(environ).decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError, ValueError):
        raise ConfigError(setting, f"cannot be decrypted with any key in {KEYS_VARIABLE} "
                          "(wrong key, or the value was altered)") from None


def rotate(value: str, *, environ: Mapping[str, str] | None = None) -> str:
    """Re-encrypt a stored value under the first key (after putting a new key first)."""
    token = value.removeprefix(ENCRYPTED_PREFIX)
    try:
        rotated = secret_box(environ).rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, ValueError):
        raise ConfigError(KEYS_VARIABLE, "a stored secret cannot be decrypted with any configured key") from None
    return ENCRYPTED_PREFIX + rotated
