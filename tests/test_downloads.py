"""The download name of a tile: archive names are untrusted, so nothing of them reaches the header raw."""

from __future__ import annotations

from urllib.parse import unquote

from service.downloads import attachment


def test_tile_name_is_scene_stem_and_window() -> None:
    header = attachment("2021/scene.tif", (256, 0, 256, 128))
    assert header == "attachment; filename=\"scene_x256_y0_256x128.tif\"; filename*=UTF-8''scene_x256_y0_256x128.tif"


def test_hostile_scene_name_is_encoded() -> None:
    header = attachment('dir/é "x";\r\nSet-Cookie: a=b.tif', (0, 0, 1, 1))
    assert "\r" not in header and "\n" not in header and header.count('"') == 2
    fallback, encoded = header.split("; filename*=UTF-8''")
    assert fallback == 'attachment; filename="___x____Set-Cookie__a_b_x0_y0_1x1.tif"'
    assert unquote(encoded) == 'é "x";\r\nSet-Cookie: a=b_x0_y0_1x1.tif'
