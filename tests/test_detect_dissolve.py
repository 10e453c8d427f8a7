"""The dissolve rule of detections: overlap or a shared edge merges footprints, a shared corner alone does not."""

from __future__ import annotations

import numpy as np
import shapely

from service.detect.dissolve import dissolve


def test_edge_and_overlap_merge_with_count_max_and_mean() -> None:
    boxes = [shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1), shapely.box(1.5, 0.5, 2.5, 1.5), shapely.box(5, 5, 6, 6)]
    scores = np.array([0.3, 0.5, 0.1, 0.9])
    parts = dissolve(boxes, scores)
    assert [sorted(p.members.tolist()) for p in parts] == [[3], [0, 1, 2]]  # best area first
    merged = parts[1]
    assert merged.scores.max() == 0.5 and merged.scores.mean() == np.mean([0.3, 0.5, 0.1])
    assert shapely.equals(merged.geometry, shapely.union_all(boxes[:3]))


def test_a_shared_corner_keeps_areas_apart_and_each_tile_counts_once() -> None:
    boxes = [shapely.box(0, 0, 1, 1), shapely.box(1, 1, 2, 2)]
    parts = dissolve(boxes, np.array([0.2, 0.4]))
    assert [p.members.tolist() for p in parts] == [[1], [0]]


def test_nothing_to_dissolve() -> None:
    assert dissolve([], np.zeros(0)) == []


def test_a_random_grid_dissolves_as_one_union_of_all_its_tiles() -> None:
    """On a grid whose neighbouring cells share edges only up to floating-point noise (each cell computed on its
    own, as each tile's footprint is), the areas are exactly the parts of the union of every tile, and every
    tile belongs to exactly one of them. A faster union that needs exactly matching edges (a coverage union)
    leaves such neighbours apart, which this catches."""
    rng = np.random.default_rng(7)
    side, cell = 60, 0.001
    cells = np.flatnonzero(rng.random(side * side) < 0.55)
    x, y = (cells % side) * cell + 0.1, (cells // side) * cell + 0.2
    boxes = list(shapely.box(x, y, x + cell, y + cell))
    parts = dissolve(boxes, rng.random(len(boxes)))
    expected = shapely.normalize(shapely.get_parts(shapely.union_all(boxes)))
    found = shapely.normalize(np.array([p.geometry for p in parts]))
    assert len(found) == len(expected) > 1
    assert sorted(g.wkt for g in found) == sorted(g.wkt for g in expected)
    members = np.concatenate([p.members for p in parts])
    assert sorted(members.tolist()) == list(range(len(boxes)))
