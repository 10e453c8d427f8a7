"""Hot reload: a new version is picked up under load with no failed request; a bad version is refused."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import ADMIN_TOKEN, N_IMAGES, LiveServer, build_index, model_env, start_server
from PIL import Image

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def reload_setup(
    tmp_path_factory: pytest.TempPathFactory, index_root: Path, archive: tuple[Path, Path], tiny_arch_file: Path
) -> Iterator[tuple[LiveServer, Path, Path, Path, Path]]:
    """A private copy of the index and archive (these tests publish versions) and a server polling it fast.

    The copied store still names the shared archive folder as its source; the load test rebuilds it from the
    private copy, which reuses every stored embedding and embeds only the added image.
    """
    tmp = tmp_path_factory.mktemp("reload")
    images = tmp / "images"
    shutil.copytree(archive[0], images)
    root = tmp / "index"
    shutil.copytree(index_root, root)
    env = {
        **model_env(tiny_arch_file),
        "POSAPL_INDEX_ROOT": str(root),
        "POSAPL_ADMIN_TOKEN": ADMIN_TOKEN,
        "POSAPL_RELOAD_POLL_S": "0.2",
    }
    live = start_server(tmp, "reload", env)
    yield live, root, images, archive[1], tiny_arch_file
    live.stop()


def _live_version(url: str) -> int:
    return httpx.get(f"{url}/v1/index", timeout=30).json()["version"]


def _copy_version(root: Path, number: int, new: int, edit) -> None:
    """A hand-made version folder (as a faulty or hostile writer would leave it), then CURRENT pointed at it."""
    from index.publish import write_current

    source, target = root / "versions" / str(number), root / "versions" / str(new)
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["version"] = new
    edit(target, manifest)
    (target / "manifest.json").write_text(json.dumps(manifest))
    write_current(root, new)


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def _refusals(url: str) -> float:
    """Refused reload attempts so far, from /metrics."""
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith('posapl_index_reloads_total{outcome="refused"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _refused_and_restored(server: LiveServer, root: Path, edit, reason: str) -> None:
    from index.publish import write_current
    from index.store import IndexStore

    live = _live_version(server.url)
    bad = max(IndexStore(root).versions()) + 1
    refusals = _refusals(server.url)
    _copy_version(root, live, bad, edit)
    _wait_for(lambda: _refusals(server.url) > refusals)  # the poller has seen and refused it
    assert _live_version(server.url) == live
    assert httpx.get(f"{server.url}/v1/search/text", params={"q": "a playground"}).status_code == 200
    forced = httpx.post(f"{server.url}/v1/admin/reload", headers=AUTH, timeout=30)
    assert forced.status_code == 409, forced.text
    assert reason in forced.json()["message"]
    assert str(root) not in forced.json()["message"] and str(root.resolve()) not in forced.json()["message"]
    assert _live_version(server.url) == live
    write_current(root, live)
    shutil.rmtree(root / "versions" / str(bad))


def test_tampered_version_is_refused_and_old_keeps_serving(reload_setup) -> None:
    server, root, *_ = reload_setup

    def corrupt(target: Path, manifest: dict) -> None:
        data = bytearray((target / "images.faiss").read_bytes())
        data[-1] ^= 0xFF
        (target / "images.faiss").write_bytes(bytes(data))

    _refused_and_restored(server, root, corrupt, "sha256")


def test_version_from_another_model_is_refused(reload_setup) -> None:
    server, root, *_ = reload_setup

    def other_model(target: Path, manifest: dict) -> None:
        manifest["model"]["fingerprint"] = "0" * 64

    _refused_and_restored(server, root, other_model, "model")


def test_new_version_swaps_in_under_load_without_failures(reload_setup) -> None:
    server, root, images, captions, arch = reload_setup
    before = _live_version(server.url)
    failures: list[str] = []
    versions: set[int] = set()
    stop = threading.Event()

    def hammer(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            n = 0
            while not stop.is_set():
                n += 1
                response = http.post("/v1/search/text", json={"query": f"{worker} bridges over a river {n % 7}"})
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text[:200]}")
                else:
                    versions.add(response.json()["index_version"])

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        first = sorted(images.iterdir())[0]
        Image.open(first).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(images / "zz_new_flipped.png")
        build_index(root, images, captions, arch)
        _wait_for(lambda: _live_version(server.url) > before)
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    after = _live_version(server.url)
    assert {before, after} <= versions
    assert httpx.get(f"{server.url}/v1/index").json()["images"] == N_IMAGES + 1
    _wait_for(lambda: f"index swapped: version {before} -> {after}" in server.log_path.read_text(errors="replace"))
