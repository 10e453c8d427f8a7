"""Evaluate saved searches on the items that each newly published version added.

Per search, every published version after the last one it was evaluated on is visited in order; an item is
new in version n when version n holds it and the version before it on disk did not. Matches are inserted
with insert-or-ignore on UNIQUE(search, item), in the same transaction that advances the search's last
evaluated version: a run killed before that commit evaluates the version again, a rollback and re-publish
finds the same items again, and neither records (or alerts) a match twice.

A version built by another model than the one that computed a search's vector is never scored with that
vector, nor skipped: the vector is first computed again from the search's text and its labels' vectors in that
version (monitor.recompute, as the API does when the search is read) and stored, so a search nobody opens
after a model change still matches that night's items.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from index.store import IndexStore, IndexVersion
from monitor import searches
from monitor.db import now
from monitor.query_encoder import StoreQueryEncoder
from monitor.searches import SavedSearch
from monitor.tables import matches, saved_searches

log = logging.getLogger(__name__)
PAUSE_MARKER = "fault-paused"  # as index.job's crash-test hook: the tests wait for it, then SIGKILL


@dataclass(frozen=True)
class Evaluation:
    search_id: int
    version: int
    new_items: int
    recorded: int  # matches inserted now (0 when they were recorded by an earlier run)


def _pause(root: Path, stage: str) -> None:
    """Crash-test hook (POSAPL_MONITOR_FAULT_PAUSE_AT=matched): say so in ROOT/fault-paused, wait to be killed."""
    if os.environ.get("POSAPL_MONITOR_FAULT_PAUSE_AT") == stage:
        (root / PAUSE_MARKER).write_text(f"monitor-{stage}")
        while True:
            time.sleep(1)


def _insert_ignore(engine: sa.Engine):  # noqa: ANN202 (a dialect's Insert)
    """INSERT … ON CONFLICT DO NOTHING RETURNING item_id: the returned rows are the matches new to the table
    (both dialects write the same clause; rowcount is not reported for multi-row inserts by psycopg)."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(matches).on_conflict_do_nothing(index_elements=["search_id", "item_id"])
    return insert.returning(matches.c.item_id)


def new_item_ids(store: IndexStore, number: int, version: IndexVersion) -> np.ndarray:
    """Ids in `version` that the previous version on disk lacks (all of them for the first version)."""
    earlier = [n for n in store.versions() if n < number]
    if not earlier:
        return np.sort(version.image_ids())
    with store.open(earlier[-1], verify=False) as previous:
        return np.setdiff1d(version.image_ids(), previous.image_ids())


def _candidates(version: IndexVersion, new_ids: np.ndarray, filters: dict | None) -> np.ndarray:
    """The new ids that the search's AOI/time/GSD filters select (the service's own filter code)."""
    if not filters or not len(new_ids):
        return new_ids
    from service.filters import matching_ids
    from service.schemas import SearchFilters

    return np.intersect1d(new_ids, matching_ids(version, SearchFilters.model_validate(filters)))


def _current(
    engine: sa.Engine, search: SavedSearch, version: IndexVersion, encoder: StoreQueryEncoder, background_size: int
) -> SavedSearch:
    """The search with a vector of `version`'s model: as stored, or computed again (and stored) when the model
    changed. Its fingerprint still differs when that could not be done: the caller then leaves it waiting."""
    if search.vector is not None and search.fingerprint == version.manifest.fingerprint:
        return search
    from monitor.recompute import recompute

    text_vector = None
    if search.query:
        try:
            text_vector = encoder.encode(search.query, version.manifest.fingerprint)
        except (OSError, ValueError, RuntimeError) as exc:
            log.warning("saved search %d: its text cannot be encoded for index version %d: %s",
                        search.id, version.number, exc)
            return search
    return recompute(engine, search, version, text_vector, background_size)


def evaluate(engine: sa.Engine, root: Path, background_size: int) -> list[Evaluation]:
    """Evaluate every saved search on every published version it has not seen yet, up to the live one.

    background_size: the background sample of a `probe` search whose vector is computed again here."""
    store = IndexStore(root)
    live = store.current_version()
    if live is None:
        return []
    encoder = StoreQueryEncoder(root)
    done: list[Evaluation] = []
    for search in searches.list_for(engine, None):
        pending = [n for n in store.versions() if n <= live and n > (search.last_version or 0)]
        for number in pending:
            with store.open(number, verify=False) as version:
                search = _current(engine, search, version, encoder, background_size)
                if search.vector is None or search.fingerprint != version.manifest.fingerprint:
                    log.warning("saved search %d waits: no vector of index version %d's model", search.id, number)
                    break
                new_ids = _candidates(version, new_item_ids(store, number, version), search.filters)
                scores = version.image_vectors(new_ids) @ search.vector + search.intercept if len(new_ids) else []
                hits = [(int(i), float(s)) for i, s in zip(new_ids, scores) if s >= search.threshold]
            _pause(root, "matched")
            found_at = now()
            with engine.begin() as db:
                recorded = 0
                if hits:
                    rows = [
                        {"search_id": search.id, "item_id": i, "version": number, "score": s, "found_at": found_at}
                        for i, s in hits
                    ]
                    recorded = len(db.execute(_insert_ignore(engine), rows).all())
                db.execute(
                    saved_searches.update().where(saved_searches.c.id == search.id).values(last_version=number)
                )
            done.append(Evaluation(search.id, number, len(new_ids), recorded))
    return done
