"""Email suppression list: addresses that get no mail (bounces, unsubscribes, complaints).

Revision ID: 0005
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import orchestrator.db

revision = '0005'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('email_suppressions',
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('reason', sa.String(length=20), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_email_suppressions')),
    sa.UniqueConstraint('address', name=op.f('uq_email_suppressions_address'))
    )


def downgrade() -> None:
    op.drop_table('email_suppressions')
