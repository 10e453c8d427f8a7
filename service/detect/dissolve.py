"""Detections as areas: footprints that overlap or share an edge are dissolved into one polygon.

The union of all passing footprints is exploded into its parts (shapely `union_all` + `get_parts`); each tile
belongs to the part it overlaps most, so a tile is counted once even where parts meet at a single corner
(corner contact alone does not merge: the union keeps such parts apart).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely


@dataclass(frozen=True)
class Dissolved:
    geometry: shapely.Geometry
    members: np.ndarray  # positions into the tiles given, best score first
    scores: np.ndarray


def dissolve(footprints: list[shapely.Geometry], scores: np.ndarray) -> list[Dissolved]:
    """The dissolved parts of `footprints` (one score each), ordered by their best score, best first."""
    if not footprints:
        return []
    shapes = np.array(footprints, dtype=object)
    parts = shapely.get_parts(shapely.union_all(shapes))
    tree = shapely.STRtree(parts)
    tile_at, part_at = tree.query(shapes, predicate="intersects")
    overlap = shapely.area(shapely.intersection(shapes[tile_at], parts[part_at]))
    order = np.lexsort((-overlap, tile_at))  # per tile, the part it overlaps most first
    tiles, first = np.unique(tile_at[order], return_index=True)
    owner = np.full(len(shapes), -1, np.int64)
    owner[tiles] = part_at[order][first]
    by_part = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[by_part], np.arange(len(parts) + 1))
    found = []
    for part in range(len(parts)):
        members = by_part[bounds[part] : bounds[part + 1]]
        if len(members):
            members = members[np.argsort(-scores[members], kind="stable")]
            found.append(Dissolved(parts[part], members, scores[members]))
    return sorted(found, key=lambda d: -float(d.scores[0]))
