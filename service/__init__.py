"""The online search service: FastAPI app (`service.app`), its settings, and `posapl serve` (`service.cli`)."""
