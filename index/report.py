"""What a build or update tells its operator: the run report (ROOT/last-run.json), and why a run that would
publish an empty index publishes nothing.

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
