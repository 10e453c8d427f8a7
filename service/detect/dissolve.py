"""Detections as areas: footprints that overlap or share an edge are dissolved into one polygon.

Footprints that intersect at all form connected groups (an STRtree join, scipy's connected components); each
group is merged with shapely `union_all` and split into the union's parts, since footprints that meet only at a
corner stay separate polygons in a union. A tile belongs to the part that contains a point inside it
(`point_on_surface`), so it is counted once. Testing points against each small group's parts keeps the cost
near-linear: assigning every tile to the parts of one union of all of them, by intersection area, took 68.7 s
for 100,000 detections at 1M items (benchmarks/RESULTS.md), and a DE-9IM test of every touching pair 7 s.

What remains is mostly GEOS's overlay inside `union_all` (about 4 of the 4-6 s of CPU that 100,000 detections
take on the benchmark grid). Two faster-looking unions were measured and left out: `coverage_union_all` is about
ten times faster on a large group but needs neighbours whose shared edges match exactly, and footprints computed tile by
tile match only up to floating-point noise, so it leaves such neighbours apart (24,198 areas instead of 22,776
on the benchmark); `disjoint_subset_union_all` over every footprint at once gives the same areas in the same
CPU time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


@dataclass(frozen=True)
class Dissolved:
    geometry: shapely.Geometry
    members: np.ndarray  # positions into the tiles given, best score first
    scores: np.ndarray


def _groups(shapes: np.ndarray) -> list[np.ndarray]:
    """Positions of the footprints of each connected group of intersecting footprints."""
    left, right = shapely.STRtree(shapes).query(shapes, predicate="intersects")
    graph = coo_matrix((np.ones(len(left)), (left, right)), shape=(len(shapes), len(shapes)))
    count, group = connected_components(graph, directed=False)
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(count + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(count)]


def dissolve(footprints: list[shapely.Geometry], scores: np.ndarray) -> list[Dissolved]:
    """The dissolved areas of `footprints` (one score each), ordered by their best score, best first."""
    if not footprints:
        return []
    shapes = np.array(footprints, dtype=object)
    found = []
    for group in _groups(shapes):
        parts = shapely.get_parts(shapes[group[0]] if len(group) == 1 else shapely.union_all(shapes[group]))
        if len(parts) == 1:
            owners = [group]
        else:
            part_at, tile_at = shapely.STRtree(shapely.point_on_surface(shapes[group])).query(parts, "contains")
            owners = [group[tile_at[part_at == i]] for i in range(len(parts))]
        for part, members in zip(parts, owners, strict=True):
            members = members[np.argsort(-scores[members], kind="stable")]
            found.append(Dissolved(part, members, scores[members]))
    return sorted(found, key=lambda d: -float(d.scores[0]))
