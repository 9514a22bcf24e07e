"""Database URLs from configuration: validated, with passwords never echoed. No engine, no ORM."""

from __future__ import annotations

import ipaddress

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from orchestrator.errors import ConfigError

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "SUPPORTED_BACKENDS", "parse_database_url"]

SUPPORTED_BACKENDS = ("sqlite", "postgresql")
DEFAULT_CONNECT_TIMEOUT = 10  # seconds


def parse_database_url(raw: str, *, allow_memory: bool = True) -> URL:
    """A validated SQLAlchemy URL; `postgresql://` is taken to mean psycopg 3.

    `allow_memory=False` (what the settings ask for) refuses an in-memory SQLite database,
    which would silently vanish at the end of every command.
    """
    try:
        url = make_url(raw)
    except ArgumentError:
        raise _bad_url(raw, "is not a database URL; expected e.g. sqlite:///handoff.db "
                       "or postgresql://user@host/db") from None
    except ValueError:
        # SQLAlchemy reads the port with int(): "host:abc", or an IPv6 address without brackets.
        raise _bad_url(raw, "has a port that is not a number (write an IPv6 host in brackets, "
                       "e.g. postgresql://user@[::1]:5432/db)") from None
    backend = url.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise ConfigError("HANDOFF_DATABASE_URL",
                          f"unsupported database {backend!r}; use sqlite or postgresql")
    if backend == "sqlite" and not allow_memory and url.database in (None, "", ":memory:"):
        raise ConfigError("HANDOFF_DATABASE_URL", f"{url.render_as_string()!r} is an in-memory database that "
                          "forgets everything when the command ends; name a file, e.g. sqlite:///handoff.db")
    if backend == "postgresql":
        _check_host(raw, url)
        if url.get_driver_name() != "psycopg":
            url = url.set(drivername="postgresql+psycopg")
    return url


def _check_host(raw: str, url: URL) -> None:
    host = url.host or ""
    if ":" in host or "[" in raw.split("@")[-1].split("/")[0]:
        try:
            ipaddress.IPv6Address(host.strip("[]"))
        except ValueError:
            raise _bad_url(raw, f"has a host that is not a valid IPv6 address ({host[:60]!r})") from None


def _bad_url(raw: str, problem: str) -> ConfigError:
    return ConfigError("HANDOFF_DATABASE_URL", f"{_redact(raw)!r} {problem}")


def _redact(raw: str) -> str:
    # Never echo a password back, even from a URL we could not parse: whatever stands between
    # the scheme and the last "@" may be credentials, with or without "://".
    if "@" not in raw:
        # "user:password" with neither "://" nor "@" could still be credentials: show the scheme only.
        return raw[:200] if "://" in raw or ":" not in raw else f"{raw.split(':', 1)[0]}:***"
    before, host = raw.rsplit("@", 1)
    scheme = before.split("://", 1)[0] if "://" in before else before.split(":", 1)[0]
    separator = "://" if "://" in before else ":"
    return f"{scheme}{separator}***@{host}"[:200]
