"""All tables, importable from one place (Alembic and services import from here)."""

from orchestrator.models.audit import AuditEvent
from orchestrator.models.base import Base
from orchestrator.models.crm import Account, Contact, Deal, ExternalId, JourneyStage, Owner, StageChange
from orchestrator.models.exceptions import ExceptionItem
from orchestrator.models.health import AccountHealth, HealthScore
from orchestrator.models.ids import assign_id
from orchestrator.models.journeys import CustomerTouch, Journey, JourneyStatus, StepRun, StepStatus
from orchestrator.models.monitors import MonitorFiring, MonitorSilence, MonitorWindow
from orchestrator.models.ops import ApiKey, JobRun, SyncCursor, WebhookReceipt
from orchestrator.models.outbox import OutboxMessage, OutboxStatus
from orchestrator.models.playbooks import PlaybookPause, PlaybookVersion
from orchestrator.models.reviews import PlaybookReview
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
    TaskFeedback,
    TaskKind,
    TaskStatus,
)

__all__ = [
    "OPEN_STATUSES", "OUTCOMES_BY_KIND", "OUTCOME_STATUS", "Account", "AccountHealth", "ApiKey", "AuditEvent",
    "Base", "Contact", "CustomerTouch", "Deal", "EmailSuppression", "ExceptionItem", "ExternalId", "HealthScore",
    "JobRun", "Journey", "JourneyStage",
    "JourneyStatus", "MonitorFiring", "MonitorSilence", "MonitorWindow", "OutboxMessage", "OutboxStatus", "Owner",
    "PlaybookPause", "PlaybookReview", "PlaybookVersion", "Priority", "Signal", "SlaEvent", "SlaEventKind",
    "SlaState", "StageChange",
    "StepRun", "StepStatus", "SuppressionReason", "SyncCursor", "Task", "TaskFeedback", "TaskKind", "TaskStatus",
    "WebhookReceipt", "assign_id",
]
