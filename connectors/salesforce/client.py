"""One Salesforce org through `simple-salesforce`: authentication, retries, the API budget, error kinds.

Every request goes through `SalesforceApi.call`, which
- refuses to spend past the client-side budget (`api_budget` of the org's daily allocation, read
  from the `Sforce-Limit-Info` header the org sends with every answer) and backs off after
  `REQUEST_LIMIT_EXCEEDED` until the budget should have recovered;
- logs in again once on `INVALID_SESSION_ID` when the configured credentials allow it (a session
  given directly cannot, and simple-salesforce then raises `SalesforceExpiredSession`);
- retries 5xx answers, timeouts and dropped connections with exponential backoff and jitter
  (tenacity). Only idempotent requests are sent (queries, updates by id, upserts by external id),
  so a retry after a lost answer cannot create a second record;
- turns what is left into `TransientError` (try later) or `PermanentError` (this request is wrong).
Error texts name the request and Salesforce's error code, never record values.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import jwt
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceRefusedRequest,
)
from simple_salesforce.login import SalesforceLogin, token_login
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from connectors.base import PermanentError, TransientError

T = TypeVar("T")

_TRANSIENT_CODES = frozenset({"SERVER_UNAVAILABLE", "UNABLE_TO_LOCK_ROW", "REQUEST_RUNNING_TOO_LONG",
                              "QUERY_TIMEOUT", "TXN_SECURITY_METERING_ERROR"})


def error_code(error: SalesforceError) -> str:
    """Salesforce's errorCode from an error body like `[{"message": ..., "errorCode": ...}]`."""
    content = error.content
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        return str(content[0].get("errorCode") or content[0].get("statusCode") or "")
    if isinstance(content, Mapping):
        return str(content.get("errorCode") or content.get("error") or "")
    return ""


@dataclass
class Budget:
    """The org's daily API allocation as last reported, and how long we keep off it."""

    used: int | None = None
    total: int | None = None
    blocked_until: datetime | None = None


# One budget per org and user for the whole process: every connector instance spends the same allocation.
_BUDGETS: dict[str, Budget] = {}
_BUDGETS_LOCK = threading.Lock()


def _retryable(error: BaseException) -> bool:
    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return True
    if isinstance(error, SalesforceGeneralError):
        return error.status >= 500
    if isinstance(error, SalesforceError):
        return error_code(error) in _TRANSIENT_CODES
    return False


