"""A picture as a search query: read and check it (bytes or a path under the media roots), turn it the
way up its EXIF orientation says, and letterbox it as the loader shapes video frames. Every refusal is
a QueryError that names the problem.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clipseek.errors import MediaPathError, QueryError
from clipseek.media.imaging import letterbox
from clipseek.media.roots import resolve_media_path, resolve_roots


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20_000_000  # larger files are refused before they are decoded
    max_pixels: int = 40_000_000  # width x height; a 100 MP picture is refused from its header, undecoded


def decode_base64(text: str) -> bytes:
    """The bytes of a base64 image (a ``data:image/...;base64,`` prefix is allowed)."""
    payload = text.split(",", 1)[1] if text.startswith("data:") and "," in text else text
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise QueryError("the query image is not valid base64") from None


def read_query_file(path: str, roots: Sequence[str], limits: ImageLimits = ImageLimits()) -> bytes:
    """The bytes of the image at ``path``, which must be a file under one of the media ``roots``."""
    try:
        real = resolve_media_path(path, resolve_roots(roots))
    except MediaPathError as exc:
        raise QueryError(f"query image: {exc}") from None
    if not real.is_file():
        raise QueryError(f"query image {path}: not a file")
    size = real.stat().st_size
    if size > limits.max_bytes:
        raise QueryError(f"query image {path}: {size} bytes, over the limit of {limits.max_bytes} bytes")
    return Path(real).read_bytes()


def query_pixels(data: bytes, size_px: int, limits: ImageLimits = ImageLimits(), name: str = "the query image"
                 ) -> np.ndarray:
    """``data`` decoded, checked and letterboxed to a ``size_px`` square (uint8 RGB)."""
    if not data:
        raise QueryError(f"{name} is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise QueryError(f"{name}: {len(data)} bytes, over the limit of {limits.max_bytes} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below decides
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > limits.max_pixels:
                raise QueryError(f"{name} is {width}x{height} ({width * height / 1e6:.0f} MP), over the limit of "
                                 f"{limits.max_pixels / 1e6:.0f} MP: send a smaller copy")
            image.load()
    except QueryError:
        raise
    except Image.DecompressionBombError as exc:
        raise QueryError(f"{name} has too many pixels ({exc}): send a smaller copy") from None
    except UnidentifiedImageError:
        raise QueryError(f"{name} is not an image PIL can read (JPEG, PNG, WebP, GIF, BMP, ...)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise QueryError(f"{name} is broken or truncated: {exc}") from None
    if width <= 0 or height <= 0:
        raise QueryError(f"{name} has no pixels ({width}x{height})")
    return letterbox(ImageOps.exif_transpose(image), size_px)  # a phone's photo the way up it was taken
