"""Signals remember transient failures (attempts, retry_at, last error); pending signals by account.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import orchestrator.db

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False))
        batch_op.add_column(sa.Column('retry_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.String(length=200), nullable=True))
        batch_op.create_index('ix_signals_pending_by_account', ['account_id', 'received_at', 'id'], unique=False,
                              sqlite_where=sa.text('processed_at IS NULL'),
                              postgresql_where=sa.text('processed_at IS NULL'))


def downgrade() -> None:
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.drop_index('ix_signals_pending_by_account', sqlite_where=sa.text('processed_at IS NULL'),
                            postgresql_where=sa.text('processed_at IS NULL'))
        batch_op.drop_column('last_error')
        batch_op.drop_column('retry_at')
        batch_op.drop_column('attempts')
