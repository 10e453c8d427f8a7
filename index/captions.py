"""The caption corpus of the caption bank: every caption of the configured annotation and text files.

Annotation JSON files (HarMA/POSAPL lists and Karpathy-style `{"images": [...]}`) contribute all their
captions whatever the split, because the bank should know every caption the system has; `.txt` files
contribute one caption per non-empty line (this also reads the GaLR/AMFMN caption files).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from posapl.text import normalize_caption


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
