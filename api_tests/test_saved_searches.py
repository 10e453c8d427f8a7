"""Saved searches end to end: a real uvicorn, `posapl keys add`, `posapl index update --add-images` running the
monitor after publish, a local webhook receiver, the Atom feed read by feedparser, and a SIGKILL between
matching and recording."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import feedparser
import httpx
import pytest
from api_support import DATA, LiveServer, build_index, model_env, start_server, unit_test_module
from cli_support import posapl, posapl_env, start_posapl

from index.store import open_version

Receiver = unit_test_module("webhook_receiver.py").Receiver

RSICD = DATA / "rsicd" / "test"
SECRET = "receiver-secret-0123456789"


def _rsicd(count: int, start: int) -> list[Path]:
    return sorted(RSICD.glob("*.jpg"))[start : start + count]


def _copy(paths: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        shutil.copy2(path, folder / path.name)


class Watch:
    def __init__(self, root: Path, server: LiveServer, env: dict[str, str], key: str, receiver: Receiver) -> None:
        self.root, self.server, self.env, self.key, self.receiver = root, server, env, key, receiver

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {} if key is None and self.key is None else {"Authorization": f"Bearer {key or self.key}"}
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=120)


def _add_key(env: dict[str, str], root: Path, name: str) -> str:
    done = posapl(["keys", "add", name, "--root", str(root)], env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def watch(
    tmp_path_factory: pytest.TempPathFactory, archive: tuple[Path, Path], tiny_arch_file: Path
) -> Iterator[Watch]:
    """Version 1 of a 12-image store, a server on it, the key of `alice` and a running webhook receiver."""
    base = tmp_path_factory.mktemp("watch")
    root, images = base / "store", base / "images"
    _copy(_rsicd(12, 300), images)
    build_index(root, images, archive[1], tiny_arch_file)
    env = posapl_env(POSAPL_WEBHOOK_ALLOW_PRIVATE="true")
    server = start_server(
        base, "watch", {**model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(root), "POSAPL_RELOAD_POLL_S": "0.2",
                        "POSAPL_WEBHOOK_ALLOW_PRIVATE": "true"}
    )
    receiver = Receiver()
    try:
        yield Watch(root, server, env, _add_key(env, root, "alice"), receiver)
    finally:
        server.stop()
        receiver.server.shutdown()


def _wait_for_version(client: httpx.Client, number: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if client.get("/readyz").json().get("index_version") == number:
            return
        time.sleep(0.2)
    pytest.fail(f"the server never served version {number}")


def _update(watch: Watch, folder: Path, **extra: str) -> None:
    args = ["index", "update", "--root", str(watch.root), "--add-images", str(folder), "--no-progress",
            "--device", "cpu", "--num-workers", "0"]
    done = posapl(args, {**watch.env, **extra})
    assert done.returncode == 0, done.stderr
    assert "saved searches:" in done.stdout, done.stdout + done.stderr


def _expected(watch: Watch, version: int, new_ids: set[int], body: dict) -> set[int]:
    """The new items whose relevance-feedback score (the search's own vector, ranked by the service) reaches
    the threshold: POST /v1/search/feedback with the same labels and text, over every item."""
    with watch.client() as client:
        _wait_for_version(client, version)
        labels = {k: body[k] for k in ("query", "positive_ids", "negative_ids", "method") if k in body}
        ranked = client.post("/v1/search/feedback", json={**labels, "k": 100}).json()["results"]
    return {int(hit["id"]) for hit in ranked if int(hit["id"]) in new_ids and hit["score"] >= body["threshold"]}


def _new_ids(root: Path, version: int) -> set[int]:
    with open_version(root, version) as new, open_version(root, version - 1) as old:
        return {int(i) for i in new.image_ids()} - {int(i) for i in old.image_ids()}


def _scores_now(watch: Watch, body: dict) -> list[float]:
    with watch.client() as client:
        labels = {k: body[k] for k in ("query", "positive_ids") if k in body}
        ranked = client.post("/v1/search/feedback", json={**labels, "k": 100}).json()["results"]
    return sorted(hit["score"] for hit in ranked)


def test_writes_need_a_key_and_searches_are_private(watch: Watch) -> None:
    with watch.client() as alice, httpx.Client(base_url=watch.server.url, timeout=60) as anonymous:
        first = int(alice.post("/v1/search/text", json={"query": "a harbour", "k": 1}).json()["results"][0]["id"])
        body = {"name": "harbour", "query": "boats in a harbour", "threshold": 0.0}
        refused = anonymous.post("/v1/searches", json=body)
        assert refused.status_code == 401 and "API key" in refused.json()["message"]
        assert anonymous.post("/v1/searches", json=body, headers={"X-API-Key": "posapl_wrong"}).status_code == 401
        created = alice.post("/v1/searches", json={**body, "positive_ids": [first]})
        assert created.status_code == 201, created.text
        saved = created.json()
        bob_key = _add_key(watch.env, watch.root, "bob")
        with watch.client(bob_key) as bob:
            assert bob.get(f"/v1/searches/{saved['id']}").status_code == 404
            assert bob.get("/v1/searches").json()["searches"] == []
            assert bob.delete(f"/v1/searches/{saved['id']}").status_code == 404
        assert [s["id"] for s in alice.get("/v1/searches").json()["searches"]] == [saved["id"]]
        with watch.client() as again:
            assert again.get(f"/v1/searches/{saved['id']}", headers={"X-API-Key": watch.key}).status_code == 200
        unknown = alice.post("/v1/searches", json={**body, "positive_ids": [first, 12345], "negative_ids": [999]})
        assert unknown.status_code == 422
        assert "12345" in unknown.json()["message"] and "999" in unknown.json()["message"]
        ftp = alice.post("/v1/searches", json={**body, "webhook_url": "ftp://x.org/", "webhook_secret": SECRET})
        assert ftp.status_code == 422 and "http" in ftp.json()["message"]
        patched = alice.patch(f"/v1/searches/{saved['id']}", json={"name": "renamed <b>", "threshold": 0.5})
        assert patched.status_code == 200 and patched.json()["name"] == "renamed <b>"
        assert alice.delete(f"/v1/searches/{saved['id']}").status_code == 204
        assert alice.get(f"/v1/searches/{saved['id']}").status_code == 404


def test_update_records_exactly_the_new_items_above_the_threshold(watch: Watch, tmp_path: Path) -> None:
    with watch.client() as client:
        version = client.get("/readyz").json()["index_version"]
        first = int(client.post("/v1/search/text", json={"query": "green trees", "k": 1}).json()["results"][0]["id"])
        scores = _scores_now(watch, {"query": "green trees", "positive_ids": [first]})
        body = {
            "name": "trees", "query": "green trees", "positive_ids": [first], "threshold": scores[len(scores) // 3],
            "webhook_url": watch.receiver.url, "webhook_secret": SECRET,
        }
        saved = client.post("/v1/searches", json=body).json()
        assert saved["last_version"] == version
    folder = tmp_path / "tonight"
    _copy(_rsicd(10, 500), folder)
    _update(watch, folder)
    new_ids = _new_ids(watch.root, version + 1)
    expected = _expected(watch, version + 1, new_ids, body)
    assert expected, "the threshold should let some new items through"
    with watch.client() as client:
        found = client.get(f"/v1/searches/{saved['id']}/matches").json()
        geojson = client.get(f"/v1/searches/{saved['id']}/matches", params={"format": "geojson"}).json()
        assert client.get(f"/v1/searches/{saved['id']}").json()["last_version"] == version + 1
    assert {m["item_id"] for m in found["matches"]} == expected
    assert len(found["matches"]) == len(expected)
    assert {int(f["id"]) for f in geojson["features"]} == expected
    deliveries = [json.loads(b) for _, b in watch.receiver.received if json.loads(b)["search"]["id"] == saved["id"]]
    assert [sorted(m["item_id"] for m in d["matches"]) for d in deliveries] == [sorted(expected)]
    headers, raw = next((h, b) for h, b in watch.receiver.received if json.loads(b)["search"]["id"] == saved["id"])
    assert hmac.compare_digest(
        headers["x-hub-signature-256"], "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    )
    assert headers["x-posapl-delivery"] == json.loads(raw)["delivery_id"]
    feed = feedparser.parse(httpx.get(saved["feed_url"], timeout=60).content)
    assert not feed.bozo and feed.version == "atom10"
    assert len(feed.entries) == len(expected) and feed.feed.title == "Saved search: trees"
    assert httpx.get(saved["feed_url"].replace(".atom", "x.atom"), timeout=60).status_code == 404


def test_a_kill_between_matching_and_recording_loses_and_repeats_nothing(watch: Watch, tmp_path: Path) -> None:
    with watch.client() as client:
        version = client.get("/readyz").json()["index_version"]
        first = int(client.post("/v1/search/text", json={"query": "a road", "k": 1}).json()["results"][0]["id"])
        # every new item matches (cosine >= -1): this test is about counting each match once
        body = {"name": "roads", "positive_ids": [first], "threshold": -1.0,
                "webhook_url": watch.receiver.url, "webhook_secret": SECRET}
        saved = client.post("/v1/searches", json=body).json()
    folder = tmp_path / "night-two"
    _copy(_rsicd(8, 700), folder)
    args = ["index", "update", "--root", str(watch.root), "--add-images", str(folder), "--no-progress",
            "--device", "cpu", "--num-workers", "0"]
    process = start_posapl(args, {**watch.env, "POSAPL_MONITOR_FAULT_PAUSE_AT": "matched"})
    marker = watch.root / "fault-paused"
    deadline = time.monotonic() + 300
    while not (marker.is_file() and marker.read_text() == "monitor-matched"):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the update never reached the monitor"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    marker.unlink()
    with watch.client() as client:
        assert client.get(f"/v1/searches/{saved['id']}/matches").json()["matches"] == []
    for _ in range(2):  # the next run catches up; one more run finds nothing left to do
        done = posapl(["monitor", "run", "--root", str(watch.root)], watch.env)
        assert done.returncode == 0, done.stderr
    expected = _new_ids(watch.root, version + 1)
    assert len(expected) == 8
    with watch.client() as client:
        found = client.get(f"/v1/searches/{saved['id']}/matches").json()["matches"]
    assert sorted(m["item_id"] for m in found) == sorted(expected)
    delivered = [json.loads(b) for _, b in watch.receiver.received if json.loads(b)["search"]["id"] == saved["id"]]
    assert sorted(i for d in delivered for i in (m["item_id"] for m in d["matches"])) == sorted(expected)
