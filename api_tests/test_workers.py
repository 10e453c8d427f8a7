"""`posapl serve --workers 2`: two uvicorn worker processes on one port answer alike, and both move to a newly
published index version with no failed request and no answer that mixes two versions."""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import ADMIN_TOKEN, N_IMAGES, LiveServer, build_index, model_env
from test_reload import _wait_for

from service.encoding import PREPARING

WORKERS = 2
REMOVED = 40  # images deleted from the archive before the second version is built
K = 100  # every image of either version: an answer lists exactly the ids of the version it names


@pytest.fixture(scope="module")
def workers_setup(
    tmp_path_factory: pytest.TempPathFactory, index_root: Path, archive: tuple[Path, Path], tiny_arch_file: Path
) -> Iterator[tuple[LiveServer, Path, Path, Path, Path]]:
    """A private copy of the store and the archive (the swap test publishes a version) served by two workers."""
    tmp = tmp_path_factory.mktemp("workers")
    images = tmp / "images"
    shutil.copytree(archive[0], images)
    root = tmp / "index"
    shutil.copytree(index_root, root)
    env = {**model_env(tiny_arch_file), "POSAPL_ADMIN_TOKEN": ADMIN_TOKEN, "POSAPL_RELOAD_POLL_S": "0.2"}
    command = [sys.executable, "-m", "posapl.cli", "serve", "--root", str(root), "--workers", str(WORKERS)]
    server = LiveServer(env, tmp / "workers.log", tmp / "workers-tmp", command=command).start(ready_timeout_s=600)
    yield server, root, images, archive[1], tiny_arch_file
    server.stop()


def _readiness(url: str) -> dict:
    """/readyz over a new connection, so the kernel hands it to whichever worker accepts next."""
    return httpx.get(f"{url}/readyz", timeout=30).json()


def _workers_at(url: str, version: int | None = None) -> dict[str, int]:
    """Ask /readyz on fresh connections until WORKERS distinct workers have answered (with `version`, when
    given) and each has its encoder in place; returns each worker's id and the version it reported last.

    A worker answers with PyTorch while its ONNX Runtime graphs load in the background, and the two runtimes'
    scores differ in the last float digits, so answers are comparable only once no worker is still preparing."""
    seen: dict[str, int] = {}
    settled: dict[str, bool] = {}

    def all_answered() -> bool:
        body = _readiness(url)
        if body["ready"]:
            seen[body["worker"]] = body["index_version"]
            settled[body["worker"]] = body["encoder_runtime_reason"] != PREPARING
        return len(seen) == WORKERS and all(settled.values()) and (version is None or set(seen.values()) == {version})

    _wait_for(all_answered, timeout=300)
    return seen


def _version_ids(root: Path, number: int) -> set[int]:
    from index.store import IndexStore

    version = IndexStore(root).open(number)
    try:
        return {int(i) for i in version.image_ids()}
    finally:
        version.close()


def _search(url: str, query: str) -> httpx.Response:
    """One text search over a new connection (a kept-alive connection would stay with one worker)."""
    return httpx.post(f"{url}/v1/search/text", json={"query": query, "k": K, "rerank": "none"}, timeout=60)


def test_workers_answer_alike(workers_setup) -> None:
    server, root, *_ = workers_setup
    seen = _workers_at(server.url)
    assert len(seen) == WORKERS and len(set(seen.values())) == 1, seen
    answers = []
    for _ in range(12):
        response = _search(server.url, "a bridge over a river")
        assert response.status_code == 200, response.text
        body = response.json()
        answers.append((body["index_version"], [(hit["id"], hit["score"]) for hit in body["results"]]))
    assert len(set(map(str, answers))) == 1  # same version, same ids, same scores, whichever worker answered


def test_every_worker_moves_to_a_new_version_without_mixing(workers_setup) -> None:
    server, root, images, captions, arch = workers_setup
    before = next(iter(_workers_at(server.url).values()))
    answers: list[tuple[int, list[int], bool]] = []  # version, ids, sent after every worker had switched
    failures: list[str] = []
    stop, switched = threading.Event(), threading.Event()

    def hammer(client: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            late = switched.is_set()
            response = _search(server.url, f"{client} green trees near buildings {n % 5}")
            if response.status_code != 200:
                failures.append(f"{response.status_code}: {response.text[:200]}")
            else:
                body = response.json()
                answers.append((body["index_version"], [hit["id"] for hit in body["results"]], late))

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        for path in sorted(images.iterdir())[:REMOVED]:
            path.unlink()
        build_index(root, images, captions, arch)
        from index.store import IndexStore

        after = IndexStore(root).current_version()
        assert after is not None and after > before
        _workers_at(server.url, after)  # each worker reports the new version itself
        switched.set()
        _wait_for(lambda: sum(late for *_, late in answers) >= 4 * WORKERS)  # answers sent after both switched
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert failures == []
    ids = {before: _version_ids(root, before), after: _version_ids(root, after)}
    assert len(ids[before]) == N_IMAGES and len(ids[after]) == N_IMAGES - REMOVED
    assert {version for version, *_ in answers} == {before, after}, "the load saw both versions"
    for version, hits, _ in answers:  # a whole answer from the version it names: its ids, all of them
        assert set(hits) == ids[version] and len(hits) == len(ids[version]), version
    assert all(version == after for version, _, late in answers if late)  # no worker went back
    # the admin token reached the workers (a secret setting), and a forced reload on any worker keeps `after`
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    reloaded = httpx.post(f"{server.url}/v1/admin/reload", headers=admin, timeout=60)
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["index_version"] == after and reloaded.json()["changed"] is False
