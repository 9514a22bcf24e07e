"""Named templates stored with each playbook version (name -> template source), so a version keeps its texts.

Revision ID: 0100_playbook_templates
Revises: 0110_monitors
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0100_playbook_templates'
down_revision = '0110_monitors'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('playbook_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'templates', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
            server_default=sa.text("'{}'"), nullable=False))
    with op.batch_alter_table('playbook_versions', schema=None) as batch_op:
        batch_op.alter_column('templates', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('playbook_versions', schema=None) as batch_op:
        batch_op.drop_column('templates')
