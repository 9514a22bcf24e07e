"""Journeys: the engine. Signals end, wake and enroll journeys; steps run under their oversight level.

Read in this order: `drain` (the transactions) -> `engine` (exit, wake, enroll) -> `steps`
(one executor per step kind) -> `governance` (caps, quiet hours) -> `stages`; `decisions`
is what people do back.
"""

from orchestrator.journeys.drain import drain_signals, drain_timeouts
from orchestrator.journeys.engine import (
    decide_task,
    end_journey,
    override_step,
    process_pending,
    retry_journey,
    sweep_timeouts,
)

__all__ = [
    "decide_task", "drain_signals", "drain_timeouts", "end_journey", "override_step", "process_pending",
    "retry_journey", "sweep_timeouts",
]
