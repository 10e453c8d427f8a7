"""The monitor's text encoder: the store's own model, for saved searches whose vector a model change made stale.

It is loaded through the one checkpoint loader with the model settings recorded in ROOT/config.json (what the
index job embedded the version with), on the CPU, and only when a search with text needs it: a nightly run in
which no model changed loads nothing. Captions are prepared and encoded as the server prepares and encodes a
query, so the monitor's vector is the one the API would compute.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from service.encoding import QueryEncoder


class StoreQueryEncoder:
    """Encodes saved searches' text with the model of the store at `root`, loaded on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._encoder: QueryEncoder | None = None
        self._fingerprint = ""
        self._failure: Exception | None = None  # a model that did not load is not retried for every search

    def _load(self) -> QueryEncoder:
        from index.settings import StoreConfig
        from posapl.checkpoint import load_model
        from posapl.pos import PosTagger
        from service.encoding import QueryEncoder

        if self._failure is not None:
            raise self._failure
        if self._encoder is None:
            try:
                config = StoreConfig.load(self.root)
                model = load_model(config.checkpoint, config.pretrained, config.preset, config.arch).eval()
                self._encoder = QueryEncoder(model, PosTagger(), cache_size=256)
                self._fingerprint = model.fingerprint()
            except (OSError, ValueError, RuntimeError) as exc:
                self._failure = exc
                raise
        return self._encoder

    def encode(self, query: str, fingerprint: str) -> np.ndarray:
        """The unit vector of `query` under the model with `fingerprint`; ValueError when the store's model is
        another (the model changed again since that version was built)."""
        from posapl.text import normalize_caption
        from service.query_text import clean_query

        encoder = self._load()
        if self._fingerprint != fingerprint:
            raise ValueError(
                f"the store's model ({self._fingerprint[:12]}) did not build this version ({fingerprint[:12]})"
            )
        caption = normalize_caption(clean_query(query, max_chars=len(query)))  # its length was checked when saved
        return encoder.encode_batch([caption])[0].embedding.vector
