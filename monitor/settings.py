"""The monitor's settings: one object, from flags, POSAPL_* environment variables or `.env`."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

STATE_FILE = "state.sqlite"


class MonitorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POSAPL_", env_file=".env", extra="ignore", populate_by_name=True)

    root: Path = Field(
        Path("data/index"),
        validation_alias=AliasChoices("root", "posapl_index_root"),
        description="index store root; the state database defaults to ROOT/state.sqlite",
    )
    state_db: str | None = Field(
        None, description="SQLAlchemy URL of a shared state database, e.g. postgresql+psycopg://user@host/db"
    )
    feedback_background: int = Field(
        1000, ge=1, description="background items a `probe` search samples when its vector is computed again"
    )
    webhook_allow_private: bool = Field(
        False, description="allow webhook URLs on loopback, private and link-local addresses (tests, intranets)"
    )
    webhook_timeout_s: float = Field(5.0, gt=0, description="per delivery attempt, so a slow receiver never stalls")
    webhook_max_attempts: int = Field(6, ge=1, description="after this many failures a delivery is given up")
    webhook_backoff_s: float = Field(30.0, ge=0, description="wait before retry n is backoff * 2**(n-1)")

    def database_url(self) -> str:
        """POSAPL_STATE_DB, else SQLite beside the index versions (never inside one: versions are immutable)."""
        if self.state_db:
            url = self.state_db
            if url.startswith("postgresql://"):  # the plain form people write: use the psycopg 3 driver
                url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
            return url
        return f"sqlite:///{(self.root / STATE_FILE).resolve()}"
