"""What a build or update run did, counted for files and for index items apart.

A scene is one file but thousands of items, so one "new" count mixing both said little: a rewritten scene
showed up as thousands of new items and one removed file. Files are counted as new, changed (same place,
other content) or removed; items as embedded, reused from the live version (unchanged windows of a changed
scene) or removed (a window no longer indexed). `ROOT/last-run.json` holds the same counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "skipped": [{"path": p, "reason": r} for p, r in self.skipped]}


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
        f"{counts['skipped']} skipped in {report.seconds:.1f}s; "
        f"files: {counts['files_changed']} changed, {counts['files_new']} new, {counts['files_removed']} removed; "
        f"items: {counts['items_embedded']} embedded, {counts['items_reused']} reused, "
        f"{counts['items_removed']} removed ({counts['resumed']} taken from checkpoints)"
    )
