"""Exception floods: one open item per repeating problem, with a count, first and last seen, samples.

Revision ID: 0032_exception_groups
Revises: 0031
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import orchestrator.db

revision = '0032_exception_groups'
down_revision = '0031'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('exception_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('group_key', sa.String(length=400), nullable=True))
        batch_op.add_column(sa.Column('occurrences', sa.Integer(), server_default=sa.text('1'), nullable=False))
        batch_op.add_column(sa.Column('first_seen_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_seen_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column(
            'sample_signal_ids',
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
            server_default=sa.text("'[]'"), nullable=False))
        batch_op.create_index('uq_exception_items_open_group_key', ['group_key'], unique=True,
                              sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))
    op.execute("UPDATE exception_items SET first_seen_at = created_at, last_seen_at = created_at")
    with op.batch_alter_table('exception_items', schema=None) as batch_op:
        batch_op.alter_column('sample_signal_ids', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('exception_items', schema=None) as batch_op:
        batch_op.drop_index('uq_exception_items_open_group_key', sqlite_where=sa.text("status = 'open'"),
                            postgresql_where=sa.text("status = 'open'"))
        batch_op.drop_column('sample_signal_ids')
        batch_op.drop_column('last_seen_at')
        batch_op.drop_column('first_seen_at')
        batch_op.drop_column('occurrences')
        batch_op.drop_column('group_key')
