"""Image dimensions from a file's first bytes: PNG, JPEG, GIF and WebP, nothing else.

A small hand-written reader, so the files plugin can tell the agent "1280×720 PNG image"
without an imaging library. It reads at most ``HEAD`` bytes and never raises on a
malformed file: what it cannot read is "not an image it knows".
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import NamedTuple

HEAD = 256 * 1024  # a JPEG's frame header may follow large EXIF / ICC segments
# JPEG start-of-frame markers: SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class ImageInfo(NamedTuple):
    width: int
    height: int
    kind: str  # PNG | JPEG | GIF | WebP


def image_info(path: Path) -> ImageInfo | None:
    """The dimensions and format of the image at ``path``; None when it is none of the four
    formats, or its header is unreadable."""
    try:
        with path.open("rb") as handle:
            head = handle.read(HEAD)
    except OSError:
        return None
    return parse(head)


def parse(head: bytes) -> ImageInfo | None:
    try:
        for reader in (_png, _gif, _webp, _jpeg):
            found = reader(head)
            if found is not None:
                return found if found.width > 0 and found.height > 0 else None
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _png(head: bytes) -> ImageInfo | None:
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return ImageInfo(width, height, "PNG")


def _gif(head: bytes) -> ImageInfo | None:
    if head[:6] not in (b"GIF87a", b"GIF89a"):
        return None
    width, height = struct.unpack("<HH", head[6:10])
    return ImageInfo(width, height, "GIF")


def _webp(head: bytes) -> ImageInfo | None:
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8 ":  # lossy: a key frame's start code, then 14-bit sizes
        if head[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", head[26:30])
        return ImageInfo(width & 0x3FFF, height & 0x3FFF, "WebP")
    if chunk == b"VP8L":  # lossless: signature 0x2f, then 14 bits each of size - 1
        if head[20] != 0x2F:
            return None
        bits = int.from_bytes(head[21:25], "little")
        return ImageInfo((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, "WebP")
    if chunk == b"VP8X":  # extended: 24 bits each of canvas size - 1
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return ImageInfo(width, height, "WebP")
    return None


def _jpeg(head: bytes) -> ImageInfo | None:
    if head[:2] != b"\xff\xd8":
        return None
    at = 2
    while at + 4 <= len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            at += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header seen
            return None
        length = struct.unpack(">H", head[at + 2:at + 4])[0]
        if marker in _SOF:
            height, width = struct.unpack(">HH", head[at + 5:at + 9])
            return ImageInfo(width, height, "JPEG")
        if length < 2:
            return None
        at += 2 + length
    return None
