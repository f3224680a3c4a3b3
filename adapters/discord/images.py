"""The image of a ``/gen``: an attachment option, judged by its declared size and type first.

Discord tells the bot an attachment's size and content type before anything
is downloaded, so a GIF, a WebP or a video is refused here, and an image
over the limit (or a member asking for quotes too fast) by the core, without
fetching a byte. What the bytes really are is then the core's judgement,
made on the content (``bot.media``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiohttp
import discord

from bot.commands import ImageInput
from bot.errors import UserError

log = logging.getLogger(__name__)

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


def check_attachment(attachment: discord.Attachment) -> None:
    """Refuse (UserError) an attachment whose declared type cannot be an image we take.

    Its declared size is the core's to judge (:func:`image_input` passes it on).
    """
    declared = (attachment.content_type or "").partition(";")[0].strip().lower()
    if not declared or declared in ACCEPTED_TYPES:
        return  # no type declared: the content decides
    if declared in _REFUSED_TYPES:
        raise UserError(_REFUSED_TYPES[declared])
    if declared.startswith("video/"):
        raise UserError("image.video")
    if not declared.startswith("image/"):
        raise UserError("image.not_image")


def image_input(
    attachment: discord.Attachment, *, before_download: Callable[[], Awaitable[None]]
) -> ImageInput:
    """The core's image: the size Discord declared, and a download made only if the core asks.

    ``before_download`` runs first (the handler defers the interaction
    there: a download may outlast Discord's 3 seconds).
    """

    async def fetch() -> bytes:
        await before_download()
        try:
            return await attachment.read()
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as error:
            log.warning("could not fetch attachment %s: %s", attachment.id, error)
            raise UserError("discord.download_failed") from None

    return ImageInput(fetch, attachment.filename, attachment.size)
