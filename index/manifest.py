"""A version's manifest (what it holds, which model made it, the checksum of every file) and the checks that
decide whether a version on disk can be trusted."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from index.layout import PREVIOUS_FORMAT, READABLE_FORMATS, VECTOR_FILES, VERSION_FILES, file_sha256


class IndexIntegrityError(ValueError):
    """A version of the store cannot be trusted: missing files, bad manifest, checksum or count mismatch."""


@dataclass(frozen=True)
class Manifest:
    format: str
    version: int
    created: str
    model: dict[str, Any]
    dim: int
    counts: dict[str, int]
    index: dict[str, Any]
    sources: list[str]
    caption_sources: list[str]
    files: dict[str, dict[str, Any]]
    raw: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return str(self.model["fingerprint"])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        try:
            return cls(
                format=str(data["format"]),
                version=int(data["version"]),
                created=str(data["created"]),
                model=dict(data["model"]),
                dim=int(data["dim"]),
                counts={k: int(v) for k, v in data["counts"].items()},
                index=dict(data["index"]),
                sources=[str(s) for s in data["sources"]],
                caption_sources=[str(s) for s in data["caption_sources"]],
                files={k: dict(v) for k, v in data["files"].items()},
                raw=data,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise IndexIntegrityError(f"manifest is incomplete or malformed: {exc!r}") from exc


def read_manifest(path: Path) -> Manifest:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise IndexIntegrityError(f"{path} is missing") from exc
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexIntegrityError(f"{path} is unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise IndexIntegrityError(f"{path} is not a JSON object")
    manifest = Manifest.from_dict(data)
    if manifest.format not in READABLE_FORMATS:
        raise IndexIntegrityError(
            f"{path} has format {manifest.format!r}, this version reads {' and '.join(READABLE_FORMATS)}: rebuild "
            "the index (`posapl index build`; `posapl index update` rebuilds it too)"
        )
    return manifest


def verify_files(directory: Path, manifest: Manifest) -> None:
    """Every version file is listed, present, of the recorded size and sha256."""
    required = [n for n in VERSION_FILES if manifest.format != PREVIOUS_FORMAT or n not in VECTOR_FILES]
    missing = [name for name in required if name not in manifest.files]
    if missing:
        raise IndexIntegrityError(f"{directory}: manifest lists no checksum for {', '.join(missing)}")
    for name, expected in manifest.files.items():
        path = directory / name
        if not path.is_file():
            raise IndexIntegrityError(f"{directory}: {name} is missing")
        size = path.stat().st_size
        if size != expected.get("bytes"):
            raise IndexIntegrityError(f"{directory}: {name} has {size} bytes, manifest says {expected.get('bytes')}")
        if file_sha256(path) != expected.get("sha256"):
            raise IndexIntegrityError(f"{directory}: {name} does not match its sha256 in the manifest")
