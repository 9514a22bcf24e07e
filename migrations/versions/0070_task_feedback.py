"""Task feedback: was this task worth a person's time (useful / not useful, with a note), one per person.

Revision ID: 0070_task_feedback
Revises: 0032_exception_groups
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import orchestrator.db

revision = '0070_task_feedback'
down_revision = '0032_exception_groups'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('task_feedback',
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('by', sa.String(length=320), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('useful', sa.Boolean(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['owners.id'], name=op.f('fk_task_feedback_owner_id_owners')),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_task_feedback_task_id_tasks'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task_feedback')),
    sa.UniqueConstraint('task_id', 'by', name=op.f('uq_task_feedback_task_id_by'))
    )


def downgrade() -> None:
    op.drop_table('task_feedback')
