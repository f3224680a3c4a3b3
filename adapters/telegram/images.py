"""The image of a ``/gen``: found in the message or the one it replies to, fetched with getFile.

A member can send a photo with ``/gen prompt`` as its caption, an image as a
file (uncompressed) with that caption, or ``/gen prompt`` as a reply to a
message holding either. The core gets the size Telegram reports and a way
to download: it refuses an image over the limit, or a member asking for
quotes too fast, without fetching a byte, and names the image's real size.
What the bytes are (JPEG, PNG, or something else) is the core's judgement,
made on the content. (Telegram's own download limit, 20 MB, is above the
core's 10 MB.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from telegram import Message
from telegram.error import TelegramError
from telegram.ext import ExtBot

from bot.commands import ImageInput
from bot.errors import UserError
from bot.media import check_file_size

log = logging.getLogger(__name__)


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


def image_input(bot: ExtBot, image: ImageFile) -> ImageInput:
    """The core's image: the size Telegram declared, and a download that happens only if asked."""

    async def fetch() -> bytes:
        try:
            file = await bot.get_file(image.file_id)
            if file.file_size is not None:
                check_file_size(file.file_size)  # the message did not say; getFile does
            data = await file.download_as_bytearray()
        except TelegramError as error:
            log.warning("could not fetch image %s: %s", image.file_id, error)
            raise UserError("telegram.download_failed") from None
        return bytes(data)

    return ImageInput(fetch, image.filename, image.size)
