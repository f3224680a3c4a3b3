"""Checks on a member's /gen inputs (image and prompts), made before any quote or charge.

Everything here is pure: the image arrives as bytes and is decoded in memory,
and every problem becomes a :class:`~bot.errors.UserError` whose key names a
message in the catalogs (``image.*``, ``prompt.*``, ``negative.*``), never a
traceback. The limits are Kling 2.1's input rules (README.md, "Commands").

The image is judged by its content, never by its name: the first bytes decide
the format, and only JPEG and PNG pass. The cheap checks run first (size in
bytes, magic bytes, the dimensions in the header) so that a huge or hostile
file is refused before any pixel is decoded; only then is the whole image
decoded to catch truncated or corrupt files. An animated PNG (APNG) is
accepted as a PNG: every PNG reader shows its first frame.
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, NoReturn

from PIL import Image, JpegImagePlugin, PngImagePlugin

from bot.errors import UserError
from bot.text import clean_text, is_invisible

MAX_IMAGE_BYTES: Final = 10 * 1024 * 1024
"""Largest image file accepted (10 MB)."""

MIN_SIDE: Final = 300
"""Shortest width or height accepted, in pixels."""

MAX_SIDE: Final = 8000
"""Longest width or height accepted, in pixels: far beyond what a 1080p clip needs,
and it refuses decompression bombs before their pixels are allocated."""

MAX_ASPECT: Final = 2.5
"""Widest (and, as 1:2.5, tallest) aspect ratio accepted, inclusive."""

MAX_PROMPT: Final = 2500
"""Longest prompt or negative prompt, in characters (Python ``str`` length)."""

FIELDS: Final = ("prompt", "negative")
"""The texts :func:`check_prompt` knows; each has its own messages."""

_ASPECT = Fraction(MAX_ASPECT).limit_denominator(1000)
_MB = 1024 * 1024

_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"

# ISO base media files (HEIF/AVIF images, MP4/MOV videos) start with an ``ftyp`` box
# whose brands say what they hold.
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_VIDEO_BRANDS = frozenset(
    {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"dash",
     b"M4V ", b"M4VH", b"M4VP", b"qt  ", b"3gp4", b"3gp5", b"3gp6", b"3g2a", b"f4v "}
)  # fmt: skip
# Sizes of the BMP info headers (BITMAPCOREHEADER ... BITMAPV5HEADER); "BM" alone is too weak.
_BMP_INFO_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})

# EXIF orientations 5 to 8 turn the picture a quarter: width and height swap on screen.
_ORIENTATION_TAG = 0x0112
_QUARTER_TURNS = frozenset({5, 6, 7, 8})

_FIELD_KEYS: Final = {
    "prompt": ("prompt.required", "prompt.too_long", "prompt.blocked"),
    "negative": ("negative.required", "negative.too_long", "negative.blocked"),
}

_FORMAT_KEYS: Final = {
    "gif": "image.gif",
    "webp": "image.webp",
    "heic": "image.heic",
    "avif": "image.avif",
    "bmp": "image.bmp",
    "tiff": "image.tiff",
    "pdf": "image.pdf",
    "video": "image.video",
}

MESSAGE_KEYS: Final = frozenset(
    {
        "image.empty",
        "image.file_too_big",
        "image.not_image",
        "image.too_large",
        "image.too_small",
        "image.aspect",
        "image.corrupt",
        *_FORMAT_KEYS.values(),
        *(key for keys in _FIELD_KEYS.values() for key in keys),
    }
)
"""Every message key this module can raise (some are chosen by table, out of a key scan's sight)."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """An image that passed every check; width and height as the member sees it."""

    format: str
    """``"jpeg"`` or ``"png"``."""
    extension: str
    """``".jpg"`` or ``".png"``: the name to upload it under."""
    width: int
    height: int
    size_bytes: int


def inspect_image(data: bytes) -> ImageInfo:
    """Check an uploaded image against Kling's rules; raise UserError naming the problem.

    Order, cheapest first: empty, over :data:`MAX_IMAGE_BYTES`, not JPEG/PNG
    by its magic bytes, a side outside :data:`MIN_SIDE`..:data:`MAX_SIDE` or an
    aspect ratio beyond :data:`MAX_ASPECT` (read from the header, nothing
    decoded yet), and last a full decode that refuses truncated or corrupt files.
    """
    size = len(data)
    check_file_size(size)
    kind = sniff(data)
    if kind not in ("jpeg", "png"):
        _refuse_format(kind)
    image = _open(data, kind)
    try:
        width, height = _displayed_size(image)
        _check_dimensions(width, height)
        _decode(image, kind)
    finally:
        image.close()
    return ImageInfo(
        format=kind,
        extension=".jpg" if kind == "jpeg" else ".png",
        width=width,
        height=height,
        size_bytes=size,
    )


def check_file_size(size: int) -> None:
    """Refuse (UserError) a file of ``size`` bytes that is empty or over :data:`MAX_IMAGE_BYTES`.

    ``size`` is the file's real size: its length, or what the platform
    declares before a download (Telegram's ``file_size``, Discord's
    ``attachment.size``), or what the file system says. The message names
    it, so a member who sent 18.5 MB reads 18.5 MB, not the limit.
    """
    if size == 0:
        raise UserError("image.empty")
    if size > MAX_IMAGE_BYTES:
        raise UserError(
            "image.file_too_big", size_mb=_megabytes(size), limit_mb=MAX_IMAGE_BYTES // _MB
        )


def sniff(data: bytes) -> str | None:
    """Name the file format by its first bytes.

    Returns ``"jpeg"``, ``"png"``, ``"gif"``, ``"webp"``, ``"heic"``, ``"avif"``,
    ``"bmp"``, ``"tiff"``, ``"pdf"``, ``"video"``, or None when unrecognised.
    """
    if data.startswith(_JPEG):
        return "jpeg"
    if data.startswith(_PNG):
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        return _sniff_ftyp(data)
    if data[:2] == b"BM" and int.from_bytes(data[14:18], "little") in _BMP_INFO_SIZES:
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if data.lstrip(b"\x00\t\n\r\x0c ")[:5] == b"%PDF-":
        return "pdf"
    return None


def check_prompt(
    text: str | None,
    *,
    required: bool,
    blocked_words: Sequence[str] = (),
    field: str = "prompt",
) -> str:
    """Clean a prompt (or, with ``field="negative"``, a negative prompt) and check it.

    Control characters go (tabs and line breaks become spaces; emoji joiners
    and other format marks stay), surrounding whitespace is trimmed. Nothing
    left is an error when ``required``, else ``""``. Longer than
    :data:`MAX_PROMPT` characters is an error naming the length. A blocked
    word found anywhere (any case, width, spacing or invisible separators) is
    refused with a neutral message that names neither the word nor the rule.
    """
    if field not in _FIELD_KEYS:
        raise ValueError(f"field must be one of {FIELDS}, not {field!r}")
    required_key, too_long_key, blocked_key = _FIELD_KEYS[field]
    cleaned = clean_text(text or "")
    if not cleaned:
        if required:
            raise UserError(required_key)
        return ""
    if len(cleaned) > MAX_PROMPT:
        raise UserError(too_long_key, length=len(cleaned), limit=MAX_PROMPT)
    if _contains_blocked(cleaned, blocked_words):
        raise UserError(blocked_key)
    return cleaned


# -- images ---------------------------------------------------------------------------


def _sniff_ftyp(data: bytes) -> str | None:
    box_size = int.from_bytes(data[:4], "big")
    end = min(box_size if box_size >= 16 else len(data), len(data), 256)
    major = data[8:12]
    compatible = {data[i : i + 4] for i in range(16, end - 3, 4)}
    brands = {major} | compatible
    if major in _AVIF_BRANDS or (major == b"mif1" and brands & _AVIF_BRANDS):
        return "avif"
    if brands & _HEIC_BRANDS:
        return "heic"
    if brands & _AVIF_BRANDS:
        return "avif"
    if brands & _VIDEO_BRANDS:
        return "video"
    return None


def _refuse_format(kind: str | None) -> NoReturn:
    raise UserError(_FORMAT_KEYS.get(kind or "", "image.not_image"))


def _open(data: bytes, kind: str) -> Image.Image:
    """Read the header only.

    The format's own class is used rather than ``Image.open``: it tries no
    other format, and it leaves the pixel-count check to :func:`_check_dimensions`,
    which can name the size (Pillow's own bomb check would only raise).
    """
    factory = JpegImagePlugin.JpegImageFile if kind == "jpeg" else PngImagePlugin.PngImageFile
    try:
        return factory(io.BytesIO(data))
    except Exception as exc:  # Pillow raises SyntaxError, OSError, struct.error, ...
        raise UserError("image.corrupt") from exc


def _displayed_size(image: Image.Image) -> tuple[int, int]:
    width, height = image.size
    exif = image.info.get("exif")
    if not exif:
        return width, height
    try:
        orientation = Image.Exif()
        orientation.load(exif)
        turned = orientation.get(_ORIENTATION_TAG) in _QUARTER_TURNS
    except Exception:  # a broken EXIF block only loses the orientation hint
        turned = False
    return (height, width) if turned else (width, height)


def _check_dimensions(width: int, height: int) -> None:
    if width > MAX_SIDE or height > MAX_SIDE:
        raise UserError("image.too_large", width=width, height=height, max=MAX_SIDE)
    if width < MIN_SIDE or height < MIN_SIDE:
        raise UserError("image.too_small", width=width, height=height, min=MIN_SIDE)
    if Fraction(max(width, height), min(width, height)) > _ASPECT:
        raise UserError(
            "image.aspect",
            width=width,
            height=height,
            ratio=_ratio(width, height),
            limit=_number(_ASPECT),
        )


def _decode(image: Image.Image, kind: str) -> None:
    """Decode every pixel; a truncated or corrupt file raises here."""
    try:
        if kind == "jpeg":
            # Decoding at 1/8 scale still reads all the compressed data (so damage shows)
            # but needs 1/64 of the memory.
            image.draft(None, (1, 1))
        image.load()
    except Exception as exc:  # OSError, SyntaxError, zlib/struct errors, MemoryError, ...
        raise UserError("image.corrupt") from exc


def _megabytes(size: int) -> str:
    """Size in MB with one decimal, rounded up so that just over the limit never reads as it."""
    tenths = -(-size * 10 // _MB)
    return f"{tenths // 10}.{tenths % 10}"


def _ratio(width: int, height: int) -> str:
    """``"3:1"`` for wide, ``"1:3"`` for tall; rounded up to 1/100 (just over 2.5 shows 2.51)."""
    long, short = max(width, height), min(width, height)
    value = _number(Fraction(-(-long * 100 // short), 100))
    return f"{value}:1" if width >= height else f"1:{value}"


def _number(value: Fraction) -> str:
    """``2.5``, ``3``, ``2.51``: at most two decimals, no trailing zeros."""
    return f"{float(value):.2f}".rstrip("0").rstrip(".")


# -- prompts --------------------------------------------------------------------------


def _fold(text: str) -> str:
    """Text for matching: same width and case, nothing invisible (see :func:`is_invisible`)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if not is_invisible(ch))


def _contains_blocked(text: str, blocked_words: Sequence[str]) -> bool:
    """Substring match on the folded forms, so "B a d" and "ｂａｄ" both contain "bad"."""
    if not blocked_words:
        return False
    haystack = _fold(text)
    return any(needle and needle in haystack for needle in map(_fold, blocked_words))
