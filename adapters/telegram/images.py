"""The image of a ``/gen``: found in the message or the one it replies to, fetched with getFile.

A member can send a photo with ``/gen prompt`` as its caption, an image as a
file (uncompressed) with that caption, or ``/gen prompt`` as a reply to a
message holding either. The size Telegram reports is checked before
anything is downloaded: an image over the limit is refused without fetching
a byte. What the bytes are (JPEG, PNG, or something else) is the core's
judgement, made on the content.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from telegram import Message
from telegram.constants import FileSizeLimit
from telegram.error import TelegramError
from telegram.ext import ExtBot

from bot.commands import ImageInput
from bot.errors import UserError
from bot.media import MAX_IMAGE_BYTES

log = logging.getLogger(__name__)

_MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ImageFile:
    """A file on Telegram's servers that may hold the image."""

    file_id: str
    size: int | None
    filename: str


def find_image(message: Message) -> ImageFile | None:
    """The photo or file in ``message``, else in the message it replies to."""
    replied = message.reply_to_message
    if replied is not None and replied.forum_topic_created is not None:
        replied = None  # in a forum, every message "replies" to its topic's first message
    for candidate in (message, replied):
        if candidate is None:
            continue
        if candidate.photo:
            largest = max(candidate.photo, key=lambda size: size.width * size.height)
            return ImageFile(largest.file_id, largest.file_size, "photo.jpg")
        if candidate.document is not None:
            document = candidate.document
            return ImageFile(document.file_id, document.file_size, document.file_name or "image")
    return None


def download_limit(*, local_mode: bool) -> int:
    """The most bytes worth downloading: Kling's image limit, within the Bot API's."""
    api = (
        FileSizeLimit.FILESIZE_DOWNLOAD_LOCAL_MODE
        if local_mode
        else FileSizeLimit.FILESIZE_DOWNLOAD
    )
    return min(MAX_IMAGE_BYTES, api)


def _too_big(size: int, limit: int) -> UserError:
    tenths = -(-size * 10 // _MB)  # rounded up, so just over the limit never reads as it
    return UserError(
        "image.file_too_big", size_mb=f"{tenths // 10}.{tenths % 10}", limit_mb=limit // _MB
    )


async def fetch_image(bot: ExtBot, image: ImageFile, *, limit: int) -> ImageInput:
    """Download the image; raise UserError when it is too big or cannot be fetched."""
    if image.size is not None and image.size > limit:
        raise _too_big(image.size, limit)
    try:
        file = await bot.get_file(image.file_id)
        if file.file_size is not None and file.file_size > limit:
            raise _too_big(file.file_size, limit)
        data = await file.download_as_bytearray()
    except TelegramError as error:
        log.warning("could not fetch image %s: %s", image.file_id, error)
        raise UserError("telegram.download_failed") from None
    if len(data) > limit:
        raise _too_big(len(data), limit)
    return ImageInput(bytes(data), image.filename)
