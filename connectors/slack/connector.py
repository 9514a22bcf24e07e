"""The slack connector: `notify.chat`, a direct message to one person on our side.

Through Slack's Web API (`slack_sdk`): `users.lookupByEmail` finds the person,
`conversations.open` their DM with the app, `chat.postMessage` posts. Without a token, or
for someone Slack does not know, an incoming webhook (Slack, Teams or a plain JSON hook)
takes the message instead when `fallback_url` is set.

Idempotency: Slack takes no idempotency key. Each post carries message metadata
(`event_type` "handoff_notification", `event_payload.idempotency_key`); before posting,
the DM's recent history is read with `include_all_metadata` and a message already
carrying the key counts as delivered (its `ts` is the remote id). So a post whose answer
was lost is not posted twice, as long as it is among the DM's last `history_window`
messages and the app can read its DM history (`im:history`). What cannot be guaranteed:
with that check off, or through an incoming webhook (no history to read, no key), a lost
answer means one duplicate. slack_sdk's own retry on a dropped connection is switched
off: it would re-post without this check.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http.client import HTTPException
from typing import Any, ClassVar
from urllib.error import URLError

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from connectors.base import ConnectorContext, DeliveryConnector, Outbound, PermanentError, PushResult, TransientError
from connectors.recipients import action_args, resolve
from connectors.slack.fallback import post_fallback

__all__ = ["SlackConfig", "SlackConnector"]

EVENT_TYPE = "handoff_notification"
_TEXT_LIMIT = 40_000  # chat.postMessage truncates past this; refuse instead of cutting silently
# Errors that are the deployment's (token, scopes), not the message's: keep it and retry later.
_SETUP_ERRORS = frozenset({"not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired",
                           "missing_scope", "not_allowed_token_type", "no_permission", "ekm_access_denied"})
_TRANSIENT_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                               "request_timeout", "team_added_to_org"})
_SETUP_RETRY_SECONDS = 300.0
_SCOPES = ("users:read.email", "im:write", "chat:write")
# slack_sdk logs request bodies at DEBUG: message text must not reach the logs.
_SDK_LOG = logging.getLogger("handoff.connectors.slack.sdk")
_SDK_LOG.setLevel(logging.WARNING)


class SlackConfig(Schema):
    token = fields.String(load_default=None, metadata={"secret": True})  # a bot token, xoxb-...
    base_url = fields.String(load_default="https://slack.com/api/")
    timeout = fields.Integer(load_default=30, validate=validate.Range(min=1, max=300))
    # Read the DM's last messages for our key before posting (needs im:history).
    history_check = fields.Boolean(load_default=True)
    history_window = fields.Integer(load_default=50, validate=validate.Range(min=1, max=999))
    # An incoming webhook for people Slack does not know, or instead of the Web API.
    fallback_url = fields.String(load_default=None, metadata={"secret": True})
    fallback_style = fields.String(load_default="slack", validate=validate.OneOf(["slack", "teams", "plain"]))
    # Hosts the fallback URL may resolve to even when internal (see the webhook connector).
    allow_hosts = fields.List(fields.String(), load_default=list)

    @validates_schema
    def _somewhere(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        if not data.get("token") and not data.get("fallback_url"):
            raise ValidationError("set token (Slack Web API) or fallback_url (incoming webhook)", "token")


class SlackConnector(DeliveryConnector):
    """Direct messages to people through Slack, with an incoming-webhook fallback."""

    slug: ClassVar[str] = "slack"
    title: ClassVar[str] = "Chat (Slack, Teams or incoming webhook)"
    config_schema: ClassVar[type[Schema]] = SlackConfig
    sdk_modules: ClassVar[tuple[str, ...]] = ("slack_sdk",)
    handles: ClassVar[frozenset[str]] = frozenset({"notify.chat"})
    max_batch: ClassVar[int] = 20

    def __init__(self, *, config: Mapping[str, Any], context: ConnectorContext) -> None:
        super().__init__(config=config, context=context)
        self._client: WebClient | None = None
        if config.get("token"):
            self._client = WebClient(token=str(config["token"]), base_url=str(config["base_url"]),
                                     timeout=int(config.get("timeout", 30)), logger=_SDK_LOG,
                                     retry_handlers=[])

    def check(self) -> list[str]:
        """`auth.test` with the token (when one is set), and the scopes the token was granted."""
        if self._client is None:
            return []
        try:
            answer = self._client.auth_test()
        except (SlackClientError, URLError, HTTPException, OSError, ValueError) as exc:
            return [f"Slack auth.test failed: {_describe(exc)}"]
        headers = {key.lower(): value for key, value in (answer.headers or {}).items()}
        granted_text = headers.get("x-oauth-scopes")
        if granted_text is None:
            return []
        granted = {scope.strip() for scope in str(granted_text).split(",")}
        needed = list(_SCOPES) + (["im:history"] if self.config.get("history_check", True) else [])
        missing = [scope for scope in needed if scope not in granted]
        return [f"the Slack token lacks scope {', '.join(missing)}"] if missing else []

    def push(self, messages: Sequence[Outbound]) -> list[PushResult]:
        """Post each message once; per-message results."""
        return [self._deliver(message) for message in messages]

    def _deliver(self, message: Outbound) -> PushResult:
        args = action_args(message.payload)
        try:
            email = resolve(args.get("to"), account=message.account)
            text = args.get("text")
            if not isinstance(text, str) or not text.strip():
                raise PermanentError("the chat message has no text")
            if len(text) > _TEXT_LIMIT:
                raise PermanentError(f"the chat message is longer than {_TEXT_LIMIT} characters")
            if self._client is None:
                return self._fallback(message, email=email, text=text)
            return self._post(message, email=email, text=text)
        except PermanentError as exc:
            return PushResult(message_id=message.id, outcome="dead", error=str(exc))
        except TransientError as exc:
            return PushResult(message_id=message.id, outcome="retry", error=str(exc), retry_after=exc.retry_after)

    def _fallback(self, message: Outbound, *, email: str, text: str) -> PushResult:
        url = self.config.get("fallback_url")
        if not url:
            raise PermanentError("the recipient has no Slack account and no fallback_url is configured")
        post_fallback(url=str(url), style=str(self.config.get("fallback_style", "slack")), email=email, text=text,
                      idempotency_key=message.idempotency_key, allow_hosts=self.config.get("allow_hosts") or [],
                      timeout=float(self.config.get("timeout", 30)))
        return PushResult(message_id=message.id, outcome="delivered", remote_id="fallback")

    def _post(self, message: Outbound, *, email: str, text: str) -> PushResult:
        client = self._client
        assert client is not None
        user = self._call(lambda: client.users_lookupByEmail(email=email), missing_is_none=True)
        if user is None:
            if self.config.get("fallback_url"):
                return self._fallback(message, email=email, text=text)
            raise PermanentError("no Slack user has the recipient's email address")
        user_id = str(user["user"]["id"])
        opened = self._call(lambda: client.conversations_open(users=user_id))
        assert opened is not None
        channel = str(opened["channel"]["id"])
        if self.config.get("history_check", True):
            ts = self._already_posted(channel, message.idempotency_key)
            if ts is not None:
                return PushResult(message_id=message.id, outcome="delivered", remote_id=f"{channel}/{ts}")
        posted = self._call(lambda: client.chat_postMessage(
            channel=channel, text=text, unfurl_links=False, unfurl_media=False,
            metadata={"event_type": EVENT_TYPE, "event_payload": {"idempotency_key": message.idempotency_key}}))
        assert posted is not None
        return PushResult(message_id=message.id, outcome="delivered", remote_id=f"{channel}/{posted['ts']}")

    def _already_posted(self, channel: str, key: str) -> str | None:
        """The ts of a message in `channel` carrying our key, among the last `history_window`."""
        client = self._client
        assert client is not None
        window = int(self.config.get("history_window", 50))
        history = self._call(lambda: client.conversations_history(channel=channel, limit=window,
                                                                  include_all_metadata=True))
        assert history is not None
        for item in history.get("messages") or []:
            metadata = item.get("metadata") or {}
            if metadata.get("event_type") == EVENT_TYPE and \
                    (metadata.get("event_payload") or {}).get("idempotency_key") == key:
                return str(item["ts"])
        return None

    def _call(self, call: Any, *, missing_is_none: bool = False) -> Any:
        """One Web API call; Slack's answers mapped to retry / dead / None (unknown user)."""
        try:
            return call()
        except SlackApiError as exc:
            response = exc.response
            error = str(response.get("error") or "") if response is not None else ""
            status = getattr(response, "status_code", 200)
            if status == 429 or error == "ratelimited":
                retry_after = _seconds((response.headers or {}).get("Retry-After") or
                                       (response.headers or {}).get("retry-after"))
                raise TransientError("Slack rate limit (ratelimited)", retry_after=retry_after) from None
            if missing_is_none and error in ("users_not_found", "user_not_found"):
                return None
            if error in _SETUP_ERRORS:
                raise TransientError(f"Slack refused the app's token or scopes ({error})",
                                     retry_after=_SETUP_RETRY_SECONDS) from None
            if error in _TRANSIENT_ERRORS or status >= 500:
                raise TransientError(f"Slack is unavailable ({error or status})") from None
            raise PermanentError(f"Slack refused the message ({error or status})") from None
        except (SlackClientError, URLError, HTTPException, OSError, ValueError) as exc:
            # No answer (reset, timeout, unreadable body): maybe after Slack acted; the history check covers it.
            raise TransientError(f"no answer from Slack ({_describe(exc)})") from None


def _seconds(value: Any) -> float | None:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError) and exc.response is not None:
        return str(exc.response.get("error") or type(exc).__name__)
    return type(exc).__name__


