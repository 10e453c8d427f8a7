"""Image ids in URLs: only the canonical decimal spelling names an image.

Responses for an id are cached as immutable, so `/v1/images/+123`, `/v1/images/0123` or `/v1/images/123.0`
must not be other names for image 123 (each would be a separate cache entry for the same bytes, and a
loose parser invites surprises such as Unicode digits). Anything else is a 422 that shows the right form.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi import Path as PathParam

from index.layout import ID_MASK
from service.decimal_ints import is_canonical
from service.errors import ServiceError

ID_PATTERN = "^(0|[1-9][0-9]{0,18})$"


def _canonical(raw: str, what: str) -> int:
    """The id as an integer, or a 422 naming the accepted form."""
    if not is_canonical(raw) or len(raw) > 19:
        raise ServiceError(
            422,
            f"invalid_{what}_id",
            f"{what} ids are decimal integers without sign, spaces, separators or leading zeros (e.g. 1234); "
            f"got {raw[:40]!r}",
        )
    value = int(raw)
    if value > ID_MASK:
        raise ServiceError(422, f"invalid_{what}_id", f"{what} ids are at most {ID_MASK}; got {raw}")
    return value


def parse_image_id(
    image_id: Annotated[
        str,
        PathParam(
            description="image id from a search result: a decimal integer without sign, spaces or leading zeros",
            json_schema_extra={"pattern": ID_PATTERN},
        ),
    ],
) -> int:
    """FastAPI dependency for `/v1/images/{image_id}`."""
    return _canonical(image_id, "image")


def parse_scene_id(
    scene_id: Annotated[
        str,
        PathParam(
            description="scene id from a search hit (hit.scene.id): a decimal integer without sign, spaces or "
            "leading zeros",
            json_schema_extra={"pattern": ID_PATTERN},
        ),
    ],
) -> int:
    """FastAPI dependency for `/v1/scenes/{scene_id}`: scene ids are content ids like image ids."""
    return _canonical(scene_id, "scene")


ImageId = Annotated[int, Depends(parse_image_id)]
SceneId = Annotated[int, Depends(parse_scene_id)]
