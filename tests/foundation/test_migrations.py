"""Alembic: one head, a clean round trip on both databases, and models that match the migrations."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from orchestrator import schema
from orchestrator.db import make_engine
from orchestrator.models import Base


def test_there_is_exactly_one_head(fresh_database):
    engine = make_engine(fresh_database)
    heads = ScriptDirectory.from_config(schema.alembic_config(engine)).get_heads()
    engine.dispose()
    assert len(heads) == 1


def test_upgrade_to_head_then_downgrade_to_base_leaves_an_empty_database(fresh_database):
    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    assert schema.current_revision(engine) == schema.head_revision(engine)
    assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
    schema.downgrade(engine)
    assert schema.current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def test_autogenerate_finds_no_difference_between_models_and_migrations(fresh_database):
    engine = make_engine(fresh_database)
    schema.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert differences == []
