"""Archive paths clients see (unique across folders) and the listing's lon/lat box."""

from __future__ import annotations

import shapely

from service.links import archive_path, folder_labels
from service.scene_catalog import lonlat_box


def test_one_folder_keeps_plain_relative_paths() -> None:
    assert folder_labels(("/srv/imagery",)) == ("",)
    assert archive_path(["/srv/imagery"], 0, "2021/x.tif") == "2021/x.tif"


def test_folders_are_named_by_the_shortest_part_no_other_shares() -> None:
    assert folder_labels(("/data/imagery", "/data/scenes")) == ("imagery", "scenes")
    assert folder_labels(("/srv/a/images", "/srv/b/images", "/srv/c/scenes")) == ("a/images", "b/images", "scenes")
    assert folder_labels(("/n/x/images", "/s/x/images")) == ("n/x/images", "s/x/images")
    assert folder_labels(("imagery", "old/imagery")) == ("imagery", "old/imagery")
    sources = ["/srv/a/images", "/srv/b/images"]
    assert archive_path(sources, 0, "same.jpg") != archive_path(sources, 1, "same.jpg")


def test_a_folder_listed_twice_is_numbered() -> None:
    assert folder_labels(("/d/images", "/d/images")) == ("d/images#1", "d/images#2")


def test_lonlat_box_across_the_antimeridian() -> None:
    box = lonlat_box((170.0, -10.0, -170.0, 10.0))
    assert box.intersects(shapely.Point(175, 0)) and box.intersects(shapely.Point(-175, 0))
    assert not box.intersects(shapely.Point(0, 0))
    assert lonlat_box((0.0, 0.0, 1.0, 1.0)).equals(shapely.box(0, 0, 1, 1))
