"""What a new version holds besides the run's bookkeeping: the image side as planned, the caption bank (reused
while its files and the model are unchanged), the image profiles (reused against an unchanged bank), the
FAISS indexes and the manifest, assembled into one VersionContent for the publish step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from index.captions import embed_bank, load_corpus
from index.ivf_append import append_to_live
from index.profiles import compute_profiles
from index.progress import stage
from index.publish import VersionContent
from index.settings import StoreConfig
from index.stac_meta import StacRecord
from index.store import ImageRecord, IndexVersion, SceneRecord
from index.vectors import IndexSpec, build_index, stored_vectors
from posapl.model import POSAPL
from posapl.pos import PosTagger


@dataclass
class ImagePlan:
    """The image side of the next version: records and vectors in the same order, plus what was left out.
    `vectors` is (N, D) float32, a read-only memory map of the run's spool file (index.vector_spool)."""

    records: list[ImageRecord]
    vectors: np.ndarray
    skipped: list[tuple[str, str]]
    missing: list[ImageRecord]  # live entries whose content no longer exists in the folders
    scenes: dict[str, SceneRecord] = field(default_factory=dict)  # sha256 -> the file the items come from
    digests: list[str | None] = field(default_factory=list)  # pixel digest per record, where known
    reused: int = 0  # windows of changed files that kept their live vector and id
    stac: list[StacRecord] = field(default_factory=list)  # the STAC items of the scenes made from one


def caption_bank(
    model: POSAPL, config: StoreConfig, live: IndexVersion | None, digest: str, batch_size: int, progress: bool
) -> tuple[list[tuple[str, str]], np.ndarray, bool]:
    """(text, source) per caption id, their vectors, and whether the live bank was reused unchanged."""
    if live is not None and live.manifest.raw.get("caption_digest") == digest:
        records = live.all_captions()
        ids, vectors = stored_vectors(live.caption_index)
        order = np.argsort(ids)
        return [(r.text, r.source) for r in records], vectors[order], True
    corpus = load_corpus(config.captions)
    if not corpus:
        return [], np.zeros((0, model.embed_dim), np.float32), False
    vectors = embed_bank(model, PosTagger(), [text for text, _ in corpus], batch_size, progress)
    return corpus, vectors, False


def reusable_image_profiles(
    live: IndexVersion | None, captions_reused: bool, points: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The live version's image profiles (ids, rows) when they hold against the next version's bank: same
    caption bank and model (the caption digest matched) and the same number of points."""
    if live is None or not captions_reused:
        return None
    info = live.manifest.raw.get("profiles", {})
    if info.get("method") is None or info.get("points") != points:
        return None
    ids = live.image_ids()
    return ids, live.image_profiles(ids)


def version_content(
    model: POSAPL,
    config: StoreConfig,
    plan: ImagePlan,
    captions: tuple[list[tuple[str, str]], np.ndarray],
    spec: IndexSpec,
    extra_manifest: dict[str, Any],
    known_image_profiles: tuple[np.ndarray, np.ndarray] | None,
    progress: bool = False,
    live: IndexVersion | None = None,
) -> VersionContent:
    """The next version; an IVF image index is updated in place of the live one's while its quantiser still
    fits (index.ivf_append), else built afresh."""
    caption_texts, caption_vectors = captions
    image_vectors = plan.vectors  # memory-mapped: every step below reads it a chunk at a time
    image_ids = np.array([r.id for r in plan.records], dtype=np.int64)
    caption_ids = np.arange(len(caption_texts), dtype=np.int64)
    with stage(f"building the FAISS indexes ({len(image_ids)} images, {len(caption_ids)} captions)", progress):
        appended = append_to_live(live, model.fingerprint(), image_vectors, image_ids, spec, caption_vectors)
        image_index, index_info = appended or build_index(image_vectors, image_ids, spec, queries=caption_vectors)
        caption_index, _ = build_index(caption_vectors, caption_ids, IndexSpec(kind="flat"))
    profiles, profile_info = compute_profiles(
        image_ids, image_vectors, caption_ids, caption_vectors, config.profile_points, known_image_profiles, progress
    )
    size = model.image_size
    return VersionContent(
        image_records=plan.records,
        image_vectors=image_vectors,
        image_index=image_index,
        caption_texts=caption_texts,
        caption_index=caption_index,
        profiles=profiles,
        skipped=plan.skipped,
        scenes=sorted(plan.scenes.values(), key=lambda scene: (scene.source, scene.path)),
        digests={record.id: digest for record, digest in zip(plan.records, plan.digests) if digest is not None},
        stac=plan.stac,
        manifest={
            "model": {
                "fingerprint": model.fingerprint(),
                "checkpoint": config.checkpoint,
                "pretrained": config.pretrained,
                "arch": config.arch,
                "preset": config.preset,
            },
            "dim": model.embed_dim,
            "index": {**index_info, "requested": asdict(spec)},
            "profiles": profile_info,
            "sources": [str(s) for s in config.sources],
            "caption_sources": [str(p) for p in config.captions],
            "preprocessing": "the file's RGB bands (else its first three, or one as grey) or the configured bands; "
            "non-8-bit data scaled to 8-bit by per-scene 2nd-98th percentiles (note per file in "
            f"images.preprocessing); files larger than the smallest tile size cut into windows; bicubic resize to "
            f"{size}x{size}",
            **extra_manifest,
        },
    )
