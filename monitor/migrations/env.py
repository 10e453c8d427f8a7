"""Alembic environment: runs on the connection monitor.db hands it (never reads alembic.ini)."""

from alembic import context

from monitor.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
