"""API keys: a random secret shown once; only its SHA-256 is stored, so a leaked database leaks no key."""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa

from monitor.db import now
from monitor.tables import api_keys


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def add_key(engine: sa.Engine, name: str) -> str:
    """Create a key named `name` and return it (the only time it is visible). ValueError when the name exists."""
    key = "posapl_" + secrets.token_urlsafe(32)
    try:
        with engine.begin() as db:
            db.execute(api_keys.insert().values(name=name, key_sha256=key_hash(key), created=now()))
    except sa.exc.IntegrityError:
        raise ValueError(f"a key named {name!r} exists already") from None
    return key


def owner_of(engine: sa.Engine, key: str) -> int | None:
    """The id of the key's row, None for an unknown key."""
    with engine.connect() as db:
        return db.execute(sa.select(api_keys.c.id).where(api_keys.c.key_sha256 == key_hash(key))).scalar()