class SalesforceApi:
    """An authenticated client with retries and a budget; `calls` counts HTTP requests made."""

    def __init__(self, *, config: Mapping[str, Any], timeout: float, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.timeout = float(config.get("timeout") or timeout)
        self.clock = clock
        self.calls = 0
        self._sf: Salesforce | None = None
        self.http = requests.Session()
        if config.get("ca_bundle"):
            self.http.verify = str(config["ca_bundle"])
            # REQUESTS_CA_BUNDLE in the environment would otherwise override the configured bundle.
            self.http.trust_env = False
        org = config.get("instance_url") or config.get("login_url")
        key = f"{org}|{config.get('username') or config.get('client_id')}"
        with _BUDGETS_LOCK:
            self.budget = _BUDGETS.setdefault(key, Budget())

    # -- authentication -------------------------------------------------------------------------

    @property
    def can_relogin(self) -> bool:
        return self.config["auth"] != "access_token"

    def _login(self) -> tuple[str, str]:
        """(access token, instance URL) from the configured credentials."""
        config = self.config
        auth = config["auth"]
        if auth == "access_token":
            return str(config["access_token"]), str(config["instance_url"])
        token_url = f"{str(config['login_url']).rstrip('/')}/services/oauth2/token"
        self.calls += 1
        if auth == "refresh_token":
            data = {"grant_type": "refresh_token", "refresh_token": config["refresh_token"],
                    "client_id": config["client_id"]}
            if config.get("client_secret"):
                data["client_secret"] = config["client_secret"]
            token, instance = token_login(token_url, data, "login", str(config["client_id"]), None, None,
                                          self.http)
        elif auth == "jwt":
            claims = {"iss": config["client_id"], "sub": config["username"], "aud": config["login_url"],
                      "exp": int((datetime.now(UTC) + timedelta(minutes=3)).timestamp())}
            assertion = jwt.encode(claims, str(config["private_key"]), algorithm="RS256")
            token, instance = token_login(token_url, {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                                      "assertion": assertion},
                                          "login", str(config["client_id"]), None, None, self.http)
        else:  # password + security token, SOAP login against the configured login host
            token, instance = SalesforceLogin(username=config["username"], password=config["password"],
                                              security_token=config["security_token"],
                                              sf_version=config["api_version"], session=self.http,
                                              scratch_url=str(config["login_url"]).rstrip("/"))
        instance_url = config.get("instance_url") or (instance if "://" in instance else f"https://{instance}")
        return str(token), str(instance_url)

    def _connect(self) -> Salesforce:
        try:
            token, instance_url = self._login()
        except SalesforceAuthenticationFailed as error:
            # Credentials are the deployment's problem, not the items': they wait, `connectors check` says why.
            raise TransientError(f"salesforce login failed ({error.code})", retry_after=900) from None
        except (requests.ConnectionError, requests.Timeout) as error:
            raise TransientError(f"salesforce login: {type(error).__name__}") from None
        # A session given directly never re-logs in inside simple-salesforce: `call` does it.
        self._sf = Salesforce(session_id=token, instance_url=instance_url, version=self.config["api_version"],
                              session=self.http)
        return self._sf

    @property
    def sf(self) -> Salesforce:
        return self._sf or self._connect()

    # -- calls ----------------------------------------------------------------------------------

    def _check_budget(self) -> None:
        now = self.clock()
        budget = self.budget
        if budget.blocked_until is not None and budget.blocked_until > now:
            raise TransientError("salesforce API budget spent",
                                 retry_after=(budget.blocked_until - now).total_seconds())
        if budget.blocked_until is not None:
            # The back-off is over: the usage we saw is stale (the org's window rolls), so one call probes it.
            budget.blocked_until = budget.used = None
        if budget.used is not None and budget.total and budget.used >= budget.total * float(self.config["api_budget"]):
            self._block(now)
            raise TransientError("salesforce API budget spent", retry_after=float(self.config["limit_backoff_seconds"]))

    def _block(self, now: datetime) -> None:
        self.budget.blocked_until = now + timedelta(seconds=float(self.config["limit_backoff_seconds"]))

    def _note_usage(self, sf: Salesforce) -> None:
        usage = sf.api_usage.get("api-usage")
        if usage is not None:
            self.budget.used, self.budget.total = usage.used, usage.total
            if self.budget.blocked_until is not None and usage.used < usage.total * float(self.config["api_budget"]):
                self.budget.blocked_until = None

    def call(self, what: str, request: Callable[[Salesforce], T]) -> T:
        """Run `request(sf)` within the budget, with retries; `what` names it in errors (no data)."""
        self._check_budget()
        relogged = False
        retrying = Retrying(
            retry=retry_if_exception(_retryable), reraise=True,
            stop=stop_after_attempt(int(self.config["retry_attempts"])),
            wait=wait_random_exponential(multiplier=float(self.config["retry_wait_seconds"]),
                                         max=float(self.config["retry_max_wait_seconds"])))
        while True:
            try:
                for attempt in retrying:
                    with attempt:
                        self._check_budget()
                        self.calls += 1
                        sf = self.sf
                        result = request(sf)
                        self._note_usage(sf)
                return result
            except SalesforceExpiredSession:
                if relogged or not self.can_relogin:
                    raise TransientError(f"salesforce {what}: session expired"
                                         + ("" if self.can_relogin else " and an access token cannot be refreshed"),
                                         retry_after=900) from None
                relogged = True
                self._sf = None
                self._connect()
            except SalesforceRefusedRequest as error:
                if error_code(error) == "REQUEST_LIMIT_EXCEEDED":
                    self._block(self.clock())
                    raise TransientError(f"salesforce {what}: REQUEST_LIMIT_EXCEEDED",
                                         retry_after=float(self.config["limit_backoff_seconds"])) from None
                raise PermanentError(f"salesforce {what}: refused ({error_code(error) or error.status})") from None
            except (requests.ConnectionError, requests.Timeout) as error:
                raise TransientError(f"salesforce {what}: {type(error).__name__} after retries") from None
            except SalesforceError as error:
                if _retryable(error):
                    raise TransientError(f"salesforce {what}: {error_code(error) or error.status} after retries") \
                        from None
                raise PermanentError(f"salesforce {what}: {error_code(error) or error.status}") from None

    # -- helpers --------------------------------------------------------------------------------

    def query_pages(self, soql: str, *, include_deleted: bool) -> Iterator[dict[str, Any]]:
        """Yield the pages (dicts with `records`) of one SOQL query, following `nextRecordsUrl`."""
        page: dict[str, Any] = self.call(
            "query", lambda sf: sf.query(soql, include_deleted=include_deleted, timeout=self.timeout))
        while True:
            yield page
            if page.get("done", True) or not page.get("nextRecordsUrl"):
                return
            url = str(page["nextRecordsUrl"])

            def more(sf: Salesforce, url: str = url) -> dict[str, Any]:
                return dict(sf.query_more(url, identifier_is_url=True, timeout=self.timeout))

            page = self.call("query_more", more)

    def collection(self, method: str, path: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """An sObject Collections request (up to 200 records, allOrNone false): one result per record."""
        body = {"allOrNone": False, "records": records}
        result = self.call(f"{method} {path}", lambda sf: sf.restful(path, method=method, json=body,
                                                                    timeout=self.timeout))
        if not isinstance(result, list) or len(result) != len(records):
            raise TransientError(f"salesforce {method} {path}: unexpected answer")
        return result

    def describe(self, sobject: str) -> dict[str, Any]:
        answer = self.call(f"describe {sobject}",
                           lambda sf: sf.restful(f"sobjects/{sobject}/describe", timeout=self.timeout))
        return dict(answer or {})

    def close(self) -> None:
        self.http.close()
