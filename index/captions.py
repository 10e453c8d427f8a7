"""The caption corpus of the caption bank: every caption of the configured annotation and text files.

Annotation JSON files (HarMA/POSAPL lists and Karpathy-style `{"images": [...]}`) contribute all their
captions whatever the split, because the bank should know every caption the system has; `.txt` files
contribute one caption per non-empty line (this also reads the GaLR/AMFMN caption files).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from index.progress import bar
from posapl.encode import encode_texts
from posapl.model import POSAPL
from posapl.pos import PosTagger
from posapl.text import normalize_caption

EMBED_CHUNK = 1024  # captions tagged and encoded between two progress updates


class CaptionSourceError(ValueError):
    """A caption file is missing or not in a supported format."""


def _json_captions(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CaptionSourceError(f"{path}: not readable JSON: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("images"), list):
        captions = []
        for image in data["images"]:
            for sentence in image.get("sentences", []) if isinstance(image, dict) else []:
                if isinstance(sentence, dict) and isinstance(sentence.get("raw"), str):
                    captions.append(sentence["raw"])
        return captions
    if isinstance(data, list):
        captions = []
        for entry in data:
            value = entry.get("caption") if isinstance(entry, dict) else None
            if isinstance(value, str):
                captions.append(value)
            elif isinstance(value, list):
                captions.extend(c for c in value if isinstance(c, str))
        return captions
    raise CaptionSourceError(f"{path}: JSON is neither a list of {{image, caption}} nor {{'images': [...]}}")


def read_caption_file(path: Path) -> list[str]:
    if not path.is_file():
        raise CaptionSourceError(f"caption file {path} does not exist")
    if path.suffix.lower() == ".json":
        captions = _json_captions(path)
    else:
        try:
            captions = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise CaptionSourceError(f"{path}: not a UTF-8 text file: {exc}") from exc
    if not captions:
        raise CaptionSourceError(f"{path}: no captions found")
    return captions


def load_corpus(paths: list[Path]) -> list[tuple[str, str]]:
    """(raw caption, source file) in file order; captions that normalise to nothing are left out."""
    corpus = []
    for path in paths:
        for text in read_caption_file(path):
            try:
                normalize_caption(text)
            except ValueError:
                continue
            corpus.append((text, str(path)))
    return corpus


def corpus_digest(paths: list[Path]) -> str:
    """Identity of the caption inputs: an update re-embeds the bank only when this (or the model) changes."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path).encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    return digest.hexdigest()


def embed_bank(
    model: POSAPL, tagger: PosTagger, texts: list[str], batch_size: int, progress: bool = False
) -> np.ndarray:
    """One vector per caption row, each distinct caption embedded once.

    A caption's vector depends only on its normalised text (POS tags come from it too), and annotation
    files repeat captions heavily (RSICD: 5,350 distinct among 15,965), so rows that normalise alike share
    one encoding. Every row is kept: the bank still knows which file each came from, and the image-search
    response merges verbatim repeats. Tagging and encoding run in chunks behind a progress bar.
    """
    normalized = [normalize_caption(text) for text in texts]
    distinct = list(dict.fromkeys(normalized))
    vectors = np.zeros((len(distinct), model.embed_dim), np.float32)
    with bar(len(distinct), "embedding captions", "caption", progress) as shown:
        for start in range(0, len(distinct), EMBED_CHUNK):
            chunk = distinct[start : start + EMBED_CHUNK]
            vectors[start : start + len(chunk)] = encode_texts(model, chunk, tagger.tag(chunk), batch_size=batch_size)
            shown.update(len(chunk))
    row = {text: number for number, text in enumerate(distinct)}
    return vectors[[row[text] for text in normalized]] if normalized else vectors
