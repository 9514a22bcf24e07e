"""Every HubSpot call goes through here: auth (token or OAuth refresh), rate limits, retries.

- The client is the real `hubspot-api-client`, built with the configured host and CA bundle, and
  with urllib3's own retries turned off (`Retry(0)`): urllib3 cannot tell a lost response to a batch
  create from one that never arrived, so it must not resend a POST. Retrying is decided here.
- Reads (GET, search, batch read) retry 5xx and dropped connections with exponential backoff and
  jitter (tenacity). A write that may have reached HubSpot raises `OutcomeUnknown`; the task writer
  then looks its records up by their idempotency key before it creates anything again.
- 429: `TEN_SECONDLY_ROLLING` (and search's `SECONDLY`) waits out the window the server names and
  retries; `DAILY` raises `DailyLimitReached` with the seconds until the daily reset.
- 401 with OAuth configured: refresh the access token once and retry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import urllib3
from hubspot import HubSpot
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from urllib3.util.retry import Retry

from connectors.base import TransientError
from connectors.hubspot.ratelimit import RollingBucket

__all__ = ["ApiError", "Credentials", "DailyLimitReached", "OutcomeUnknown", "Transport"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Where each API object lives on the client (attribute path under `HubSpot()`).
_APIS: dict[str, tuple[str, ...]] = {
    **{f"{kind}.{api}": ("crm", kind, f"{api}_api")
       for kind in ("companies", "contacts", "deals") for api in ("basic", "batch", "search")},
    **{f"tasks.{api}": ("crm", "objects", "tasks", f"{api}_api") for api in ("basic", "batch", "search")},
    "owners": ("crm", "owners", "owners_api"),
    "properties": ("crm", "properties", "core_api"),
    "associations": ("crm", "associations", "v4", "batch_api"),
    "oauth": ("oauth", "tokens_api"),
}
# One process-wide cache of refreshed access tokens, keyed by a hash of the refresh token, so that
# every connector instance does not refresh again (HubSpot's tokens live 30 minutes).
_TOKENS: dict[str, tuple[str, float]] = {}
_TOKENS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Credentials:
    """A private-app token, or an OAuth app's client id/secret and a refresh token (or both)."""

    access_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    refresh_token: str | None = None

    @property
    def refreshable(self) -> bool:
        return bool(self.client_id and self.client_secret and self.refresh_token)

    def __repr__(self) -> str:  # never show a secret
        return f"Credentials(oauth={self.refreshable})"


class ApiError(Exception):
    """HubSpot answered 4xx (not 401/429): the request itself is wrong; `message` holds no record data."""

    def __init__(self, *, status: int, category: str, message: str) -> None:
        super().__init__(f"HubSpot {status} {category}: {message}")
        self.status, self.category, self.message = status, category, message


class OutcomeUnknown(TransientError):
    """A write was sent and no answer came back (dropped connection, timeout, 5xx): it may have happened."""


class DailyLimitReached(TransientError):
    """HubSpot's DAILY policy answered 429: nothing more until the reset (`retry_after` seconds)."""


