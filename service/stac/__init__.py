"""The STAC API over the live index version (`/stac`): see service.stac.routes, .query and .items."""

from service.stac.routes import router

__all__ = ["router"]
