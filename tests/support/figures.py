"""Checks on the figures hamtune writes."""

from __future__ import annotations

import io

from PIL import Image


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(data: bytes, min_side: int = 200) -> tuple[int, int]:
    """`data` is a PNG that Pillow decodes fully; returns its size."""
    assert data.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.format == "PNG" and min(image.size) >= min_side
        return image.size
