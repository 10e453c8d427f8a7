"""What a build or update tells its operator: the run report (ROOT/last-run.json), and why a run that would
publish an empty index publishes nothing.

Files and index items are counted apart. A scene is one file but thousands of items, so one "new" count
mixing both said little: a rewritten scene showed up as thousands of new items and one removed file. Files
are counted as new, changed (same place, other content) or removed; items as embedded, reused from the live
version (unchanged windows of a changed scene) or removed (a window no longer indexed).

An empty version is never what anyone wants: an unmounted share, a wrong folder or a STAC catalog where image
folders were expected would otherwise replace a good live version by nothing, with exit code 0.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from index.ignore import STAC_OPTION
from index.scan import ScannedFile
from index.store import ImageRecord


@dataclass
class RunReport:
    status: str  # "published" | "unchanged"
    version: int
    started: str
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    full_rebuild: str | None = None  # why nothing of the live version was reused
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # files on the ignore list (index.ignore)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "ignored": [{"path": p, "reason": r} for p, r in self.ignored],
        }


def change_counts(
    live: list[ImageRecord], chosen: dict[str, ScannedFile], records: list[ImageRecord], reused: int
) -> dict[str, int]:
    """files_new / files_changed / files_removed (files that entered, changed in or left the index; skipped
    files are counted apart) and items_embedded / items_reused / items_removed of a run that turns the `live`
    items into `records` (the next version's items; kept missing files are among them)."""
    live_shas = {r.sha256 for r in live}
    live_places = {(r.source, r.path) for r in live}
    fresh = {(r.source, r.path) for r in records if r.sha256 not in live_shas}
    changed = len(fresh & live_places)
    now = {(r.source, r.path, r.window, r.window_size) for r in records}
    gone = [r for r in live if (r.source, r.path, r.window, r.window_size) not in now and r.sha256 not in chosen]
    places = {(r.source, r.path) for r in records}
    return {
        "files_new": len(fresh) - changed,
        "files_changed": changed,
        "files_removed": len({(r.source, r.path) for r in gone} - places),
        "items_embedded": sum(1 for r in records if r.sha256 not in live_shas) - reused,
        "items_reused": reused,
        "items_removed": len(gone),
    }


def summary(report: RunReport) -> str:
    """The one-line result `posapl index build|update` prints."""
    counts = report.counts
    what = "published version" if report.status == "published" else "nothing changed; live version stays"
    return (
        f"{what} {report.version}: {counts['images']} items, {counts['captions']} captions, "
        f"{counts['skipped']} skipped, {counts['ignored']} ignored in {report.seconds:.1f}s; "
        f"files: {counts['files_changed']} changed, {counts['files_new']} new, {counts['files_removed']} removed; "
        f"items: {counts['items_embedded']} embedded, {counts['items_reused']} reused, "
        f"{counts['items_removed']} removed ({counts['resumed']} taken from checkpoints)"
    )


class NothingToIndexError(RuntimeError):
    """The run found nothing it could index; the message says why, `skipped` and `ignored` list every file."""

    def __init__(self, message: str, skipped: list[tuple[str, str]], ignored: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.skipped = skipped
        self.ignored = ignored


def nothing_to_index(
    sources: list[Path],
    image_files: int,
    skipped: list[tuple[str, str]],
    ignored: list[tuple[str, str]],
    live: int | None,
) -> NothingToIndexError:
    """The error for a run whose version would hold no item, naming the cause."""
    stac = [path for path, reason in skipped if STAC_OPTION in reason]
    why = []
    if stac:
        more = f" and {len(stac) - 1} more STAC files" if len(stac) > 1 else ""
        why.append(f"it holds a STAC catalog ({stac[0]}{more}): {STAC_OPTION}")
    if image_files:
        why.append(f"all {image_files} image files were skipped (reasons listed above)")
    elif not skipped and not ignored:
        why.append("the folders hold no files at all")
    else:
        others = len(skipped) - len(stac)
        found = [f"{others} other files skipped" if others else "", f"{len(ignored)} ignored" if ignored else ""]
        why.append(f"no image files ({', '.join(part for part in found if part) or 'nothing else'})")
    stays = f"; live version {live} stays" if live is not None else ""
    message = (
        f"nothing to index in {', '.join(map(str, sources))}: {'; '.join(why)}. "
        f"An empty index is never published{stays}"
    )
    return NothingToIndexError(message, skipped, ignored)


def write_report(path: Path, report: RunReport) -> None:
    """Replace ROOT/last-run.json atomically, so a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        json.dump(report.to_dict(), handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
