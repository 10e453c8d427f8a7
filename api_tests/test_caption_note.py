"""An index built without --captions: image search says why the caption list is empty, instead of `[]` alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
from api_support import DATA, model_env, start_server


def test_image_search_without_a_caption_bank_explains_the_empty_captions(
    tmp_path: Path, tiny_arch_file: Path, archive: tuple[Path, Path]
) -> None:
    from index.job import run_update
    from index.settings import IndexSettings

    images = tmp_path / "images"
    images.mkdir()
    uploads = sorted(archive[0].iterdir())[:4]
    for path in uploads:
        shutil.copy2(path, images / path.name)
    root = tmp_path / "index"
    settings = IndexSettings(
        root=root, images=[images], pretrained="random", arch=str(tiny_arch_file), preset="rsitmd",
        device="cpu", num_workers=0, progress=False,
    )
    run_update(root, settings, settings.store_config())
    server = start_server(tmp_path, "no-captions", {**model_env(tiny_arch_file), "POSAPL_INDEX_ROOT": str(root)})
    try:
        files = {"file": (uploads[0].name, uploads[0].read_bytes(), "image/jpeg")}
        response = httpx.post(f"{server.url}/v1/search/image", files=files, timeout=120)
    finally:
        server.stop()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["captions"] == [] and "no caption bank" in body["captions_note"]
    assert "--add-captions" in body["captions_note"] and str(DATA) not in body["captions_note"]
    assert len(body["images"]) == 4
