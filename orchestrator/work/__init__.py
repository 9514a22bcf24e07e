"""Work for people: who gets it (`assignment`), what they read (`briefs`), and the task with its deadlines."""

from orchestrator.work.assignment import resolve_assignee
from orchestrator.work.briefs import build_brief
from orchestrator.work.tasks import complete_task, create_task

__all__ = ["build_brief", "complete_task", "create_task", "resolve_assignee"]
