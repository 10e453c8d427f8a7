"""Folders of per-band files as scenes: `--band-folders DIR --band-files '*_B04.tif,*_B03.tif,*_B02.tif'`.

Products such as Sentinel-2 keep each band in its own file (``T33UUP_20200513T100031_B04.jp2``, ``…_B03.jp2``).
Every pattern has one ``*``; files of one folder whose names match the patterns with the same text in place of
the ``*`` (``T33UUP_20200513T100031``) are one scene, its bands stacked in pattern order on the first band's grid
(index.sources.stack, the same VRT as a STAC item's). The VRTs are written to ROOT/bands/<n>/ under the same
relative folder, named after that shared text, so the acquisition date in it is the scene's time
(index.acquired). A group missing a band, a band that cannot be stacked and a file matching no pattern are
reported as skipped.

A Sentinel-2 ``*.SAFE`` folder in a band folder is one scene of its own, read through GDAL's SENTINEL2 driver
(index.sources.safe) whatever the patterns; its files are not matched against them. Without ``--band-files`` a
band folder stacks its SAFE folders only.
"""

from __future__ import annotations

import os
from pathlib import Path

from index.sources.safe import product_metadata, safe_vrt
from index.sources.stack import StackError, stack_vrt, write_if_changed

BANDS_FOLDER = "bands"  # under the store root: ROOT/bands/<folder number>/<relative folder>/<scene>.vrt


def check_patterns(patterns: list[str]) -> list[str]:
    """Refuse patterns that cannot name one band of a scene (each needs exactly one `*`, and a path is not one)."""
    for pattern in patterns:
        if pattern.count("*") != 1 or "/" in pattern or os.sep in pattern:
            raise ValueError(f"band file pattern {pattern!r} needs exactly one * and no folder, e.g. *_B04.tif")
    if len(set(patterns)) != len(patterns):
        raise ValueError("band file patterns repeat")
    return patterns


def _scene_key(name: str, pattern: str) -> str | None:
    head, tail = pattern.split("*")
    if len(name) > len(head) + len(tail) and name.startswith(head) and name.endswith(tail):
        return name[len(head) : len(name) - len(tail)]
    return None


def band_groups(
    folder: Path, patterns: list[str]
) -> tuple[dict[Path, list[Path | None]], list[tuple[str, str]], dict[Path, Path]]:
    """{scene (relative folder / shared text): its file per pattern (None when missing)}, the files that match no
    pattern, and {scene (relative folder / product name): product metadata} of the SAFE folders."""
    groups: dict[Path, list[Path | None]] = {}
    unmatched: list[tuple[str, str]] = []
    products: dict[Path, Path] = {}
    for directory, subdirs, files in os.walk(folder):
        subdirs.sort()
        for name in list(subdirs):
            metadata = product_metadata(Path(directory) / name)
            if metadata is not None:
                subdirs.remove(name)  # its files are the product's, not bands to match
                products[Path(directory, name).relative_to(folder).with_suffix("")] = metadata
        for name in sorted(files):
            path = Path(directory) / name
            for number, pattern in enumerate(patterns):
                key = _scene_key(name, pattern)
                if key is not None:
                    scene = path.parent.relative_to(folder) / key
                    groups.setdefault(scene, [None] * len(patterns))[number] = path
                    break
            else:
                reason = f"({', '.join(patterns)})" if patterns else "(no --band-files given) and is in no .SAFE folder"
                unmatched.append((str(path), f"matches no band file pattern {reason}"))
    return groups, unmatched, products


def write_band_folder(folder: Path, target: Path, patterns: list[str]) -> list[tuple[str, str]]:
    """Rewrite `target` as one VRT per complete band group of `folder`; returns what was skipped, and why."""
    if not folder.is_dir():
        raise FileNotFoundError(f"band folder {folder} does not exist")
    groups, skipped, products = band_groups(folder, patterns)
    written: set[Path] = set()
    for scene, metadata in sorted(products.items()):
        try:
            xml = safe_vrt(metadata)
        except StackError as exc:
            skipped.append((str(metadata.parent), f"Sentinel-2 product {metadata.parent.name}: {exc}"))
            continue
        vrt = target / scene.parent / f"{scene.name}.vrt"
        write_if_changed(vrt, xml)
        written.add(vrt)
    for scene, files in sorted(groups.items()):
        where = str(folder / scene)
        missing = [pattern for pattern, path in zip(patterns, files) if path is None]
        if missing:
            skipped.append((where, f"band files of scene {scene.name}: none matches {', '.join(missing)}"))
            continue
        try:
            xml = stack_vrt([str(path) for path in files], {"BAND_FILES": ",".join(patterns)})
        except StackError as exc:
            skipped.append((where, f"band files of scene {scene.name}: {exc}"))
            continue
        vrt = target / scene.parent / f"{scene.name}.vrt"
        write_if_changed(vrt, xml)
        written.add(vrt)
    for stale in sorted(target.rglob("*.vrt")) if target.is_dir() else []:
        if stale not in written:
            stale.unlink()
    target.mkdir(parents=True, exist_ok=True)
    return skipped
