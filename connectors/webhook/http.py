"""One JSON POST to a vetted address: no redirects, no retries here, bounded reads, timeouts.

The caller (the webhook and slack connectors) decides what a status means; this module
only connects to `Target.address` while naming `Target.host` in the Host header and in
TLS (SNI and certificate check), so the address the SSRF guard approved is the one used.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import urllib3
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.exceptions import HTTPError as Urllib3Error

from connectors.base import PushResult
from connectors.webhook.ssrf import Target

__all__ = ["HttpFailure", "Response", "outcome_for", "post", "retry_after_seconds"]

_MAX_BODY = 64 * 1024


class HttpFailure(Exception):
    """No HTTP answer: refused, reset, timed out, TLS failure. Always worth a retry."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # names lower-cased
    body: bytes  # at most 64 KiB: an endpoint cannot make us buffer a huge answer


def post(target: Target, *, body: bytes, headers: Mapping[str, str], connect_timeout: float,
         read_timeout: float, ca_file: str | None = None) -> Response:
    """POST `body` to `target`; raise HttpFailure when no answer came back.

    The vetted addresses are tried in order while connecting fails (nothing was sent yet);
    once a connection is made, a failure is final for this attempt.
    """
    last = "no address"
    for address in target.addresses:
        try:
            return _post_to(address, target, body=body, headers=headers, connect_timeout=connect_timeout,
                            read_timeout=read_timeout, ca_file=ca_file)
        except (NewConnectionError, ConnectTimeoutError) as exc:
            last = type(exc).__name__
    raise HttpFailure(last)


def _post_to(address: str, target: Target, *, body: bytes, headers: Mapping[str, str], connect_timeout: float,
             read_timeout: float, ca_file: str | None) -> Response:
    timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(address, target.port, timeout=timeout, retries=False,
                                           server_hostname=target.host, assert_hostname=target.host,
                                           cert_reqs="CERT_REQUIRED", ca_certs=ca_file)
    else:
        pool = urllib3.HTTPConnectionPool(address, target.port, timeout=timeout, retries=False)
    try:
        answer = pool.urlopen("POST", target.path, body=body, redirect=False, retries=False,
                              headers={**headers, "Host": target.host_header}, preload_content=False,
                              assert_same_host=False)
        try:
            data = answer.read(_MAX_BODY)
        finally:
            answer.release_conn()
        return Response(status=answer.status, headers={k.lower(): v for k, v in answer.headers.items()}, body=data)
    except (NewConnectionError, ConnectTimeoutError):
        raise
    except Urllib3Error as exc:
        raise HttpFailure(type(exc).__name__) from None
    except OSError as exc:
        raise HttpFailure(type(exc).__name__) from None
    finally:
        pool.close()


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) in seconds, never negative; None if absent or bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def outcome_for(message_id: int, response: Response, *, remote_id: str | None = None) -> PushResult:
    """2xx delivered; 408/425/429/5xx retry (honouring Retry-After); 3xx and other 4xx dead."""
    status = response.status
    if 200 <= status < 300:
        return PushResult(message_id=message_id, outcome="delivered", remote_id=remote_id)
    if 300 <= status < 400:
        return PushResult(message_id=message_id, outcome="dead",
                          error=f"endpoint answered {status} (a redirect); redirects are not followed")
    if status in (408, 425, 429) or status >= 500:
        return PushResult(message_id=message_id, outcome="retry", error=f"endpoint answered {status}",
                          retry_after=retry_after_seconds(response.headers.get("retry-after")))
    return PushResult(message_id=message_id, outcome="dead", error=f"endpoint refused the delivery ({status})")
