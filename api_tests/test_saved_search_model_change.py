"""A saved search outlives a model change: made under model A, it is recomputed under model B from its text and
its labels' stored vectors by the nightly update itself (nobody reads it in between), reports the labels whose
items left the archive, and matches that night's new items with the recomputed vector, the one the API's own
recompute gives.

Model B is the tiny test architecture with a narrower embedding (24 instead of 32 dimensions), so its
fingerprint differs and no vector of A could be used by mistake.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from api_support import DATA, build_index, model_env, start_server
from cli_support import posapl, posapl_env

from index.store import open_version
from monitor import searches
from monitor.db import open_engine
from monitor.settings import MonitorSettings
from posapl.model import build_model
from posapl.pos import PosTagger
from posapl.text import normalize_caption
from service.encoding import QueryEncoder
from service.feedback.queries import rocchio_vector
from service.query_text import clean_query

RSICD = sorted((DATA / "rsicd" / "test").glob("*.jpg"))
QUERY = "green trees beside a road"


def _copy(paths: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        shutil.copy2(path, folder / path.name)


def _client(url: str, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"X-API-Key": key} if key else {}, timeout=120)


def _text_vector(arch: Path, query: str) -> np.ndarray:
    """The query's unit vector under the model of `arch`, encoded here, as the server encodes a query."""
    model = build_model("rsitmd", "random", arch=str(arch))
    encoder = QueryEncoder(model, PosTagger(), cache_size=1)
    return encoder.encode_batch([normalize_caption(clean_query(query, 1000))])[0].embedding.vector


@pytest.fixture(scope="module")
def arch_b(tmp_path_factory: pytest.TempPathFactory, tiny_arch_file: Path) -> Path:
    arch = json.loads(tiny_arch_file.read_text())
    arch["embed_dim"] = 24
    path = tmp_path_factory.mktemp("arch-b") / "posapl-tiny-b.json"
    path.write_text(json.dumps(arch))
    return path


def test_a_model_change_recomputes_the_saved_vector_and_reports_lost_labels(
    tmp_path: Path, archive: tuple[Path, Path], tiny_arch_file: Path, arch_b: Path
) -> None:
    root, images, captions = tmp_path / "store", tmp_path / "images", archive[1]
    _copy(RSICD[900:908], images)
    build_index(root, images, captions, tiny_arch_file)
    env = posapl_env()
    added = posapl(["keys", "add", "alice", "--root", str(root)], env)
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip().splitlines()[-1]
    with open_version(root) as version_a:
        ids = {Path(r.path).name: int(r.id) for r in version_a.all_images()}
        fingerprint_a = version_a.manifest.fingerprint
    kept, leaving, negative = (ids[p.name] for p in RSICD[900:903])
    body = {"name": "trees", "query": QUERY, "positive_ids": [kept, leaving], "negative_ids": [negative],
            "threshold": -1.0}

    server_env = {**model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(root), "POSAPL_ENCODER_RUNTIME": "torch"}
    server = start_server(tmp_path, "model-a", server_env)
    try:
        with _client(server.url, key) as client:
            created = client.post("/v1/searches", json=body)
            # a search whose only label will leave: nothing is left to recompute it from under model B
            orphan = client.post("/v1/searches", json={"name": "lost", "positive_ids": [leaving], "threshold": 0.5})
        assert created.status_code == 201 and orphan.status_code == 201, created.text + orphan.text
        saved, orphan = created.json(), orphan.json()
        assert saved["model_fingerprint"] == fingerprint_a and saved["missing_labels"] == []
    finally:
        server.stop()

    # The archive loses one labelled image and the store is rebuilt for model B (a full rebuild: new fingerprint).
    (images / RSICD[901].name).unlink()
    build_index(root, images, captions, arch_b)
    with open_version(root) as version_b:
        fingerprint_b = version_b.manifest.fingerprint
        assert fingerprint_b != fingerprint_a and version_b.number == 2
        kept_b, negative_b = version_b.image_vectors(np.array([kept, negative], np.int64))
    expected = rocchio_vector(np.vstack([kept_b, _text_vector(arch_b, QUERY)]), negative_b[None, :], 2.0, 1.0)

    server = start_server(tmp_path, "model-b", {**server_env, **model_env(arch_b), "POSAPL_RELOAD_POLL_S": "0.2"})
    try:
        # Tonight's update under B, before anyone has opened the search: the monitor must neither score B's items
        # with A's vector nor skip them; it recomputes the vector itself, stores it, and matches with it.
        tonight = tmp_path / "tonight"
        _copy(RSICD[920:924], tonight)
        update = ["index", "update", "--root", str(root), "--add-images", str(tonight), "--no-progress",
                  "--device", "cpu", "--num-workers", "0"]
        done = posapl(update, env)
        assert done.returncode == 0, done.stderr
        assert f"saved search {saved['id']}: labelled item(s) {leaving} left the archive" in done.stderr
        engine = open_engine(MonitorSettings(root=root))
        stored = searches.get(engine, None, saved["id"])
        assert stored.fingerprint == fingerprint_b
        np.testing.assert_allclose(stored.vector, expected, atol=1e-5)
        found = searches.list_matches(engine, saved["id"])
        with open_version(root) as version_c:
            new_ids = np.array(sorted(set(version_c.image_ids()) - set(ids.values())), np.int64)
            new_scores = version_c.image_vectors(new_ids) @ expected
        assert len(new_ids) == 4
        assert sorted(m["item_id"] for m in found) == new_ids.tolist()  # threshold -1: every new item matches
        by_item = {m["item_id"]: m["score"] for m in found}
        np.testing.assert_allclose([by_item[i] for i in new_ids.tolist()], new_scores, atol=1e-5)
        assert {m["version"] for m in found} == {3}
        # the orphan has nothing to be recomputed from: it waits, unscored, with A's fingerprint
        assert searches.list_matches(engine, orphan["id"]) == []
        assert searches.get(engine, None, orphan["id"]).fingerprint == fingerprint_a

        with _client(server.url, key) as client:
            listed = client.get("/v1/searches")  # the page's list of watches
            assert listed.status_code == 200, listed.text
            fresh, stuck = listed.json()["searches"]
            assert fresh["model_fingerprint"] == fingerprint_b and fresh["last_version"] == 3
            assert fresh["missing_labels"] == [leaving]
            assert fresh["positive_ids"] == [kept, leaving], "a lost label is reported, never dropped"
            # the orphan stays readable, says why, and keeps A's fingerprint (so it is never scored against B)
            assert (stuck["model_fingerprint"], stuck["missing_labels"]) == (fingerprint_a, [leaving])
            single = client.get(f"/v1/searches/{orphan['id']}")
            assert single.status_code == 200 and single.json() == stuck, single.text

            # The API's own recompute (a read finding A's vector) gives the vector the monitor computed.
            searches.update(engine, stored.owner, stored.id, {"fingerprint": fingerprint_a, "vector": np.ones(32)})
            reread = client.get(f"/v1/searches/{saved['id']}")
            assert reread.status_code == 200 and reread.json()["model_fingerprint"] == fingerprint_b, reread.text
            np.testing.assert_allclose(searches.get(engine, None, saved["id"]).vector, stored.vector, atol=1e-6)

            caught_up = posapl(["monitor", "run", "--root", str(root)], env)
            assert caught_up.returncode == 0, caught_up.stderr
            listed_matches = client.get(f"/v1/searches/{saved['id']}/matches").json()["matches"]
        assert [(m["item_id"], m["version"]) for m in listed_matches] == [(m["item_id"], m["version"]) for m in found]
    finally:
        server.stop()
