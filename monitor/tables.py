"""The state database's tables (SQLAlchemy Core): one definition for SQLite and PostgreSQL.

The Alembic migrations in monitor/migrations create them; this module is what the code queries through.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("key_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
)

saved_searches = sa.Table(
    "saved_searches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("owner", sa.Integer, sa.ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("query", sa.Text),
    sa.Column("positive_ids", sa.JSON, nullable=False),
    sa.Column("negative_ids", sa.JSON, nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("weights", sa.JSON, nullable=False),
    sa.Column("filters", sa.JSON),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("fingerprint", sa.String(128)),
    sa.Column("vector", sa.LargeBinary),
    sa.Column("intercept", sa.Float, nullable=False, server_default="0"),
    sa.Column("feed_token", sa.String(64), nullable=False, unique=True),
    sa.Column("webhook_url", sa.Text),
    sa.Column("webhook_secret", sa.String(128)),
    sa.Column("last_version", sa.Integer),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
)

matches = sa.Table(
    "matches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("search_id", sa.Integer, sa.ForeignKey("saved_searches.id", ondelete="CASCADE"), nullable=False),
    sa.Column("item_id", sa.BigInteger, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delivery_id", sa.String(64)),
    sa.UniqueConstraint("search_id", "item_id", name="uq_matches_search_item"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("search_id", sa.Integer, sa.ForeignKey("saved_searches.id", ondelete="CASCADE"), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("next_attempt", sa.DateTime(timezone=True)),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
)
