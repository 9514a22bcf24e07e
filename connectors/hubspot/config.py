"""The `[connectors.hubspot]` settings: credentials, host and CA, limits, field mapping, identity."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

__all__ = ["DEFAULT_FIELDS", "HubSpotConfigSchema", "HubSpotSettings"]

# canonical Handoff field -> HubSpot property, per object (configurable per deployment)
DEFAULT_FIELDS: dict[str, dict[str, str]] = {
    "companies": {"name": "name", "domain": "domain", "industry": "industry", "arr": "annualrevenue",
                  "owner": "hubspot_owner_id"},
    "contacts": {"email": "email", "title": "jobtitle"},
    "deals": {"name": "dealname", "amount": "amount", "stage": "dealstage", "close_date": "closedate",
              "owner": "hubspot_owner_id"},
}
_LOOPBACK_NAMES = {"localhost"}


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _FieldMap(fields.Dict):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(keys=fields.String(validate=validate.Regexp(r"^[a-z][a-z0-9_.]*$")),
                         values=fields.String(validate=validate.Regexp(r"^[A-Za-z0-9_]+$")), **kwargs)


class HubSpotConfigSchema(Schema):
    """Either `access_token` (a private app) or `client_id` + `client_secret` + `refresh_token` (OAuth)."""

    access_token = fields.String(load_default=None, metadata={"secret": True})
    client_id = fields.String(load_default=None)
    client_secret = fields.String(load_default=None, metadata={"secret": True})
    refresh_token = fields.String(load_default=None, metadata={"secret": True})
    webhook_secret = fields.String(load_default=None, metadata={"secret": True})  # default: client_secret
    # The URL HubSpot calls, as registered in the app: what it signs, when a proxy rewrites the request's.
    webhook_url = fields.Url(load_default=None, schemes={"https", "http"}, require_tld=False)
    host = fields.String(load_default="https://api.hubapi.com")
    ca_bundle = fields.String(load_default=None)
    enabled = fields.Boolean(load_default=True)
    requests_per_10s = fields.Integer(load_default=100, validate=validate.Range(min=1, max=10_000))
    search_per_second = fields.Integer(load_default=4, validate=validate.Range(min=1, max=100))
    daily_reset_timezone = fields.String(load_default="UTC")
    overlap_seconds = fields.Integer(load_default=300, validate=validate.Range(min=0, max=86_400))
    idempotency_property = fields.String(load_default="handoff_key",
                                         validate=validate.Regexp(r"^[a-z][a-z0-9_]*$"))
    owner_role = fields.String(load_default="ae", validate=validate.Length(min=1, max=60))
    company_fields = _FieldMap(load_default=None)
    contact_fields = _FieldMap(load_default=None)
    deal_fields = _FieldMap(load_default=None)
    won_stages = fields.List(fields.String(), load_default=lambda: ["closedwon"])
    lost_stages = fields.List(fields.String(), load_default=lambda: ["closedlost"])
    renewal_property = fields.String(load_default=None)
    renewal_window_days = fields.Integer(load_default=120, validate=validate.Range(min=1, max=730))
    match = fields.String(load_default="domain", validate=validate.OneOf(["domain", "external_id"]))
    match_property = fields.String(load_default=None)  # company property holding the other CRM's id
    match_source = fields.String(load_default="salesforce")

    @validates("host")
    def _host(self, value: str, **_: Any) -> None:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValidationError("must be an https:// URL, e.g. https://api.hubapi.com")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValidationError("must use https (plain http is only allowed to 127.0.0.1 for tests)")
        if parts.path not in ("", "/") or parts.query or parts.username:
            raise ValidationError("must be a bare origin like https://api.hubapi.com (no path, query or user)")

    @validates("daily_reset_timezone")
    def _zone(self, value: str, **_: Any) -> None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError(f"{value!r} is not an IANA time zone, e.g. America/New_York") from None

    @validates_schema
    def _credentials(self, data: dict[str, Any], **_: Any) -> None:
        oauth = [data.get(k) for k in ("client_id", "client_secret", "refresh_token")]
        if not data.get("access_token") and not all(oauth):
            raise ValidationError("give access_token (a private app) or client_id, client_secret and "
                                  "refresh_token (OAuth)", "access_token")
        if data.get("match") == "external_id" and not data.get("match_property"):
            raise ValidationError("is required when match = \"external_id\"", "match_property")


@dataclass(frozen=True)
class HubSpotSettings:
    access_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    refresh_token: str | None = None
    webhook_secret: str | None = None
    webhook_url: str | None = None
    host: str = "https://api.hubapi.com"
    ca_bundle: str | None = None
    enabled: bool = True
    requests_per_10s: int = 100
    search_per_second: int = 4
    daily_reset_timezone: str = "UTC"
    overlap_seconds: int = 300
    idempotency_property: str = "handoff_key"
    owner_role: str = "ae"
    fields: dict[str, dict[str, str]] = field(default_factory=lambda: {k: dict(v) for k, v in DEFAULT_FIELDS.items()})
    won_stages: list[str] = field(default_factory=lambda: ["closedwon"])
    lost_stages: list[str] = field(default_factory=lambda: ["closedlost"])
    renewal_property: str | None = None
    renewal_window_days: int = 120
    match: str = "domain"
    match_property: str | None = None
    match_source: str = "salesforce"

    def __repr__(self) -> str:  # the dataclass default would print the secrets
        return f"HubSpotSettings(host={self.host!r}, oauth={bool(self.refresh_token)})"
