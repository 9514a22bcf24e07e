"""Configuration reviews: one review per playbook per review_every period, with its own deadline.

Revision ID: 0060_playbook_reviews
Revises: 0070_task_feedback
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import orchestrator.db

revision = '0060_playbook_reviews'
down_revision = '0070_task_feedback'
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('playbook_reviews',
    sa.Column('playbook_id', sa.String(length=100), nullable=False),
    sa.Column('period', sa.String(length=40), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('assigned_how', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('due_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('check_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('escalation_level', sa.Integer(), server_default='0', nullable=False),
    sa.Column('completed_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('completed_by', sa.String(length=320), nullable=True),
    sa.Column('brief', _JSON, nullable=False),
    sa.Column('brief_text', sa.Text(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['owners.id'], name=op.f('fk_playbook_reviews_owner_id_owners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_playbook_reviews')),
    sa.UniqueConstraint('playbook_id', 'period', name='uq_playbook_reviews_once')
    )
    op.create_index(op.f('ix_playbook_reviews_playbook_id_status'), 'playbook_reviews', ['playbook_id', 'status'])
    op.create_index('ix_playbook_reviews_open_check', 'playbook_reviews', ['check_at'],
                    sqlite_where=sa.text("status = 'open' AND check_at IS NOT NULL"),
                    postgresql_where=sa.text("status = 'open' AND check_at IS NOT NULL"))


def downgrade() -> None:
    op.drop_index('ix_playbook_reviews_open_check', table_name='playbook_reviews')
    op.drop_index(op.f('ix_playbook_reviews_playbook_id_status'), table_name='playbook_reviews')
    op.drop_table('playbook_reviews')
