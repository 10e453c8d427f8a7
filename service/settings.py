"""The search service's configuration: one pydantic-settings object, from flags, `POSAPL_*` env or `.env`.

Everything an operator may need to change without editing code lives here, so the CLI, the uvicorn factory
and the tests build the application from the same validated object.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from posapl.config import DEFAULT_ARCH, DEFAULT_PRETRAINED, absolute_if_file
from posapl.rerank import DEFAULT_RECIPROCAL_ALPHA, DEFAULT_RECIPROCAL_K

RerankMethod = Literal["none", "multivariate", "reciprocal"]


class ServiceSettings(BaseSettings):
    """Settings of `posapl serve` and of `service.app:app_from_env`."""

    model_config = SettingsConfigDict(env_prefix="POSAPL_", env_file=".env", extra="ignore")

    index_root: Path = Field(Path("data/index"), description="index store root (holds CURRENT and versions/)")
    checkpoint: str | None = Field(None, description="POSAPL checkpoint directory; none = zero-shot base CLIP")
    pretrained: str | None = Field(
        None,
        description="open_clip tag, local weights file, or 'random' (tests); none = the checkpoint's own base "
        f"weights, or {DEFAULT_PRETRAINED} zero-shot",
    )
    arch: str | None = Field(
        None, description=f"open_clip architecture name or JSON config (zero-shot only; none = {DEFAULT_ARCH})"
    )
    preset: Literal["rsitmd", "rsicd"] = "rsitmd"
    device: str = Field("auto", description="torch device for the encoders: auto (cuda when present), cpu, cuda …")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    public_url: str | None = Field(
        None,
        description="base of every link in responses, as clients reach the service (e.g. behind a proxy: "
        "https://search.example.org/posapl); none: the base URL of each request",
    )
    access_log: bool = Field(
        True,
        description="`posapl serve` logs one line per request; false leaves that to the reverse proxy (the event "
        "loop spent 14% of its busy time writing them under load; request counts stay in /metrics)",
    )

    batch_max_size: int = Field(32, ge=1, le=1024, description="most queries encoded in one forward pass")
    batch_wait_ms: float = Field(2.0, ge=0, le=1000, description="longest a query waits for others to batch with")
    cache_size: int = Field(2048, ge=0, description="recent query embeddings kept (0 disables the cache)")
    thumbnail_cache_size: int = Field(1024, ge=0, description="thumbnails kept in memory")
    torch_threads: int | None = Field(
        None, ge=1, description="intra-op threads of the encoders (none: torch's default)"
    )
    faiss_threads: int = Field(
        1,
        ge=1,
        description="OpenMP threads of FAISS searches; 1 because searches overlap with encoding, and FAISS "
        "spinning on several threads beside torch's made batched searches 30x slower on the 2-core CPU",
    )
    rerank_candidates: int = Field(100, ge=1, le=10_000, description="FAISS candidates (K') handed to re-ranking")
    dedupe_max_candidates: int = Field(
        2000,
        ge=1,
        description="most candidates overlap suppression ranks to fill k: bounds the cost of a query whose top is "
        "crowded by overlapping tiles of one scene (the response then says how many it kept)",
    )

    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="largest accepted image upload")
    max_image_pixels: int = Field(40_000_000, ge=1, description="decoded pixels above this are a decompression bomb")
    max_query_chars: int = Field(1000, ge=1, le=100_000)

    cors_origins: list[str] = Field(default_factory=list, description="allowed browser origins; none by default")
    map_tiles: str | None = Field(
        None,
        description="basemap tile URL template for the page's map, e.g. https://tiles.example.org/{z}/{x}/{y}.png "
        "(its origin is added to the Content-Security-Policy's img-src); none: no basemap",
    )
    admin_token: SecretStr | None = Field(None, description="bearer token for /v1/admin; none disables admin")
    rerank_default: RerankMethod = "multivariate"
    reciprocal_k: int = Field(
        DEFAULT_RECIPROCAL_K,
        ge=1,
        description="k of the reciprocal re-weighting, from `posapl eval --tune-reciprocal` on a val split; "
        "online ranks are exact while k <= half the index's profile points",
    )
    reciprocal_alpha: float = Field(DEFAULT_RECIPROCAL_ALPHA, ge=0, description="alpha of the reciprocal re-weighting")
    reload_poll_s: float = Field(5.0, gt=0, description="how often CURRENT is checked for a new index version")
    max_json_bytes: int = Field(
        64 * 1024, ge=1024, description="largest accepted JSON request body; larger ones get 413 while streaming"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="level of the service's own log lines (index swaps, refusals, errors)"
    )
    encoder_runtime: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description="encoder backend: auto = ONNX Runtime on CPU and PyTorch on CUDA; onnx; torch (the reference)",
    )
    onnx_cache_dir: Path | None = Field(
        None, description="where exported ONNX graphs are kept, per model fingerprint (none: ~/.cache/posapl/onnx)"
    )
    onnx_threads: int | None = Field(
        None, ge=1, description="intra-op threads of each ONNX Runtime session (none: one per core)"
    )
    onnx_text_precision: Literal["fp32", "int8", "int8-static"] = Field(
        "fp32", description="text tower in ONNX Runtime: fp32 (equal to PyTorch), dynamic int8, or static int8 "
        "(served only if its recorded agreement passed, else fp32; see `posapl bench runtime-agreement`)"
    )
    onnx_image_precision: Literal["fp32", "int8-static"] = Field(
        "fp32", description="image tower in ONNX Runtime: fp32 or static int8 (same gate as the text tower's)"
    )
    feedback_max_labels: int = Field(
        1000, ge=1, description="most positive plus negative ids one feedback search may label (each is one vector "
        "fetched and, for `probe`, one training row)"
    )
    feedback_background: int = Field(
        1000, ge=1, description="archive items a `probe` feedback search samples as background negatives"
    )
    detect_max_items: int = Field(
        100_000, ge=1, description="most tiles one detection returns (the best ones; the answer says when capped)"
    )
    state_db: str | None = Field(
        None, description="saved searches' database URL (postgresql://…); none = SQLite at INDEX_ROOT/state.sqlite"
    )
    require_key: bool = Field(False, description="every /v1 search needs an API key, not only saved searches")
    webhook_allow_private: bool = Field(
        False, description="saved searches may post webhooks to loopback, private and link-local addresses"
    )

    @field_validator("arch", "pretrained")
    @classmethod
    def _model_file(cls, value: str | None) -> str | None:
        """A relative config or weights file names the same model as the index's absolute one (its fingerprint
        records the name), so `serve --images` with `--arch my.json` serves the index it just built."""
        return absolute_if_file(value)

    @field_validator("map_tiles")
    @classmethod
    def _tile_template(cls, value: str | None) -> str | None:
        """Only an http(s) template with {z}, {x} and {y} can be a basemap; anything else would fail in the page."""
        if value is None or not value.strip():
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or any(f"{{{k}}}" not in value for k in "zxy"):
            raise ValueError("map_tiles must be an http(s) URL template with {z}, {x} and {y}")
        if not re.fullmatch(r"[A-Za-z0-9.\-:]*(\{s\}[A-Za-z0-9.\-:]*)?", parts.netloc):
            raise ValueError("map_tiles' host may hold only a {s} subdomain placeholder")
        return value

    @field_validator("public_url")
    @classmethod
    def _http_base(cls, value: str | None) -> str | None:
        """Links are built by appending routes, so the base must be an absolute http(s) URL without query."""
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("public_url must be an absolute http(s) URL without query or fragment")
        return value.strip().rstrip("/")

    @field_validator("admin_token")
    @classmethod
    def _empty_token_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        """An empty token would let anyone in with an empty bearer header; treat it as 'admin disabled'."""
        if value is not None and not value.get_secret_value().strip():
            return None
        return value
