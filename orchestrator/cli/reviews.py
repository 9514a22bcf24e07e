"""`handoff reviews list|show|done`: configuration reviews of playbooks, opened when `review_every` comes due."""

from __future__ import annotations

import click
from sqlalchemy import select

from orchestrator.cli._format import table, when
from orchestrator.cli._options import ACTOR, RECORD_ID
from orchestrator.cli._runtime import pass_runtime
from orchestrator.db import unit_of_work
from orchestrator.errors import NotFound
from orchestrator.models import Owner, PlaybookReview
from orchestrator.runtime import Runtime
from orchestrator.work.reviews import complete_review


@click.group()
def reviews() -> None:
    """Playbook reviews: each playbook's maintainer (or a teammate) reviews it every `review_every`."""


@reviews.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include done reviews.")
@pass_runtime
def list_command(runtime: Runtime, show_all: bool) -> None:
    """Open reviews, the soonest due first."""
    with unit_of_work(runtime.sessions, read_only=True) as session:
        query = (select(PlaybookReview, Owner.email).outerjoin(Owner, Owner.id == PlaybookReview.owner_id)
                 .order_by(PlaybookReview.due_at, PlaybookReview.id))
        if not show_all:
            query = query.where(PlaybookReview.status.in_(("open", "unassigned")))
        rows = [(r.id, r.playbook_id, f"v{r.version}", r.status, email or "-", when(r.due_at), r.assigned_how)
                for r, email in session.execute(query)]
    if not rows:
        click.echo("no reviews" if show_all else "no open reviews")
        return
    for line in table(["id", "playbook", "version", "status", "reviewer", "due", "why them"], rows):
        click.echo(line)


@reviews.command("show")
@click.argument("review_id", type=RECORD_ID)
@pass_runtime
def show_command(runtime: Runtime, review_id: int) -> None:
    """A review's brief: versions applied, exceptions seen, step override and rejection rates."""
    with unit_of_work(runtime.sessions, read_only=True) as session:
        review = session.get(PlaybookReview, review_id)
        if review is None:
            raise NotFound(f"no review {review_id}")
        click.echo(f"review {review.id}: {review.playbook_id} v{review.version}, {review.status}, "
                   f"due {when(review.due_at)}")
        click.echo(review.brief_text)


@reviews.command("done")
@click.argument("review_id", type=RECORD_ID)
@click.option("--by", required=True, type=ACTOR, help="Who reviewed it (an email).")
@pass_runtime
def done_command(runtime: Runtime, review_id: int, by: str) -> None:
    """Mark a review done; the playbook's next review period starts now."""
    with unit_of_work(runtime.sessions) as session:
        review = complete_review(session, review_id=review_id, actor=by, now=runtime.clock.now())
        click.echo(f"review {review.id} of {review.playbook_id} done by {by}")
