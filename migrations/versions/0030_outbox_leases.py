"""Outbox shaped for connectors: the delivering connector, lease columns; sync cursors hold JSON.

Revision ID: 0030
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import orchestrator.db

revision = '0030'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('connector', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('claimed_until', orchestrator.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_outbox_due_by_connector', ['connector', 'next_attempt_at'], unique=False,
                              sqlite_where=sa.text("status = 'pending'"),
                              postgresql_where=sa.text("status = 'pending'"))
    with op.batch_alter_table('sync_cursors', schema=None) as batch_op:
        batch_op.alter_column('cursor', existing_type=sa.String(length=255), type_=sa.Text(),
                              existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('sync_cursors', schema=None) as batch_op:
        batch_op.alter_column('cursor', existing_type=sa.Text(), type_=sa.String(length=255),
                              existing_nullable=False)
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_due_by_connector', sqlite_where=sa.text("status = 'pending'"),
                            postgresql_where=sa.text("status = 'pending'"))
        batch_op.drop_column('claimed_until')
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('connector')
