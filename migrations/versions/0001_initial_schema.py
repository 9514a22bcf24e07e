"""Initial schema: the CRM mirror, signals, playbook versions, journeys, tasks, outbox, audit.

Revision ID: 0001
Revises: 
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import orchestrator.db

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('created_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('prefix', name=op.f('uq_api_keys_prefix'))
    )
    op.create_table('external_ids',
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('local_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=40), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_external_ids')),
    sa.UniqueConstraint('kind', 'local_id', 'source', name=op.f('uq_external_ids_kind_local_id_source')),
    sa.UniqueConstraint('kind', 'source', 'external_id', name=op.f('uq_external_ids_kind_source_external_id'))
    )
    op.create_table('owners',
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=60), nullable=False),
    sa.Column('team', sa.String(length=100), nullable=True),
    sa.Column('manager_id', sa.Integer(), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('working_hours', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('out_of_office_until', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('max_open_tasks', sa.Integer(), nullable=True),
    sa.Column('last_assigned_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['manager_id'], ['owners.id'], name=op.f('fk_owners_manager_id_owners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_owners')),
    sa.UniqueConstraint('email', name=op.f('uq_owners_email'))
    )
    with op.batch_alter_table('owners', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_owners_role'), ['role'], unique=False)

    op.create_table('playbook_versions',
    sa.Column('playbook_id', sa.String(length=100), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('stage', sa.String(length=20), nullable=False),
    sa.Column('checksum', sa.String(length=64), nullable=False),
    sa.Column('source_text', sa.Text(), nullable=False),
    sa.Column('source_path', sa.String(length=500), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('applied_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('applied_by', sa.String(length=200), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_playbook_versions')),
    sa.UniqueConstraint('playbook_id', 'version', name=op.f('uq_playbook_versions_playbook_id_version'))
    )
    with op.batch_alter_table('playbook_versions', schema=None) as batch_op:
        batch_op.create_index('uq_playbook_versions_active', ['playbook_id'], unique=True, sqlite_where=sa.text('active'), postgresql_where=sa.text('active'))

    op.create_table('sync_cursors',
    sa.Column('connector', sa.String(length=40), nullable=False),
    sa.Column('object_type', sa.String(length=40), nullable=False),
    sa.Column('cursor', sa.String(length=255), nullable=False),
    sa.Column('updated_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_cursors')),
    sa.UniqueConstraint('connector', 'object_type', name=op.f('uq_sync_cursors_connector_object_type'))
    )
    op.create_table('accounts',
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('domain', sa.String(length=253), nullable=True),
    sa.Column('segment', sa.String(length=60), nullable=True),
    sa.Column('industry', sa.String(length=120), nullable=True),
    sa.Column('arr', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('health', sa.Integer(), nullable=True),
    sa.Column('renewal_date', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('csm_id', sa.Integer(), nullable=True),
    sa.Column('stage', sa.String(length=20), nullable=False),
    sa.Column('stage_entered_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('churned_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['owners.id'], name=op.f('fk_accounts_owner_id_owners')),
    sa.ForeignKeyConstraint(['csm_id'], ['owners.id'], name=op.f('fk_accounts_csm_id_owners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('domain', name=op.f('uq_accounts_domain'))
    )
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_accounts_owner_id'), ['owner_id'], unique=False)

    op.create_table('contacts',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('title', sa.String(length=200), nullable=True),
    sa.Column('role', sa.String(length=60), nullable=True),
    sa.Column('is_primary', sa.Boolean(), nullable=False),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_contacts_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contacts'))
    )
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contacts_account_id'), ['account_id'], unique=False)

    op.create_table('deals',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('stage', sa.String(length=100), nullable=True),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('close_date', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('is_closed', sa.Boolean(), nullable=False),
    sa.Column('is_won', sa.Boolean(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_deals_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['owner_id'], ['owners.id'], name=op.f('fk_deals_owner_id_owners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deals'))
    )
    with op.batch_alter_table('deals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deals_account_id'), ['account_id'], unique=False)

    op.create_table('signals',
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('dedupe_key', sa.String(length=255), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('deal_id', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=40), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('occurred_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('processed_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_signals_account_id_accounts')),
    sa.ForeignKeyConstraint(['deal_id'], ['deals.id'], name=op.f('fk_signals_deal_id_deals')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signals')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_signals_dedupe_key'))
    )
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signals_account_id_occurred_at'), ['account_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_signals_pending', ['received_at', 'id'], unique=False, sqlite_where=sa.text('processed_at IS NULL'), postgresql_where=sa.text('processed_at IS NULL'))
        batch_op.create_index(batch_op.f('ix_signals_type'), ['type'], unique=False)

    op.create_table('journeys',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('playbook_id', sa.String(length=100), nullable=False),
    sa.Column('playbook_version_id', sa.Integer(), nullable=False),
    sa.Column('enrollment_key', sa.String(length=300), nullable=False),
    sa.Column('trigger_signal_id', sa.Integer(), nullable=True),
    sa.Column('deal_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('current_step_id', sa.String(length=100), nullable=True),
    sa.Column('wait_signal', sa.String(length=100), nullable=True),
    sa.Column('wait_until', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('context', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('enrolled_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('end_reason', sa.String(length=500), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_journeys_account_id_accounts')),
    sa.ForeignKeyConstraint(['deal_id'], ['deals.id'], name=op.f('fk_journeys_deal_id_deals')),
    sa.ForeignKeyConstraint(['playbook_version_id'], ['playbook_versions.id'], name=op.f('fk_journeys_playbook_version_id_playbook_versions')),
    sa.ForeignKeyConstraint(['trigger_signal_id'], ['signals.id'], name=op.f('fk_journeys_trigger_signal_id_signals')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journeys')),
    sa.UniqueConstraint('enrollment_key', name=op.f('uq_journeys_enrollment_key'))
    )
    with op.batch_alter_table('journeys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_journeys_account_id_status'), ['account_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_journeys_playbook_id'), ['playbook_id'], unique=False)
        batch_op.create_index('ix_journeys_wait_due', ['wait_until'], unique=False, sqlite_where=sa.text("status = 'waiting' AND wait_until IS NOT NULL"), postgresql_where=sa.text("status = 'waiting' AND wait_until IS NOT NULL"))

    op.create_table('audit_events',
    sa.Column('at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('journey_id', sa.Integer(), nullable=True),
    sa.Column('playbook_id', sa.String(length=100), nullable=True),
    sa.Column('playbook_version', sa.Integer(), nullable=True),
    sa.Column('step_id', sa.String(length=100), nullable=True),
    sa.Column('rule', sa.String(length=200), nullable=False),
    sa.Column('actor', sa.String(length=320), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_audit_events_account_id_accounts')),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], name=op.f('fk_audit_events_journey_id_journeys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_account_id_at'), ['account_id', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_journey_id'), ['journey_id'], unique=False)

    op.create_table('customer_touches',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('journey_id', sa.Integer(), nullable=True),
    sa.Column('step_id', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=100), nullable=False),
    sa.Column('at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_customer_touches_account_id_accounts')),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], name=op.f('fk_customer_touches_journey_id_journeys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_touches'))
    )
    with op.batch_alter_table('customer_touches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_touches_account_id_at'), ['account_id', 'at'], unique=False)

    op.create_table('exception_items',
    sa.Column('category', sa.String(length=60), nullable=False),
    sa.Column('owner', sa.String(length=320), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('signal_id', sa.Integer(), nullable=True),
    sa.Column('journey_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('respond_by', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.String(length=320), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_exception_items_account_id_accounts')),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], name=op.f('fk_exception_items_journey_id_journeys')),
    sa.ForeignKeyConstraint(['signal_id'], ['signals.id'], name=op.f('fk_exception_items_signal_id_signals')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exception_items'))
    )
    with op.batch_alter_table('exception_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_exception_items_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_exception_items_category_created_at'), ['category', 'created_at'], unique=False)
        batch_op.create_index('ix_exception_items_open_respond_by', ['respond_by'], unique=False, sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))

    op.create_table('stage_changes',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('from_stage', sa.String(length=20), nullable=True),
    sa.Column('to_stage', sa.String(length=20), nullable=False),
    sa.Column('at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('seconds_in_previous', sa.Integer(), nullable=True),
    sa.Column('journey_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_stage_changes_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], name=op.f('fk_stage_changes_journey_id_journeys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stage_changes'))
    )
    with op.batch_alter_table('stage_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stage_changes_account_id_at'), ['account_id', 'at'], unique=False)

    op.create_table('step_runs',
    sa.Column('journey_id', sa.Integer(), nullable=False),
    sa.Column('step_id', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('oversight', sa.String(length=20), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('outcome', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('override_until', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('started_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], name=op.f('fk_step_runs_journey_id_journeys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_step_runs'))
    )
    with op.batch_alter_table('step_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_step_runs_journey_id_step_id'), ['journey_id', 'step_id'], unique=False)
        batch_op.create_index('ix_step_runs_override_open', ['override_until'], unique=False, sqlite_where=sa.text('override_until IS NOT NULL'), postgresql_where=sa.text('override_until IS NOT NULL'))

    op.create_table('tasks',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('journey_id', sa.Integer(), nullable=True),
    sa.Column('step_run_id', sa.Integer(), nullable=True),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('title', sa.String(length=255), nullable=False),
    sa.Column('recommendation', sa.Text(), nullable=False),
    sa.Column('brief', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('brief_text', sa.Text(), nullable=False),
    sa.Column('draft', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('priority', sa.String(length=10), nullable=False),
    sa.Column('created_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ack_by', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('due_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('acknowledged_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('completed_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('completed_by', sa.String(length=320), nullable=True),
    sa.Column('outcome', sa.String(length=40), nullable=True),
    sa.Column('escalation_level', sa.Integer(), nullable=False),
    sa.Column('next_escalation_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_reminder_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('crm_source', sa.String(length=40), nullable=True),
    sa.Column('crm_id', sa.String(length=255), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_tasks_account_id_accounts')),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], name=op.f('fk_tasks_journey_id_journeys')),
    sa.ForeignKeyConstraint(['owner_id'], ['owners.id'], name=op.f('fk_tasks_owner_id_owners')),
    sa.ForeignKeyConstraint(['step_run_id'], ['step_runs.id'], name=op.f('fk_tasks_step_run_id_step_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tasks')),
    sa.UniqueConstraint('step_run_id', 'kind', name=op.f('uq_tasks_step_run_id_kind'))
    )
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tasks_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_tasks_next_escalation', ['next_escalation_at'], unique=False, sqlite_where=sa.text('next_escalation_at IS NOT NULL'), postgresql_where=sa.text('next_escalation_at IS NOT NULL'))
        batch_op.create_index('ix_tasks_open_ack', ['ack_by'], unique=False, sqlite_where=sa.text("status = 'open' AND ack_by IS NOT NULL"), postgresql_where=sa.text("status = 'open' AND ack_by IS NOT NULL"))
        batch_op.create_index('ix_tasks_open_due', ['due_at'], unique=False, sqlite_where=sa.text("status IN ('open', 'acknowledged')"), postgresql_where=sa.text("status IN ('open', 'acknowledged')"))
        batch_op.create_index(batch_op.f('ix_tasks_owner_id_status'), ['owner_id', 'status'], unique=False)

    op.create_table('outbox_messages',
    sa.Column('kind', sa.String(length=60), nullable=False),
    sa.Column('target', sa.String(length=40), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('task_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('remote_id', sa.String(length=255), nullable=True),
    sa.Column('created_at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', orchestrator.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_outbox_messages_account_id_accounts')),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_outbox_messages_task_id_tasks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_messages')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_outbox_messages_idempotency_key'))
    )
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_due', ['next_attempt_at', 'id'], unique=False, sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'"))
        batch_op.create_index(batch_op.f('ix_outbox_messages_account_id'), ['account_id'], unique=False)

    op.create_table('sla_events',
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('at', orchestrator.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_sla_events_task_id_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sla_events'))
    )
    with op.batch_alter_table('sla_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sla_events_task_id_at'), ['task_id', 'at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sla_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sla_events_task_id_at'))

    op.drop_table('sla_events')
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_messages_account_id'))
        batch_op.drop_index('ix_outbox_due', sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'"))

    op.drop_table('outbox_messages')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tasks_owner_id_status'))
        batch_op.drop_index('ix_tasks_open_due', sqlite_where=sa.text("status IN ('open', 'acknowledged')"), postgresql_where=sa.text("status IN ('open', 'acknowledged')"))
        batch_op.drop_index('ix_tasks_open_ack', sqlite_where=sa.text("status = 'open' AND ack_by IS NOT NULL"), postgresql_where=sa.text("status = 'open' AND ack_by IS NOT NULL"))
        batch_op.drop_index('ix_tasks_next_escalation', sqlite_where=sa.text('next_escalation_at IS NOT NULL'), postgresql_where=sa.text('next_escalation_at IS NOT NULL'))
        batch_op.drop_index(batch_op.f('ix_tasks_account_id'))

    op.drop_table('tasks')
    with op.batch_alter_table('step_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_step_runs_override_open', sqlite_where=sa.text('override_until IS NOT NULL'), postgresql_where=sa.text('override_until IS NOT NULL'))
        batch_op.drop_index(batch_op.f('ix_step_runs_journey_id_step_id'))

    op.drop_table('step_runs')
    with op.batch_alter_table('stage_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stage_changes_account_id_at'))

    op.drop_table('stage_changes')
    with op.batch_alter_table('exception_items', schema=None) as batch_op:
        batch_op.drop_index('ix_exception_items_open_respond_by', sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))
        batch_op.drop_index(batch_op.f('ix_exception_items_category_created_at'))
        batch_op.drop_index(batch_op.f('ix_exception_items_account_id'))

    op.drop_table('exception_items')
    with op.batch_alter_table('customer_touches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_touches_account_id_at'))

    op.drop_table('customer_touches')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_journey_id'))
        batch_op.drop_index(batch_op.f('ix_audit_events_account_id_at'))

    op.drop_table('audit_events')
    with op.batch_alter_table('journeys', schema=None) as batch_op:
        batch_op.drop_index('ix_journeys_wait_due', sqlite_where=sa.text("status = 'waiting' AND wait_until IS NOT NULL"), postgresql_where=sa.text("status = 'waiting' AND wait_until IS NOT NULL"))
        batch_op.drop_index(batch_op.f('ix_journeys_playbook_id'))
        batch_op.drop_index(batch_op.f('ix_journeys_account_id_status'))

    op.drop_table('journeys')
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signals_type'))
        batch_op.drop_index('ix_signals_pending', sqlite_where=sa.text('processed_at IS NULL'), postgresql_where=sa.text('processed_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_signals_account_id_occurred_at'))

    op.drop_table('signals')
    with op.batch_alter_table('deals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deals_account_id'))

    op.drop_table('deals')
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contacts_account_id'))

    op.drop_table('contacts')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_owner_id'))

    op.drop_table('accounts')
    op.drop_table('sync_cursors')
    with op.batch_alter_table('playbook_versions', schema=None) as batch_op:
        batch_op.drop_index('uq_playbook_versions_active', sqlite_where=sa.text('active'), postgresql_where=sa.text('active'))

    op.drop_table('playbook_versions')
    with op.batch_alter_table('owners', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_owners_role'))

    op.drop_table('owners')
    op.drop_table('external_ids')
    op.drop_table('api_keys')
