"""Test images built in memory with Pillow (and by hand where Pillow would be too slow)."""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def noise(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Random pixels: they barely compress, so the scan data fills most of the file."""
    channels = len(mode)
    pixels = random.Random(seed).randbytes(width * height * channels)
    return Image.frombytes(mode, (width, height), pixels)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def jpeg(width: int = 400, height: int = 300, **options) -> bytes:
    return encode(noise(width, height), "JPEG", quality=90, **options)


def png(width: int = 400, height: int = 300, mode: str = "RGB") -> bytes:
    return encode(noise(width, height, mode), "PNG")


def flat_png(width: int, height: int) -> bytes:
    """A one-bit, one-colour PNG: tiny and fast even at 8000 px."""
    return encode(Image.new("1", (width, height), 1), "PNG")


def chunks(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """The PNG's chunks as (offset, type, body)."""
    found, offset = [], len(PNG_SIGNATURE)
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        found.append((offset, kind, data[offset + 8 : offset + 8 + length]))
        offset += 12 + length
    return found


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def with_ihdr_size(data: bytes, width: int, height: int) -> bytes:
    """The same PNG with IHDR claiming another size (CRC fixed); its pixels stay tiny."""
    offset, kind, body = chunks(data)[0]
    assert kind == b"IHDR"
    patched = chunk(b"IHDR", struct.pack(">II", width, height) + body[8:])
    return data[:offset] + patched + data[offset + len(patched) :]


def with_idat_flipped(data: bytes) -> bytes:
    """The same PNG with every byte of its (first) compressed pixel data inverted."""
    for offset, kind, body in chunks(data):
        if kind == b"IDAT":
            start = offset + 8
            flipped = bytes(b ^ 0xFF for b in body)
            return data[:start] + flipped + data[start + len(body) :]
    raise AssertionError("no IDAT chunk")


def apng(width: int = 400, height: int = 300) -> bytes:
    frames = [noise(width, height, seed=seed) for seed in range(2)]
    return encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100)


def jpeg_with_orientation(width: int, height: int, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg(width, height, exif=exif.tobytes())


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    """An ISO base media header (HEIC, AVIF, MP4) followed by junk."""
    body = b"ftyp" + major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return struct.pack(">I", 4 + len(body)) + body + b"\x00\x00\x00\x08mdat" + bytes(64)
