"""The generated side of a run: STAC catalogs and per-band folders become source folders of VRTs before the
scan, and STAC items' facts are put on the records after planning. index.job calls the two steps; everything
between is the folder path. Source numbering: the store's image folders, then one folder per catalog, then one
per band folder."""

from __future__ import annotations

from dataclasses import astuple, dataclass, field, replace
from pathlib import Path

from index.settings import StoreConfig
from index.sources.bands import BANDS_FOLDER, write_band_folder
from index.sources.stac import STAC_FOLDER, CatalogScenes, StacFacts, write_catalog
from index.stac_meta import StacRecord
from index.store import ImageRecord, SceneRecord


@dataclass
class StacSources:
    """The catalogs of a run; their folders follow the store's image folders in the source numbering."""

    catalogs: list[CatalogScenes]
    first_source: int
    band_skipped: list[tuple[str, str]] = field(default_factory=list)  # of the per-band folders

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return [entry for catalog in self.catalogs for entry in catalog.skipped] + self.band_skipped

    def facts(self, source: int, path: str) -> StacFacts | None:
        number = source - self.first_source
        return self.catalogs[number].scenes.get(path) if 0 <= number < len(self.catalogs) else None

    def name_items(self, skipped: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Scenes of catalogs left out by decoding, named by their item (its JSON) rather than by the VRT."""
        named = []
        for path, reason in skipped:
            for catalog in self.catalogs:
                relative = Path(path).relative_to(catalog.folder) if Path(path).is_relative_to(catalog.folder) else None
                facts = catalog.scenes.get(relative.as_posix()) if relative is not None else None
                if facts is not None:
                    path, reason = facts.self_href or path, f"STAC item {facts.item}: {reason}"
                    break
            named.append((path, reason))
        return named

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
    """Write each catalog's VRT folder (ROOT/stac/<n>) and each band folder's (ROOT/bands/<n>), and return the
    config with those folders as sources."""
    folders = [root / STAC_FOLDER / str(number) for number in range(len(config.stac))]
    assets = tuple(config.stac_assets) if config.stac_assets else None
    catalogs = [write_catalog(source, folder, assets) for source, folder in zip(config.stac, folders)]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)  # a catalog without usable items is an empty folder
    stacks = [root / BANDS_FOLDER / str(number) for number in range(len(config.band_folders))]
    band_skipped = [
        entry
        for source, target in zip(config.band_folders, stacks)
        for entry in write_band_folder(source, target, config.band_files or [])
    ]
    expanded = config.model_copy(update={"sources": [*config.sources, *folders, *stacks]})
    return expanded, StacSources(catalogs, len(config.sources), band_skipped)
