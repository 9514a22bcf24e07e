"""Indexes that keep the engine's cost flat as history grows.

Open journeys by account, tasks by journey, signals by (account, type, occurred_at) for the
sensitive-signal check, and automated step runs by journey for a brief's "automations".

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0031'
down_revision = '0030'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('journeys', schema=None) as batch_op:
        batch_op.create_index('ix_journeys_open_by_account', ['account_id', 'id'], unique=False,
                              sqlite_where=sa.text('ended_at IS NULL'),
                              postgresql_where=sa.text('ended_at IS NULL'))
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signals_account_id_type_occurred_at'),
                              ['account_id', 'type', 'occurred_at'], unique=False)
    with op.batch_alter_table('step_runs', schema=None) as batch_op:
        batch_op.create_index('ix_step_runs_automated', ['journey_id', 'started_at'], unique=False,
                              sqlite_where=sa.text("kind = 'automated'"),
                              postgresql_where=sa.text("kind = 'automated'"))
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tasks_journey_id'), ['journey_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tasks_journey_id'))
    with op.batch_alter_table('step_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_step_runs_automated', sqlite_where=sa.text("kind = 'automated'"),
                            postgresql_where=sa.text("kind = 'automated'"))
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signals_account_id_type_occurred_at'))
    with op.batch_alter_table('journeys', schema=None) as batch_op:
        batch_op.drop_index('ix_journeys_open_by_account', sqlite_where=sa.text('ended_at IS NULL'),
                            postgresql_where=sa.text('ended_at IS NULL'))
