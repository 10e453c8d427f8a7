"""The ids a search's filters select, from the metadata alone (never from ranked candidates), so that ranking
afterwards sees every one of them: a filter that matches 5 images of a million returns those 5."""

from __future__ import annotations

import numpy as np

from index.store import IndexVersion
from service.schemas import SearchFilters


def _both(ids: np.ndarray | None, selected: np.ndarray) -> np.ndarray:
    return selected if ids is None else np.intersect1d(ids, selected, assume_unique=True)


def matching_ids(version: IndexVersion, filters: SearchFilters) -> np.ndarray:
    """Every image id all the filters select. The area comes first (R*Tree), the file-time range is then looked
    up among the area's ids, and the other selections are intersected with what remains; excluded scenes are
    taken out last."""
    ids = None
    if filters.area:
        geometry = filters.intersects.model_dump(exclude_none=True) if filters.intersects is not None else None
        ids = version.ids_in_area(filters.bbox, geometry)
    if filters.min_mtime is not None or filters.max_mtime is not None:
        ids = version.image_ids_in_time(filters.min_mtime, filters.max_mtime, among=ids)
    if filters.time_from is not None or filters.time_to is not None:
        ids = _both(ids, version.image_ids_acquired(filters.time_from, filters.time_to))
    if filters.gsd_min is not None or filters.gsd_max is not None:
        ids = _both(ids, version.image_ids_by_gsd(filters.gsd_min, filters.gsd_max))
    if filters.collections is not None or filters.cloud_cover_max is not None or filters.platform is not None:
        ids = _both(ids, version.image_ids_by_stac(filters.collections, filters.cloud_cover_max, filters.platform))
    if filters.scenes is not None:
        ids = _both(ids, version.image_ids_of_scenes(filters.scenes))
    if ids is None:
        ids = version.image_ids()
    if filters.exclude_scenes is not None:
        ids = np.setdiff1d(ids, version.image_ids_of_scenes(filters.exclude_scenes), assume_unique=True)
    return ids
