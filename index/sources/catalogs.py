"""The STAC side of a run: catalogs become source folders of VRTs before the scan, and their items' facts are
put on the records after planning. index.job calls the two steps; everything between is the folder path."""

from __future__ import annotations

from dataclasses import astuple, dataclass, replace
from pathlib import Path

from index.settings import StoreConfig
from index.sources.stac import STAC_FOLDER, CatalogScenes, StacFacts, write_catalog
from index.stac_meta import StacRecord
from index.store import ImageRecord, SceneRecord


@dataclass
class StacSources:
    """The catalogs of a run; their folders follow the store's image folders in the source numbering."""

    catalogs: list[CatalogScenes]
    first_source: int

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return [entry for catalog in self.catalogs for entry in catalog.skipped]

    def facts(self, source: int, path: str) -> StacFacts | None:
        number = source - self.first_source
        return self.catalogs[number].scenes.get(path) if 0 <= number < len(self.catalogs) else None

    def annotate(
        self, records: list[ImageRecord], scenes: dict[str, SceneRecord]
    ) -> tuple[list[ImageRecord], list[StacRecord]]:
        """Records and scenes with the item's acquisition time (`time_source` "stac"), and the STAC rows of the
        version. Scenes are updated in place (by content hash); the records are returned in their order."""
        rows = []
        for sha, scene in scenes.items():
            facts = self.facts(scene.source, scene.path)
            if facts is None:
                continue
            rows.append(StacRecord(scene.id, *astuple(facts)))
            if facts.datetime is not None:
                scenes[sha] = replace(scene, time=facts.datetime, time_source="stac")
        timed = []
        for record in records:
            facts = self.facts(record.source, record.path)
            if facts is not None and facts.datetime is not None:
                record = replace(record, time=facts.datetime, time_source="stac")
            timed.append(record)
        return timed, rows


def prepare_catalogs(root: Path, config: StoreConfig) -> tuple[StoreConfig, StacSources]:
    """Write each catalog's VRT folder (ROOT/stac/<n>) and return the config with those folders as sources."""
    folders = [root / STAC_FOLDER / str(number) for number in range(len(config.stac))]
    assets = tuple(config.stac_assets) if config.stac_assets else None
    catalogs = [write_catalog(source, folder, assets) for source, folder in zip(config.stac, folders)]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)  # a catalog without usable items is an empty folder
    expanded = config.model_copy(update={"sources": [*config.sources, *folders]})
    return expanded, StacSources(catalogs, len(config.sources))
