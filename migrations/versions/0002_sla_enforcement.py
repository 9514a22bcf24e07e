"""SLA enforcement: SLA state and sweep watermark on tasks, exception escalation, job run history.

Revision ID: 0002
Revises: 0021
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import orchestrator.db

revision = '0002'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_runs',
    sa.Column('job_id', sa.String(length=100), nullable=False),
    sa.Column('last_started_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_finished_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_duration_ms', sa.Integer(), nullable=False),
    sa.Column('last_items', sa.Integer(), nullable=False),
    sa.Column('last_errors', sa.Integer(), nullable=False),
    sa.Column('last_detail', sa.Text(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('runs', sa.Integer(), nullable=False),
    sa.Column('failed_runs', sa.Integer(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_runs')),
    sa.UniqueConstraint('job_id', name=op.f('uq_job_runs_job_id'))
    )
    with op.batch_alter_table('exception_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('escalation_level', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('next_escalation_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_exception_items_escalation_due', ['next_escalation_at', 'id'], unique=False, sqlite_where=sa.text("status = 'open' AND next_escalation_at IS NOT NULL"), postgresql_where=sa.text("status = 'open' AND next_escalation_at IS NOT NULL"))

    with op.batch_alter_table('sla_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sla_events_kind_at'), ['kind', 'at'], unique=False)
        batch_op.create_unique_constraint('uq_sla_events_once', ['task_id', 'kind', 'level'])

    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sla_state', sa.String(length=20), server_default='on_track', nullable=False))
        batch_op.add_column(sa.Column('sla_check_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('ack_outcome', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('due_outcome', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('paused_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('paused_seconds', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_index('ix_tasks_sla_check', ['sla_check_at'], unique=False, sqlite_where=sa.text('sla_check_at IS NOT NULL'), postgresql_where=sa.text('sla_check_at IS NOT NULL'))

    # Work that was already open: the first sweep looks at every open task once and sets its
    # real next check; open exception items escalate once past their window.
    op.execute("UPDATE tasks SET sla_check_at = created_at WHERE status IN ('open', 'acknowledged')")
    op.execute("UPDATE exception_items SET next_escalation_at = respond_by WHERE status = 'open'")


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_sla_check', sqlite_where=sa.text('sla_check_at IS NOT NULL'), postgresql_where=sa.text('sla_check_at IS NOT NULL'))
        batch_op.drop_column('paused_seconds')
        batch_op.drop_column('paused_at')
        batch_op.drop_column('due_outcome')
        batch_op.drop_column('ack_outcome')
        batch_op.drop_column('sla_check_at')
        batch_op.drop_column('sla_state')

    with op.batch_alter_table('sla_events', schema=None) as batch_op:
        batch_op.drop_constraint('uq_sla_events_once', type_='unique')
        batch_op.drop_index(batch_op.f('ix_sla_events_kind_at'))

    with op.batch_alter_table('exception_items', schema=None) as batch_op:
        batch_op.drop_index('ix_exception_items_escalation_due', sqlite_where=sa.text("status = 'open' AND next_escalation_at IS NOT NULL"), postgresql_where=sa.text("status = 'open' AND next_escalation_at IS NOT NULL"))
        batch_op.drop_column('next_escalation_at')
        batch_op.drop_column('escalation_level')

    op.drop_table('job_runs')
