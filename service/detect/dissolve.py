"""Detections as areas: footprints that overlap or share an edge are dissolved into one polygon.

Two footprints are joined when their interiors meet or their boundaries share a line (DE-9IM), never at a lone
corner; the connected groups of that relation (scipy) are then each merged with shapely `union_all`. Working on
pairs of small tiles keeps the cost near-linear: assigning tiles to the parts of one big union instead meant
intersecting every tile with an area of thousands of vertices (10,000 detections: 9.8 s against 0.5 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

OVERLAP = "2********"  # the interiors share an area
SHARED_EDGE = "****1****"  # the boundaries share a line


@dataclass(frozen=True)
class Dissolved:
    geometry: shapely.Geometry
    members: np.ndarray  # positions into the tiles given, best score first
    scores: np.ndarray


def dissolve(footprints: list[shapely.Geometry], scores: np.ndarray) -> list[Dissolved]:
    """The dissolved areas of `footprints` (one score each), ordered by their best score, best first."""
    if not footprints:
        return []
    shapes = np.array(footprints, dtype=object)
    left, right = shapely.STRtree(shapes).query(shapes, predicate="intersects")
    pairs = left < right
    left, right = left[pairs], right[pairs]
    joined = shapely.relate_pattern(shapes[left], shapes[right], OVERLAP) | shapely.relate_pattern(
        shapes[left], shapes[right], SHARED_EDGE
    )
    graph = coo_matrix((np.ones(int(joined.sum())), (left[joined], right[joined])), shape=(len(shapes),) * 2)
    count, group = connected_components(graph, directed=False)
    by_group = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[by_group], np.arange(count + 1))
    found = []
    for number in range(count):
        members = by_group[bounds[number] : bounds[number + 1]]
        members = members[np.argsort(-scores[members], kind="stable")]
        geometry = shapes[members[0]] if len(members) == 1 else shapely.union_all(shapes[members])
        found.append(Dissolved(geometry, members, scores[members]))
    return sorted(found, key=lambda d: -float(d.scores[0]))
