"""Configuration of the Salesforce connector (`[connectors.salesforce]` in the config file).

Secrets (tokens, passwords, keys) are marked secret: give them as `env:VARIABLE` or encrypted
(`fernet:...`, `handoff secrets encrypt`); they are never printed or logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

AUTH_METHODS = ("access_token", "refresh_token", "password", "jwt")

# Handoff canonical field -> Salesforce field, per object. Orgs override any entry; a value of ""
# drops the field. Canonical names that are not Handoff columns land in the record's `attributes`.
DEFAULT_FIELDS: Mapping[str, Mapping[str, str]] = {
    "account": {"name": "Name", "domain": "Website", "industry": "Industry", "arr": "AnnualRevenue",
                "owner": "OwnerId", "health": "", "segment": "", "renewal_date": ""},
    "contact": {"account": "AccountId", "name": "Name", "email": "Email", "title": "Title"},
    "deal": {"account": "AccountId", "name": "Name", "amount": "Amount", "stage": "StageName",
             "close_date": "CloseDate", "is_closed": "IsClosed", "is_won": "IsWon", "owner": "OwnerId",
             "kind": "Type"},
    "owner": {"email": "Email", "name": "Name", "active": "IsActive", "timezone": "TimeZoneSidKey",
              "manager": "ManagerId", "team": "Department"},
}
SF_OBJECTS: Mapping[str, str] = {"account": "Account", "contact": "Contact", "deal": "Opportunity", "owner": "User"}

# Handoff task status -> Task.Status, Handoff priority -> Task.Priority (orgs rename picklist values).
DEFAULT_TASK_STATUS = {"open": "Not Started", "acknowledged": "In Progress", "done": "Completed",
                       "rejected": "Completed", "cancelled": "Completed"}
DEFAULT_TASK_PRIORITY = {"low": "Low", "normal": "Normal", "high": "High", "urgent": "High"}
# Task.Status a rep sets -> the outcome Handoff records. A status not listed but closed means "done"
# for an action task; approvals and reviews need a status that says approved/rejected/published.
DEFAULT_COMPLETED_STATUSES = {"Completed": "done"}


class _MappingOf(fields.Dict):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(keys=fields.String(), values=fields.String(), **kwargs)


class SalesforceConfigSchema(Schema):
    """Validated `[connectors.salesforce]` section."""

    auth = fields.String(load_default="refresh_token", validate=validate.OneOf(AUTH_METHODS))
    instance_url = fields.Url(load_default=None, schemes={"https"}, require_tld=False)
    login_url = fields.Url(load_default="https://login.salesforce.com", schemes={"https"}, require_tld=False)
    api_version = fields.String(load_default="59.0", validate=validate.Regexp(r"^\d{2,3}\.\d$",
                                                                              error="like 59.0, no leading v"))
    ca_bundle = fields.String(load_default=None)  # a CA file for sandboxes behind TLS inspection, test servers
    access_token = fields.String(load_default=None, metadata={"secret": True})
    refresh_token = fields.String(load_default=None, metadata={"secret": True})
    client_id = fields.String(load_default=None)
    client_secret = fields.String(load_default=None, metadata={"secret": True})
    username = fields.String(load_default=None)
    password = fields.String(load_default=None, metadata={"secret": True})
    security_token = fields.String(load_default=None, metadata={"secret": True})
    private_key = fields.String(load_default=None, metadata={"secret": True})  # PEM, JWT bearer flow
    timeout = fields.Float(load_default=None, validate=validate.Range(min=0.1, max=600))

    fields_ = fields.Dict(data_key="fields", keys=fields.String(validate=validate.OneOf(list(DEFAULT_FIELDS))),
                          values=_MappingOf(), load_default=dict)
    role_map = _MappingOf(load_default=dict)  # Salesforce role or profile name -> Handoff role
    default_role = fields.String(load_default="ae")
    task_external_id_field = fields.String(load_default="Handoff_Key__c",
                                           validate=validate.Regexp(r"^[A-Za-z][A-Za-z0-9_]*__c$",
                                                                    error="a custom field name ending in __c"))
    task_status = _MappingOf(load_default=dict)
    task_priority = _MappingOf(load_default=dict)
    completed_statuses = _MappingOf(load_default=dict)

    overlap_seconds = fields.Integer(load_default=300, validate=validate.Range(min=0, max=86400))
    history_days = fields.Integer(load_default=0, validate=validate.Range(min=0, max=3650))
    renewal_days = fields.Integer(load_default=120, validate=validate.Range(min=1, max=730))
    api_budget = fields.Float(load_default=0.9, validate=validate.Range(min=0.01, max=1.0))
    limit_backoff_seconds = fields.Float(load_default=3600, validate=validate.Range(min=0, max=86400))
    retry_attempts = fields.Integer(load_default=4, validate=validate.Range(min=1, max=20))
    retry_wait_seconds = fields.Float(load_default=1.0, validate=validate.Range(min=0, max=60))
    retry_max_wait_seconds = fields.Float(load_default=30.0, validate=validate.Range(min=0, max=600))

    @validates_schema
    def _credentials(self, data: dict[str, Any], **_: Any) -> None:
        needed = {"access_token": ("access_token", "instance_url"),
                  "refresh_token": ("refresh_token", "client_id"),
                  "password": ("username", "password", "security_token"),
                  "jwt": ("username", "client_id", "private_key")}[data.get("auth", "refresh_token")]
        for name in needed:
            if not data.get(name):
                raise ValidationError(f"required with auth = {data.get('auth', 'refresh_token')!r}", name)


def field_map(config: Mapping[str, Any], kind: str) -> dict[str, str]:
    """Canonical -> Salesforce field names for one record kind, defaults merged with the org's overrides."""
    merged = dict(DEFAULT_FIELDS[kind])
    merged.update((config.get("fields_") or {}).get(kind, {}))
    return {canonical: remote for canonical, remote in merged.items() if remote}
