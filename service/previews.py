"""A small JPEG of what the model saw, inlined in the image-search response as a data: URL.

Browsers cannot display TIFF (and many multi-band or 16-bit files), so the page cannot preview such an
upload from the local file; the server already holds the decoded RGB image and can show that instead.
"""

from __future__ import annotations

import base64
import io

from PIL import Image

PREVIEW_SIZE = 256


def preview_data_url(image: Image.Image, size: int = PREVIEW_SIZE) -> str:
    """`data:image/jpeg;base64,...` of `image` scaled so its longer side is at most `size` px."""
    small = image.convert("RGB")
    small.thumbnail((size, size), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")
