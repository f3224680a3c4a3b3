"""The image of a ``/gen``: an attachment option, judged by its declared size and type first.

Discord tells the bot an attachment's size and content type before anything
is downloaded, so an image over the limit, or a GIF, a WebP or a video, is
refused without fetching a byte. What the bytes really are is then the
core's judgement, made on the content (``bot.media``).
"""

from __future__ import annotations

import logging

import aiohttp
import discord

from bot.commands import ImageInput
from bot.errors import UserError
from bot.media import MAX_IMAGE_BYTES

log = logging.getLogger(__name__)

_MB = 1024 * 1024

ACCEPTED_TYPES = frozenset({"image/jpeg", "image/jpg", "image/pjpeg", "image/png"})

_REFUSED_TYPES = {
    "image/gif": "image.gif",
    "image/webp": "image.webp",
    "image/heic": "image.heic",
    "image/heif": "image.heic",
    "image/avif": "image.avif",
    "image/bmp": "image.bmp",
    "image/tiff": "image.tiff",
    "application/pdf": "image.pdf",
}
"""Declared types with their own explanation; other non-images get ``image.not_image``."""


def _too_big(size: int, limit: int) -> UserError:
    tenths = -(-size * 10 // _MB)  # rounded up, so just over the limit never reads as it
    return UserError(
        "image.file_too_big", size_mb=f"{tenths // 10}.{tenths % 10}", limit_mb=limit // _MB
    )


def check_attachment(attachment: discord.Attachment, *, limit: int = MAX_IMAGE_BYTES) -> None:
    """Refuse (UserError) an attachment whose declared size or type cannot be an image we take."""
    if attachment.size > limit:
        raise _too_big(attachment.size, limit)
    if attachment.size == 0:
        raise UserError("image.empty")
    declared = (attachment.content_type or "").partition(";")[0].strip().lower()
    if not declared or declared in ACCEPTED_TYPES:
        return  # no type declared: the content decides
    if declared in _REFUSED_TYPES:
        raise UserError(_REFUSED_TYPES[declared])
    if declared.startswith("video/"):
        raise UserError("image.video")
    if not declared.startswith("image/"):
        raise UserError("image.not_image")


async def fetch_image(
    attachment: discord.Attachment, *, limit: int = MAX_IMAGE_BYTES
) -> ImageInput:
    """Download a checked attachment; UserError when it cannot be fetched or is too big."""
    try:
        data = await attachment.read()
    except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as error:
        log.warning("could not fetch attachment %s: %s", attachment.id, error)
        raise UserError("discord.download_failed") from None
    if len(data) > limit:
        raise _too_big(len(data), limit)
    return ImageInput(data, attachment.filename)