class _Again(Exception):
    """Internal: retry this call, after `delay` seconds (None: backoff with jitter)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.delay = reason, delay


def _body(exc: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _header(exc: Any, name: str) -> str | None:
    headers = getattr(exc, "headers", None)
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name.lower():
            return str(value)
    return None


def _not_sent(error: BaseException) -> bool:
    """True when the request cannot have reached the server (the connection was never made)."""
    return isinstance(error, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))


class Transport:
    """The HubSpot client, its API objects (built once: each builds its own connection pool), and the call policy."""

    def __init__(self, *, host: str, ca_bundle: str | None, credentials: Credentials,
                 requests_per_10s: int = 100, search_per_second: int = 4, timeout: float = 30.0,
                 max_attempts: int = 6, daily_reset_timezone: str = "UTC",
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.host, self.ca_bundle, self.credentials = host.rstrip("/"), ca_bundle, credentials
        self.timeout, self.max_attempts = timeout, max_attempts
        self.daily_zone = ZoneInfo(daily_reset_timezone)
        self._clock, self._sleep, self._wall = clock, sleep, wall
        self.bucket = RollingBucket(capacity=requests_per_10s, window=10.0, clock=clock, sleep=sleep)
        self.search_bucket = RollingBucket(capacity=search_per_second, window=1.0, clock=clock, sleep=sleep)
        self._token = credentials.access_token or self._cached_token()
        self._client: HubSpot | None = None
        self._apis: dict[str, Any] = {}
        self.calls = 0  # requests sent to HubSpot, every attempt counted
        self.rate_limited = 0  # 429 answers seen
        self.retries = 0
        self._backoff = wait_exponential(multiplier=0.5, max=30.0) + wait_random(0, 1.0)  # backoff with jitter

    # -- the client ----------------------------------------------------------------------------

    def _new_client(self) -> HubSpot:
        options: dict[str, Any] = {"host": self.host, "retry": Retry(0, redirect=0)}
        if self.ca_bundle:
            options["ssl_ca_cert"] = self.ca_bundle
        return HubSpot(access_token=self._token or "", **options)

    def api(self, name: str) -> Any:
        """The client's API object `name` (e.g. "companies.search"), built once per transport."""
        if name not in self._apis:
            if self._client is None:
                self._client = self._new_client()
            target: Any = self._client
            for attribute in _APIS[name]:
                target = getattr(target, attribute)
            self._apis[name] = target
        return self._apis[name]

    def close(self) -> None:
        for api in self._apis.values():
            api.api_client.rest_client.pool_manager.clear()
        self._apis.clear()
        self._client = None

    # -- OAuth ----------------------------------------------------------------------------------

    def _token_key(self) -> str:
        identity = "\n".join((self.host, self.credentials.client_id or "", self.credentials.refresh_token or ""))
        return hashlib.sha256(identity.encode()).hexdigest()

    def _cached_token(self) -> str | None:
        if not self.credentials.refreshable:
            return None
        with _TOKENS_LOCK:
            cached = _TOKENS.get(self._token_key())
        return cached[0] if cached and cached[1] > time.time() else None

    def refresh(self) -> None:
        """Trade the refresh token for a new access token and hand it to every API object."""
        tokens = self.api("oauth")
        self.calls += 1
        try:
            answer = tokens.create(grant_type="refresh_token", client_id=self.credentials.client_id,
                                   client_secret=self.credentials.client_secret,
                                   refresh_token=self.credentials.refresh_token,
                                   _request_timeout=self._timeouts())
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status is not None and 400 <= status < 500:
                raise TransientError(f"HubSpot refused the OAuth refresh ({status}); check the app credentials",
                                     retry_after=3600) from None
            raise TransientError(f"the OAuth refresh failed ({type(exc).__name__})") from None
        self._token = answer.access_token
        with _TOKENS_LOCK:
            _TOKENS[self._token_key()] = (answer.access_token, time.time() + int(answer.expires_in or 1800) - 60)
        for api in self._apis.values():
            api.api_client.configuration.access_token = self._token

    # -- the call policy ----------------------------------------------------------------------

    def _timeouts(self) -> tuple[float, float]:
        return (min(10.0, self.timeout), self.timeout)

    def json(self, fn: Callable[..., Any], *, search: bool = False, idempotent: bool = True,
             what: str = "request") -> Any:
        """Like `call`, for a client call made with `_preload_content=False`: the decoded JSON body.

        The client still builds, authenticates and sends the request and raises on an error status;
        skipping its model layer (dateutil parsing every timestamp) makes bulk reads several times faster.
        """
        def read(*, _request_timeout: tuple[float, float]) -> Any:
            response = fn(_request_timeout=_request_timeout)
            try:
                return json.loads(response.data or b"null")
            finally:
                response.release_conn()
        return self.call(read, search=search, idempotent=idempotent, what=what)

    def call(self, fn: Callable[..., T], *, search: bool = False, idempotent: bool = True,
             what: str = "request") -> T:
        """Run `fn(_request_timeout=...)` (one client call) under the rate limits and the retry policy."""
        if self._token is None and self.credentials.refreshable:
            self.refresh()
        state = {"refreshed": False}
        retrying = Retrying(stop=stop_after_attempt(self.max_attempts), wait=self._wait,
                            retry=retry_if_exception_type(_Again), sleep=self._sleep, reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    return self._once(fn, search=search, idempotent=idempotent, state=state)
        except _Again as exc:
            raise TransientError(f"HubSpot {what} still failing after {self.max_attempts} attempts: "
                                 f"{exc.reason}") from None
        raise AssertionError("unreachable")  # pragma: no cover - tenacity either returns or raises

    def _wait(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        self.retries += 1
        if isinstance(error, _Again) and error.delay is not None:
            return error.delay
        return float(self._backoff(retry_state))

    def _once(self, fn: Callable[..., T], *, search: bool, idempotent: bool,
              state: dict[str, bool]) -> T:
        self.bucket.acquire()
        try:
            if search:
                self.search_bucket.acquire()
            try:
                self.calls += 1
                return fn(_request_timeout=self._timeouts())
            finally:
                if search:
                    self.search_bucket.release()
        except urllib3.exceptions.MaxRetryError as exc:
            raise self._connection_failure(exc.reason or exc, idempotent=idempotent) from None
        except urllib3.exceptions.HTTPError as exc:
            raise self._connection_failure(exc, idempotent=idempotent) from None
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status is None:
                raise
            raise self._answer(exc, status=int(status), idempotent=idempotent, state=state) from None
        finally:
            self.bucket.release()

    def _connection_failure(self, error: BaseException, *, idempotent: bool) -> Exception:
        reason = type(error).__name__
        if idempotent or _not_sent(error):
            return _Again(f"connection failed ({reason})")
        return OutcomeUnknown(f"no answer to a HubSpot write ({reason}); it may have been applied")

    def _answer(self, exc: Exception, *, status: int, idempotent: bool, state: dict[str, bool]) -> Exception:
        body = _body(exc)
        category = str(body.get("category") or body.get("errorType") or "")
        if status == 0:  # the client's wrapping of a TLS failure: nothing was sent
            return _Again("TLS handshake failed")
        if status == 429:
            return self._rate_limited(exc, body)
        if status == 401:
            if self.credentials.refreshable and not state["refreshed"]:
                state["refreshed"] = True
                self.refresh()
                return _Again("access token expired; refreshed", delay=0.0)
            return TransientError(f"HubSpot refused the credentials (401 {category or 'unauthorized'})",
                                  retry_after=3600)
        if status >= 500:
            if idempotent:
                return _Again(f"HubSpot answered {status}")
            return OutcomeUnknown(f"HubSpot answered {status} to a write; it may have been applied")
        message = str(body.get("message") or "")[:200]
        return ApiError(status=status, category=category or "ERROR", message=message)

    def _rate_limited(self, exc: Exception, body: dict[str, Any]) -> Exception:
        self.rate_limited += 1
        policy = str(body.get("policyName") or "")
        if policy == "DAILY":
            return DailyLimitReached("HubSpot's daily API limit is used up", retry_after=self.seconds_to_daily_reset())
        retry_after = _header(exc, "Retry-After")
        interval = _header(exc, "X-HubSpot-RateLimit-Interval-Milliseconds")
        if retry_after and retry_after.replace(".", "", 1).isdigit():
            delay = float(retry_after)
        elif policy == "TEN_SECONDLY_ROLLING" and interval and interval.isdigit():
            delay = int(interval) / 1000
        else:
            delay = 1.0 if policy == "SECONDLY" else 10.0
        (self.search_bucket if policy == "SECONDLY" else self.bucket).block_for(delay)
        log.warning("HubSpot rate limit %s hit; waiting %.1fs", policy or "unknown", delay)
        return _Again(f"rate limited ({policy or 'unknown policy'})", delay=0.0)

    def seconds_to_daily_reset(self) -> float:
        """HubSpot resets the daily limit at midnight in the account's time zone."""
        now = self._wall().astimezone(self.daily_zone)
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=self.daily_zone)
        return max(60.0, (midnight - now).total_seconds())
