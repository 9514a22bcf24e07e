"""Paused playbooks: no new enrollments while paused; the journeys a pause parked, for resume.

Revision ID: 0101_playbook_pauses
Revises: 0100_playbook_templates
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import orchestrator.db

revision = '0101_playbook_pauses'
down_revision = '0100_playbook_templates'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('playbook_pauses',
    sa.Column('playbook_id', sa.String(length=100), nullable=False),
    sa.Column('paused_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('paused_by', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('parked_journey_ids', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
              nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_playbook_pauses')),
    sa.UniqueConstraint('playbook_id', name=op.f('uq_playbook_pauses_playbook_id'))
    )


def downgrade() -> None:
    op.drop_table('playbook_pauses')
