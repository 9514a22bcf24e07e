"""Background work: the job registry every periodic task is defined in, and (later) the scheduler."""

from orchestrator.worker.jobs import Job, JobResult, all_jobs, job, register, register_provider

__all__ = ["Job", "JobResult", "all_jobs", "job", "register", "register_provider"]
