"""The state database on SQLite and on a real PostgreSQL: migrations, keys, saved searches, matching and
webhook deliveries, one suite parametrized over both."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import postgres_cluster
import pytest
import sqlalchemy as sa
from webhook_receiver import Receiver

from monitor import searches, webhooks
from monitor.db import StateUnavailableError, now, open_engine
from monitor.keys import add_key, key_hash, owner_of
from monitor.settings import MonitorSettings
from monitor.tables import deliveries, matches


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if not postgres_cluster.available():
        pytest.skip(f"PostgreSQL binaries are not installed in {postgres_cluster.PG_BIN}")
    with postgres_cluster.cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MonitorSettings]:
    if request.param == "sqlite":
        yield MonitorSettings(root=tmp_path, state_db=None, webhook_allow_private=True, webhook_backoff_s=0)
        return
    url = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(url)
    name = f"t{abs(hash(request.node.name)) % 10**9}"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        db.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        db.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    yield MonitorSettings(
        root=tmp_path, state_db=url.rsplit("/", 1)[0] + f"/{name}", webhook_allow_private=True, webhook_backoff_s=0
    )


def _search(engine: sa.Engine, owner: int, **extra) -> searches.SavedSearch:
    fields = {
        "name": "ships", "query": "ships in a harbour", "positive_ids": [1], "negative_ids": [], "method": "rocchio",
        "weights": {"positive": 2.0, "negative": 1.0}, "filters": None, "threshold": 0.5,
        "fingerprint": "f", "vector": np.ones(4, np.float32) / 2, "intercept": 0.0, **extra,
    }
    return searches.create(engine, owner, fields)


def test_migrations_create_the_schema_and_are_idempotent(settings: MonitorSettings) -> None:
    engine = open_engine(settings)
    from monitor.db import migrate

    migrate(engine)  # a second upgrade to head changes nothing
    tables = set(sa.inspect(engine).get_table_names())
    assert {"api_keys", "saved_searches", "matches", "deliveries", "alembic_version"} <= tables
    with engine.connect() as db:
        assert db.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0001"


def test_keys_store_only_a_hash_and_identify_the_owner(settings: MonitorSettings) -> None:
    engine = open_engine(settings)
    key = add_key(engine, "alice")
    with engine.connect() as db:
        stored = db.exec_driver_sql("SELECT key_sha256 FROM api_keys").scalars().all()
    assert stored == [hashlib.sha256(key.encode()).hexdigest()] and key not in stored
    assert owner_of(engine, key) is not None and owner_of(engine, key + "x") is None
    with pytest.raises(ValueError, match="exists"):
        add_key(engine, "alice")
    assert key_hash(key) == stored[0]


def test_saved_searches_are_seen_only_by_their_owner(settings: MonitorSettings) -> None:
    engine = open_engine(settings)
    alice = owner_of(engine, add_key(engine, "alice"))
    bob = owner_of(engine, add_key(engine, "bob"))
    saved = _search(engine, alice)
    assert searches.get(engine, alice, saved.id).name == "ships"
    np.testing.assert_array_equal(searches.get(engine, alice, saved.id).vector, np.ones(4, np.float32) / 2)
    assert searches.get(engine, bob, saved.id) is None
    assert [s.id for s in searches.list_for(engine, bob)] == []
    assert searches.update(engine, bob, saved.id, {"name": "stolen"}).__class__ is type(None)
    assert searches.get(engine, alice, saved.id).name == "ships"
    assert not searches.delete(engine, bob, saved.id)
    with engine.begin() as db:
        db.execute(matches.insert().values(search_id=saved.id, item_id=3, version=1, score=1.0, found_at=now()))
    assert searches.delete(engine, alice, saved.id)
    assert searches.get(engine, alice, saved.id) is None
    with engine.connect() as db:  # its matches went with it
        assert db.execute(sa.select(sa.func.count()).select_from(matches)).scalar_one() == 0


def test_matches_since_an_instant(settings: MonitorSettings) -> None:
    engine = open_engine(settings)
    saved = _search(engine, owner_of(engine, add_key(engine, "alice")))
    first, second = now(), now() + timedelta(seconds=5)
    with engine.begin() as db:
        db.execute(matches.insert(), [
            {"search_id": saved.id, "item_id": 1, "version": 2, "score": 0.9, "found_at": first},
            {"search_id": saved.id, "item_id": 2, "version": 3, "score": 0.9, "found_at": second},
        ])
    assert [m["item_id"] for m in searches.list_matches(engine, saved.id)] == [1, 2]
    assert [m["item_id"] for m in searches.list_matches(engine, saved.id, since=first)] == [2]
    assert searches.list_matches(engine, saved.id, since=second) == []


def test_a_match_is_recorded_once_per_search_and_item(settings: MonitorSettings) -> None:
    from monitor.db import now
    from monitor.matching import _insert_ignore

    engine = open_engine(settings)
    owner = owner_of(engine, add_key(engine, "alice"))
    saved = _search(engine, owner)
    row = {"search_id": saved.id, "item_id": 7, "version": 2, "score": 0.9, "found_at": now()}
    with engine.begin() as db:
        assert len(db.execute(_insert_ignore(engine), [row]).all()) == 1
    with engine.begin() as db:  # the same item again, e.g. from a re-published version
        assert db.execute(_insert_ignore(engine), [{**row, "version": 3}]).all() == []
    assert [(m["item_id"], m["version"]) for m in searches.list_matches(engine, saved.id)] == [(7, 2)]


@pytest.mark.parametrize("failures", [0, 2])
def test_webhook_is_signed_and_retried_until_delivered(settings: MonitorSettings, failures: int) -> None:

    engine = open_engine(settings)
    owner = owner_of(engine, add_key(engine, "alice"))
    receiver = Receiver(failures)
    try:
        saved = _search(engine, owner, webhook_url=receiver.url, webhook_secret="s3cret")
        with engine.begin() as db:
            db.execute(matches.insert(), [
                {"search_id": saved.id, "item_id": i, "version": 2, "score": 0.8, "found_at": now()} for i in (5, 9)
            ])
        assert webhooks.queue_new_matches(engine) == 1
        assert webhooks.queue_new_matches(engine) == 0  # already batched
        counts = webhooks.deliver_due(engine, settings)
    finally:
        receiver.close()
    assert counts["delivered"] == 1 and counts["pending"] == 0
    assert len(receiver.received) == failures + 1
    ids = {headers[webhooks.DELIVERY_HEADER] for headers, _ in receiver.received}
    assert len(ids) == 1  # every retry carries the same delivery id
    headers, body = receiver.received[-1]
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[webhooks.SIGNATURE_HEADER], expected)
    assert [m["item_id"] for m in json.loads(body)["matches"]] == [5, 9]
    with engine.connect() as db:
        log = db.execute(sa.select(deliveries.c.status, deliveries.c.attempts)).all()
    assert [tuple(r) for r in log] == [("delivered", failures + 1)]


def test_webhook_urls_must_be_public_http(settings: MonitorSettings) -> None:
    for url in ("ftp://example.org/x", "file:///etc/passwd", "http:///nohost"):
        with pytest.raises(ValueError, match="http"):
            webhooks.check_url(url, allow_private=True)
    for url in ("http://127.0.0.1:9/x", "http://10.0.0.1/x", "http://169.254.169.254/latest", "http://[::1]/x"):
        with pytest.raises(ValueError, match="private"):
            webhooks.check_url(url, allow_private=False)
    webhooks.check_url("http://127.0.0.1:9/x", allow_private=True)


def test_an_unreachable_database_is_reported_as_unavailable(tmp_path: Path) -> None:
    settings = MonitorSettings(root=tmp_path, state_db="postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(StateUnavailableError):
        open_engine(settings)



def test_processes_starting_together_on_an_empty_database_all_migrate(settings: MonitorSettings) -> None:
    """Several api replicas and the nightly job may each reach a new database first; none may fail."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(4) as pool:
        barrier = manager.Barrier(4)
        results = pool.starmap(_migrate_together, [(settings.database_url(), barrier)] * 4)
    assert results == ["0001"] * 4


def _migrate_together(url: str, barrier) -> str:  # noqa: ANN001 (a manager's Barrier proxy)
    """In a fresh process, as a replica is: wait for the others, then upgrade the schema."""
    from monitor.db import migrate

    engine = sa.create_engine(url)
    barrier.wait()
    migrate(engine)
    with engine.connect() as db:
        return db.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one()
