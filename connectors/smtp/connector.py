"""The smtp connector: `notify.email` and `customer.email` through the standard library's smtplib.

Exactly once, as far as SMTP allows: SMTP has no idempotency key. When a server accepts a
message (250 after DATA) and the connection drops before the answer arrives, Handoff
cannot know and sends again; the second copy carries the same `Message-ID` and `Date`,
which mail stores and clients use to collapse duplicates. A message is never re-sent once
a 250 was read. 4xx answers and lost connections are retried; 5xx answers and suppressed
recipients are dead at once, with the reason.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from connectors.base import (
    ConnectorContext,
    DeliveryConnector,
    Outbound,
    PermanentError,
    PushResult,
    TransientError,
)
from connectors.recipients import action_args, looks_like_email, resolve
from connectors.smtp.message import build_email
from orchestrator.delivery import suppressions

__all__ = ["SmtpConfig", "SmtpConnector"]

_DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
# RCPT answers that mean the mailbox does not exist: a hard bounce, suppressed from now on.
_HARD_BOUNCE_CODES = frozenset({550, 551, 553})
_AUTH_RETRY_SECONDS = 300.0


class SmtpConfig(Schema):
    host = fields.String(required=True)
    port = fields.Integer(load_default=None, validate=validate.Range(min=1, max=65535))
    security = fields.String(load_default="starttls", validate=validate.OneOf(["starttls", "ssl", "none"]))
    username = fields.String(load_default=None)
    password = fields.String(load_default=None, metadata={"secret": True})
    from_address = fields.String(required=True)
    from_name = fields.String(load_default="Handoff")
    # Message-ID domain; the sender's domain unless set.
    message_id_domain = fields.String(load_default=None)
    ca_file = fields.String(load_default=None)  # a private CA for the relay's certificate
    helo_name = fields.String(load_default=None)
    timeout = fields.Float(load_default=30.0, validate=validate.Range(min=0.1, max=600))
    # Addresses that never get mail, besides the email_suppressions table.
    suppressed = fields.List(fields.String(), load_default=list)
    # Replies to a customer email go to the account owner when one is known.
    reply_to_owner = fields.Boolean(load_default=True)
    # List-Unsubscribe on customer emails: a mailto: or https: address that adds the reader to the list.
    unsubscribe = fields.String(load_default=None, validate=validate.Regexp(r"^(mailto:|https://)\S+$",
                                error="must be a mailto: or https:// address"))

    @validates_schema
    def _consistent(self, data: Mapping[str, Any], **kwargs: Any) -> None:
        if not looks_like_email(data["from_address"]):
            raise ValidationError("must be an email address", "from_address")
        if data.get("password") and not data.get("username"):
            raise ValidationError("a password needs a username", "username")
        if data.get("username") and data["security"] == "none":
            raise ValidationError('sending credentials needs security "starttls" or "ssl"', "security")
        for address in data.get("suppressed") or []:
            if not looks_like_email(address):
                raise ValidationError(f'"{address}" is not an email address', "suppressed")


class SmtpConnector(DeliveryConnector):
    """Email through an SMTP relay; one connection per batch."""

    slug: ClassVar[str] = "smtp"
    title: ClassVar[str] = "Email (SMTP)"
    config_schema: ClassVar[type[Schema]] = SmtpConfig
    handles: ClassVar[frozenset[str]] = frozenset({"notify.email", "customer.email"})
    max_batch: ClassVar[int] = 50

    def __init__(self, *, config: Mapping[str, Any], context: ConnectorContext) -> None:
        super().__init__(config=config, context=context)
        self._port = int(config.get("port") or _DEFAULT_PORTS[config.get("security", "starttls")])
        sender = str(config["from_address"])
        self._domain = str(config.get("message_id_domain") or sender.rpartition("@")[2])
        self._listed = {address.strip().lower() for address in config.get("suppressed") or []}

    # -- connection ---------------------------------------------------------------------------

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.config.get("ca_file"))

    def _connect(self) -> smtplib.SMTP:
        """An authenticated connection; TransientError when the relay cannot be used now."""
        security = self.config.get("security", "starttls")
        host, timeout = str(self.config["host"]), float(self.config.get("timeout", 30.0))
        helo = self.config.get("helo_name")
        try:
            if security == "ssl":
                connection: smtplib.SMTP = smtplib.SMTP_SSL(host, self._port, local_hostname=helo,
                                                           timeout=timeout, context=self._tls())
            else:
                connection = smtplib.SMTP(host, self._port, local_hostname=helo, timeout=timeout)
            try:
                connection.ehlo()
                if security == "starttls":
                    # Never fall back to plain text: no STARTTLS offered is an error, not a downgrade.
                    connection.starttls(context=self._tls())
                    connection.ehlo()
                if self.config.get("username"):
                    connection.login(str(self.config["username"]), str(self.config.get("password") or ""))
            except BaseException:
                connection.close()
                raise
        except smtplib.SMTPAuthenticationError as exc:
            # The relay's credentials, not the message: keep the mail and retry after a fix.
            raise TransientError(f"SMTP login refused ({exc.smtp_code})", retry_after=_AUTH_RETRY_SECONDS) from None
        except smtplib.SMTPNotSupportedError:
            raise TransientError("SMTP server does not offer STARTTLS (or AUTH); not sending in clear",
                                 retry_after=_AUTH_RETRY_SECONDS) from None
        except smtplib.SMTPResponseException as exc:
            raise TransientError(f"SMTP server refused the session ({exc.smtp_code})") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientError(f"cannot reach the SMTP server ({type(exc).__name__})") from None
        return connection

    def check(self) -> list[str]:
        """Connect, say EHLO, STARTTLS and log in; the problem in one line, or []."""
        try:
            connection = self._connect()
        except TransientError as exc:
            return [str(exc)]
        connection.quit()
        return []

    # -- delivery -----------------------------------------------------------------------------

    def push(self, messages: Sequence[Outbound]) -> list[PushResult]:
        """Send each message once over one connection; suppressed recipients go dead unsent."""
        prepared = [self._prepare(message) for message in messages]
        blocked = self._suppressed(address for address, _ in (p for p in prepared if isinstance(p, tuple)))
        results: list[PushResult] = []
        bounced: list[str] = []
        connection: smtplib.SMTP | None = None
        try:
            for message, item in zip(messages, prepared, strict=True):
                if isinstance(item, PushResult):
                    results.append(item)
                    continue
                recipient, email = item
                reason = blocked.get(recipient.lower())
                if reason is not None:
                    results.append(PushResult(message_id=message.id, outcome="dead",
                                              error=f"recipient is on the suppression list ({reason}); not sent"))
                    continue
                if connection is None:
                    try:
                        connection = self._connect()
                    except TransientError as exc:
                        results.append(PushResult(message_id=message.id, outcome="retry", error=str(exc),
                                                  retry_after=exc.retry_after))
                        continue
                result, alive, hard_bounce = self._send(connection, message, recipient, email)
                results.append(result)
                if hard_bounce:
                    bounced.append(recipient)
                if not alive:
                    connection.close()
                    connection = None
        finally:
            if connection is not None:
                try:
                    connection.quit()
                except (smtplib.SMTPException, OSError):
                    connection.close()
        if bounced:
            self._record_bounces(bounced)
        return results

    def _prepare(self, message: Outbound) -> tuple[str, Any] | PushResult:
        args = action_args(message.payload)
        try:
            recipient = resolve(args.get("to"), account=message.account)
            subject, body = args.get("subject"), args.get("body")
            if not isinstance(subject, str) or not subject.strip():
                raise PermanentError("the email has no subject")
            if not isinstance(body, str):
                raise PermanentError("the email has no body")
            reply_to = None
            if message.kind == "customer.email" and self.config.get("reply_to_owner", True):
                reply_to = getattr(message.account, "owner_email", None)
            try:
                email = build_email(sender=str(self.config["from_address"]), sender_name=self.config.get("from_name"),
                                    to=recipient, subject=subject, body=body,
                                    idempotency_key=message.idempotency_key, domain=self._domain,
                                    created_at=message.created_at, kind=message.kind, reply_to=reply_to,
                                    html=args.get("html") if isinstance(args.get("html"), str) else None)
                if message.kind == "customer.email" and self.config.get("unsubscribe"):
                    email["List-Unsubscribe"] = f"<{self.config['unsubscribe']}>"
            except (ValueError, TypeError) as exc:
                raise PermanentError(f"the email cannot be built: {type(exc).__name__}") from None
        except PermanentError as exc:
            return PushResult(message_id=message.id, outcome="dead", error=str(exc))
        return recipient, email

    def _send(self, connection: smtplib.SMTP, message: Outbound, recipient: str,
              email: Any) -> tuple[PushResult, bool, bool]:
        """(result, connection still usable, recipient hard-bounced)."""
        try:
            connection.send_message(email, from_addr=str(self.config["from_address"]), to_addrs=[recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            code = next(iter(exc.recipients.values()))[0]
            return self._answer(message, code, "refused the recipient"), True, code in _HARD_BOUNCE_CODES
        except smtplib.SMTPSenderRefused as exc:
            return self._answer(message, exc.smtp_code, "refused the sender"), True, False
        except smtplib.SMTPDataError as exc:
            return self._answer(message, exc.smtp_code, "refused the message"), True, False
        except smtplib.SMTPServerDisconnected:
            # Maybe after the server stored it: the retry carries the same Message-ID.
            return PushResult(message_id=message.id, outcome="retry",
                              error="SMTP connection lost during the send"), False, False
        except smtplib.SMTPResponseException as exc:
            return self._answer(message, exc.smtp_code, "answered"), False, False
        except (smtplib.SMTPException, OSError) as exc:
            return PushResult(message_id=message.id, outcome="retry",
                              error=f"SMTP send failed ({type(exc).__name__})"), False, False
        return PushResult(message_id=message.id, outcome="delivered", remote_id=str(email["Message-ID"])), True, False

    @staticmethod
    def _answer(message: Outbound, code: int, what: str) -> PushResult:
        if 400 <= code < 500:
            return PushResult(message_id=message.id, outcome="retry", error=f"SMTP server {what} ({code}, temporary)")
        return PushResult(message_id=message.id, outcome="dead", error=f"SMTP server {what} ({code})")

    # -- suppression list ---------------------------------------------------------------------

    def _suppressed(self, addresses: Iterable[str]) -> dict[str, str]:
        """Lower-cased address -> reason, from the config list and the email_suppressions table."""
        wanted = {address.lower() for address in addresses}
        found = {address: "listed in the configuration" for address in wanted & self._listed}
        sessions = getattr(self.context, "sessions", None)
        if sessions is not None and wanted - set(found):
            with sessions() as session:
                for address, entry in suppressions.suppressed(session, addresses=wanted - set(found)).items():
                    found[address] = entry.reason
        return found

    def _record_bounces(self, addresses: Sequence[str]) -> None:
        sessions = getattr(self.context, "sessions", None)
        if sessions is None:
            return
        with sessions() as session, session.begin():
            for address in addresses:
                suppressions.add(session, address=address, reason="bounce", at=self.context.clock(),
                                 note="the SMTP server refused the mailbox", by="smtp")
