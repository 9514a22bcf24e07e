"""The weekly leadership digest: last week's oversight flags, noisiest steps, SLA by team, speed to lead
and time saved, as HTML email.

Mondays once the default calendar's working day has begun, one email per `[reports] digest_to`
address through the outbox, keyed by address and ISO week, so a second run or replica adds nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, select_autoescape
from sqlalchemy import select

from orchestrator.db import unit_of_work
from orchestrator.delivery import outbox
from orchestrator.models import OutboxMessage
from orchestrator.reports.catalog import run_report
from orchestrator.reports.scope import Scope
from orchestrator.worker.jobs import JobResult, job

if TYPE_CHECKING:
    from orchestrator.runtime import Runtime

__all__ = ["send_leadership_digest"]

_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_TEMPLATE = _ENV.from_string("""<!doctype html><html><body style="font-family:system-ui,sans-serif">
<h2>Handoff, week to {{ until }}</h2>
<h3>Oversight flags</h3>{% if flags %}<table border="1" cellpadding="4" style="border-collapse:collapse">
<tr><th>playbook</th><th>step</th><th>decisions</th><th>approval</th><th>under 30 s</th><th>override</th>
<th>flag</th></tr>
{% for r in flags %}<tr><td>{{ r.playbook }}</td><td>{{ r.step }}</td><td>{{ r.decisions }}</td>
<td>{{ pct(r.approval_rate) }}</td>
<td>{{ pct(r.quick_share) }}</td><td>{{ pct(r.override_rate) }}</td><td>{{ r.flag }}</td></tr>{% endfor %}</table>
{% else %}<p>No checkpoint flagged.</p>{% endif %}
<h3>Noisiest steps</h3>{% if noise %}<table border="1" cellpadding="4" style="border-collapse:collapse">
<tr><th>playbook</th><th>step</th><th>runs</th><th>skipped</th><th>closed without action</th><th>noise</th></tr>
{% for r in noise %}<tr><td>{{ r.playbook }}</td><td>{{ r.step }}</td><td>{{ r.runs }}</td><td>{{ r.skipped }}</td>
<td>{{ r.closed_without_action }}</td><td>{{ pct(r.noise_rate) }}</td></tr>{% endfor %}</table>
{% else %}<p>No step ran.</p>{% endif %}
<h3>SLA by team</h3>{% if sla %}<table border="1" cellpadding="4" style="border-collapse:collapse">
<tr><th>team</th><th>tasks</th><th>ack</th><th>due</th><th>breaches</th></tr>
{% for r in sla %}<tr><td>{{ r.group }}</td><td>{{ r.tasks }}</td><td>{{ pct(r.ack_adherence) }}</td>
<td>{{ pct(r.due_adherence) }}</td><td>{{ r.breaches }}</td></tr>{% endfor %}</table>
{% else %}<p>No tasks.</p>{% endif %}
<h3>Speed to lead</h3><p id="speed-to-lead">{% if lead and lead.touched %}{{ lead.touched }} of
{{ lead.signal_journeys }} new leads touched by a person; median {{ lead.touch_median_min }} min,
p90 {{ lead.touch_p90_min }} min from the signal.
{% else %}No lead touched by a person this week.{% endif %}</p>
<h3>Time saved</h3><p id="time-saved">{{ saved.automated }} minutes of routine work automated against {{ saved.human }}
estimated human minutes.</p>
<p>Figures as defined in the Handoff README (Reporting); the dashboard is at /dashboard.</p></body></html>""")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def send_leadership_digest(*, runtime: Runtime, now: datetime) -> int:
    """Enqueue this week's digest for each configured recipient not yet sent it; how many were enqueued."""
    settings = runtime.settings
    calendar = settings.calendar()
    local = now.astimezone(calendar.zone)
    if not settings.report_digest_to or local.weekday() != 0 or not calendar.is_business_time(now):
        return 0
    year, week, _ = local.isocalendar()
    since = now - timedelta(days=7)
    figures: dict[str, Any] = {
        "flags": [r for r in run_report("oversight", sessions=runtime.sessions, since=since, until=now) if r["flag"]],
        "noise": run_report("noise", sessions=runtime.sessions, since=since, until=now)[:5],
        "sla": run_report("sla", sessions=runtime.sessions, since=since, until=now, by="team"),
        "lead": next(iter(run_report("loop", sessions=runtime.sessions, since=since, until=now,
                                     scope=Scope(stage="acquire"))), None),
    }
    ledger = run_report("time-saved", sessions=runtime.sessions, since=since, until=now,
                        estimates=settings.action_estimates)
    figures["saved"] = {"automated": sum(r["automated_minutes"] for r in ledger),
                        "human": sum(r["human_estimate_minutes"] for r in ledger)}
    html = _TEMPLATE.render(until=f"{local:%Y-%m-%d}", pct=_pct, **figures)
    text = (f"{len(figures['flags'])} oversight flags, {sum(r['breaches'] for r in figures['sla'])} SLA breaches "
            "in the last seven days. The HTML part has the tables.")
    keys = {email: f"digest:leadership:{email}:{year}-W{week:02d}" for email in settings.report_digest_to}
    count = 0
    with unit_of_work(runtime.sessions) as session:
        sent = set(session.scalars(select(OutboxMessage.idempotency_key)
                                   .where(OutboxMessage.idempotency_key.in_(list(keys.values())))))
        for email, key in sorted(keys.items()):
            if key in sent:
                continue
            outbox.enqueue(session, kind="notify.email", target="email", at=now, idempotency_key=key,
                           payload={"to": email, "subject": f"Handoff leadership digest, week to {local:%Y-%m-%d}",
                                    "body": text, "html": html, "digest": "leadership"})
            count += 1
    return count


@job("digests.leadership", title="Weekly leadership digest (HTML email)", every=timedelta(minutes=15))
def _leadership_job(*, runtime: Runtime, now: datetime) -> JobResult:
    return JobResult(items=send_leadership_digest(runtime=runtime, now=now))
