"""All tables, importable from one place (Alembic and services import from here)."""

from orchestrator.models.audit import AuditEvent
from orchestrator.models.base import Base
from orchestrator.models.crm import Account, Contact, Deal, ExternalId, JourneyStage, Owner, StageChange
from orchestrator.models.exceptions import ExceptionItem
from orchestrator.models.journeys import CustomerTouch, Journey, JourneyStatus, StepRun, StepStatus
from orchestrator.models.ops import ApiKey, JobRun, SyncCursor, WebhookReceipt
from orchestrator.models.outbox import OutboxMessage, OutboxStatus
from orchestrator.models.playbooks import PlaybookVersion
from orchestrator.models.signals import Signal
from orchestrator.models.suppressions import EmailSuppression, SuppressionReason
from orchestrator.models.tasks import (
    OPEN_STATUSES,
    OUTCOME_STATUS,
    OUTCOMES_BY_KIND,
    Priority,
    SlaEvent,
    SlaEventKind,
    SlaState,
    Task,
    TaskKind,
    TaskStatus,
)

__all__ = [
    "OPEN_STATUSES", "OUTCOMES_BY_KIND", "OUTCOME_STATUS", "Account", "ApiKey", "AuditEvent", "Base", "Contact",
    "CustomerTouch", "Deal", "EmailSuppression", "ExceptionItem", "ExternalId", "JobRun", "Journey", "JourneyStage",
    "JourneyStatus", "OutboxMessage", "OutboxStatus", "Owner", "PlaybookVersion", "Priority", "Signal", "SlaEvent",
    "SlaEventKind", "SlaState", "StageChange", "StepRun", "StepStatus", "SuppressionReason", "SyncCursor", "Task",
    "TaskKind", "TaskStatus", "WebhookReceipt",
]
