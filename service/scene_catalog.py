"""The scenes of an index version in archive order, with a spatial index of their footprints.

Built once per version on first use (versions are immutable) and dropped with the version. It answers the
scenes listing (a page of the scenes whose footprint meets a box) and finds the scene an uploaded
georeferenced chip was cut from. The footprints are the scenes' own, not their tiles': a scene counts where
it has pixels, also where none of its tiles was indexed (an all-nodata corner).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from index.store import IndexVersion
from service.version_cache import per_version


@dataclass(frozen=True)
class SceneCatalog:
    ids: np.ndarray  # every scene id, in archive order (folder, then path)
    tree: shapely.STRtree  # footprints of the georeferenced scenes
    rows: np.ndarray  # for each geometry in `tree`, its position in `ids`

    @classmethod
    def of(cls, version: IndexVersion) -> SceneCatalog:
        """The catalogue of `version`, built on first use."""
        return _scene_catalog(version)

    @classmethod
    def build(cls, version: IndexVersion) -> SceneCatalog:
        entries = version.scene_footprints()
        ids = np.array([scene_id for scene_id, _ in entries], dtype=np.int64)
        rows = np.array([row for row, (_, shape) in enumerate(entries) if shape is not None], dtype=np.int64)
        shapes = shapely.from_geojson([entries[row][1] for row in rows]) if len(rows) else np.array([])
        return cls(ids, shapely.STRtree(shapes), rows)

    def meeting(self, area: shapely.Geometry | None) -> np.ndarray:
        """Ids of the scenes whose footprint intersects `area` (every scene for None), in archive order."""
        if area is None:
            return self.ids
        found = self.tree.query(area, predicate="intersects")
        return self.ids[np.sort(self.rows[found])]


_scene_catalog = per_version(SceneCatalog.build)


def lonlat_box(bbox: tuple[float, float, float, float]) -> shapely.Geometry:
    """west, south, east, north as a geometry; west > east is the box across the antimeridian (RFC 7946 5.2)."""
    west, south, east, north = bbox
    if west <= east:
        return shapely.box(west, south, east, north)
    return shapely.MultiPolygon([shapely.box(west, south, 180.0, north), shapely.box(-180.0, south, east, north)])
