"""Health scores: the current score per account (account_health) and its history with contributions.

Revision ID: 0130_health_scores
Revises: 0101_playbook_pauses
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import orchestrator.db

revision = '0130_health_scores'
down_revision = '0101_playbook_pauses'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('account_health',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('playbook_id', sa.String(length=80), nullable=False),
    sa.Column('computed_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('peak', sa.Integer(), nullable=False),
    sa.Column('contributions', JSON, nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_account_health_account_id_accounts'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_account_health'))
    )
    op.create_index(op.f('ix_account_health_computed_at'), 'account_health', ['computed_at'], unique=False)
    op.create_table('health_scores',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('previous', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('playbook_id', sa.String(length=80), nullable=False),
    sa.Column('computed_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('trigger', sa.String(length=80), nullable=False),
    sa.Column('contributions', JSON, nullable=False),
    sa.Column('dropped_signal_id', sa.Integer(), nullable=True),
    sa.Column('detail', JSON, nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_health_scores_account_id_accounts'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['dropped_signal_id'], ['signals.id'],
                            name=op.f('fk_health_scores_dropped_signal_id_signals')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_health_scores'))
    )
    op.create_index(op.f('ix_health_scores_account_id_computed_at'), 'health_scores', ['account_id', 'computed_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_health_scores_account_id_computed_at'), table_name='health_scores')
    op.drop_table('health_scores')
    op.drop_index(op.f('ix_account_health_computed_at'), table_name='account_health')
    op.drop_table('account_health')
