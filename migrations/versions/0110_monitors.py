"""Monitors: per-account window aggregates, silence clocks for absence monitors, and firings (one per window).

Revision ID: 0110_monitors
Revises: 0060_playbook_reviews
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import orchestrator.db

revision = '0110_monitors'
down_revision = '0060_playbook_reviews'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('monitor_windows',
    sa.Column('monitor_key', sa.String(length=200), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('window_start', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('window_end', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('signals', sa.Integer(), nullable=False),
    sa.Column('values', sa.Integer(), nullable=False),
    sa.Column('total', sa.Float(), nullable=False),
    sa.Column('low', sa.Float(), nullable=True),
    sa.Column('high', sa.Float(), nullable=True),
    sa.Column('updated_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_monitor_windows_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_monitor_windows')),
    sa.UniqueConstraint('monitor_key', 'account_id', 'window_start',
                        name=op.f('uq_monitor_windows_monitor_key_account_id_window_start'))
    )
    op.create_table('monitor_silences',
    sa.Column('monitor_key', sa.String(length=200), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('last_seen_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('silent_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_monitor_silences_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_monitor_silences')),
    sa.UniqueConstraint('monitor_key', 'account_id', name=op.f('uq_monitor_silences_monitor_key_account_id'))
    )
    op.create_index(op.f('ix_monitor_silences_monitor_key_silent_at'), 'monitor_silences',
                    ['monitor_key', 'silent_at'], unique=False)
    op.create_table('monitor_firings',
    sa.Column('monitor_key', sa.String(length=200), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('window_key', sa.String(length=64), nullable=False),
    sa.Column('fired_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('signal_id', sa.Integer(), nullable=True),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_monitor_firings_account_id_accounts')),
    sa.ForeignKeyConstraint(['signal_id'], ['signals.id'], name=op.f('fk_monitor_firings_signal_id_signals')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_monitor_firings')),
    sa.UniqueConstraint('monitor_key', 'account_id', 'window_key',
                        name=op.f('uq_monitor_firings_monitor_key_account_id_window_key'))
    )
    op.create_index(op.f('ix_monitor_firings_account_id'), 'monitor_firings', ['account_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_monitor_firings_account_id'), table_name='monitor_firings')
    op.drop_table('monitor_firings')
    op.drop_index(op.f('ix_monitor_silences_monitor_key_silent_at'), table_name='monitor_silences')
    op.drop_table('monitor_silences')
    op.drop_table('monitor_windows')
