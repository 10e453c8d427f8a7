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


def parse_image_id(
    image_id: Annotated[
        str,
        PathParam(
            description="image id from a search result: a decimal integer without sign, spaces or leading zeros",
            json_schema_extra={"pattern": ID_PATTERN},
        ),
    ],
) -> int:
    """FastAPI dependency: the id as an integer, or a 422 naming the accepted form."""
    if not is_canonical(image_id) or len(image_id) > 19:
        raise ServiceError(
            422,
            "invalid_image_id",
            f"image ids are decimal integers without sign, spaces, separators or leading zeros (e.g. 1234); "
            f"got {image_id[:40]!r}",
        )
    value = int(image_id)
    if value > ID_MASK:
        raise ServiceError(422, "invalid_image_id", f"image ids are at most {ID_MASK}; got {image_id}")
    return value


ImageId = Annotated[int, Depends(parse_image_id)]
