"""The Telegram side of the core's Outbox: status messages edited in place, clips delivered.

Every message here is the job's own (``JobMessage``): with several
replicas, each first takes the chat's turn in the pacing they share
(:mod:`bot.pacing`, through the flood control). Status edits never hold up
the job that asked for them: each message has at most one edit on its way,
and a newer status replaces one still waiting for its slot (see
:mod:`adapters.telegram.flood`), so a busy group sees the latest state
at the pace Telegram allows instead of a backlog.

A clip goes with ``sendVideo`` when Telegram can play it (an MP4 with H.264
video), otherwise as a file; one over the upload limit (50 MB on the public
Bot API, 2000 MB on a self-hosted server) becomes a message saying so.

When Telegram refuses a chat for good (the member blocked the bot, the bot
was removed from the group or may not write there, the chat is gone), a
send raises :class:`~bot.ports.Undeliverable`, so the core records the job
as undeliverable instead of retrying it at every start; other errors
(network, server, flood waits) raise as they are and the core retries.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import av
from telegram import InputFile, Message
from telegram.constants import MessageLimit
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import ExtBot

from adapters.tasks import finish_or_cancel
from adapters.telegram.chats import parse_chat
from adapters.telegram.flood import JobMessage, Superseded
from adapters.telegram.render import edit_text, keyboard, render, send_text, translator
from bot.commands import ChatRef
from bot.i18n import RenderedReply
from bot.ports import Outbox, Undeliverable
from bot.replies import Reply, text

log = logging.getLogger(__name__)

MB = 1_000_000
"""Telegram states its upload limits in decimal megabytes (50 MB, 2000 MB)."""

JOB = JobMessage()
"""``rate_limit_args`` of a job's new message: it takes the chat's shared turn first."""

REFUSALS = ("chat not found", "not enough rights", "have no rights", "chat_write_forbidden")
"""Bad Request answers (lower case) that mean the bot may not write in the chat."""


def refused_for_good(error: TelegramError) -> bool:
    """Telegram will keep refusing this chat: blocked, removed, no right to write, no chat."""
    if isinstance(error, Forbidden):
        return True
    return isinstance(error, BadRequest) and any(
        words in error.message.lower() for words in REFUSALS
    )


@dataclass(frozen=True, slots=True)
class Clip:
    """What Telegram needs to know about a clip before it is sent."""

    size: int
    playable: bool
    """An MP4 with H.264 video: ``sendVideo`` shows it inline."""
    width: int | None = None
    height: int | None = None
    duration_s: int | None = None


def probe_clip(path: Path) -> Clip:
    """Size, container, codec and dimensions of a clip file (blocking; run it on a thread)."""
    size = path.stat().st_size
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return Clip(size, False)
            stream = container.streams.video[0]
            formats = container.format.name.split(",")  # "mov,mp4,m4a,3gp,3g2,mj2"
            playable = "mp4" in formats and stream.codec_context.name == "h264"
            seconds = container.duration / 1_000_000 if container.duration else None
            return Clip(
                size,
                playable,
                stream.codec_context.width,
                stream.codec_context.height,
                round(seconds) if seconds else None,
            )
    except (av.FFmpegError, OSError) as error:
        log.warning("clip %s cannot be read as a video: %s", path.name, error)
        return Clip(size, False)


class TelegramOutbox(Outbox):
    """Sends and edits the runner's messages in Telegram chats."""

    def __init__(self, bot: ExtBot, *, upload_limit: int, local_mode: bool = False) -> None:
        self.bot = bot
        self.upload_limit = upload_limit
        self.local_mode = local_mode
        self._latest: dict[tuple[str, str], tuple[Reply, str]] = {}
        self._editors: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def send(self, chat: ChatRef, reply: Reply, locale: str) -> str:
        """Send a new message (a clip when the reply has one); return its message id."""
        chat_id, topic_id = parse_chat(chat)
        rendered = render(reply, locale)
        try:
            if rendered.video is not None:
                message = await self._send_clip(chat_id, topic_id, rendered, locale)
            else:
                message = await send_text(self.bot, chat_id, topic_id, rendered, ticket=JOB)
        except TelegramError as error:
            if refused_for_good(error):
                raise Undeliverable(f"chat {chat_id}: {error.message}") from error
            raise
        return str(message.message_id)

    async def edit(self, chat: ChatRef, message_id: str, reply: Reply, locale: str) -> None:
        """Bring a status message up to date, in the background; the newest reply wins."""
        key = (chat.id, message_id)
        self._latest[key] = (reply, locale)
        if key not in self._editors:
            task = asyncio.create_task(self._edit_until_current(chat, message_id, key))
            self._editors[key] = task

    def fits(self, chat: ChatRef, size_bytes: int) -> bool:
        """Clips over the Bot API's upload limit get a notice instead (see ``_send_clip``)."""
        return size_bytes <= self.upload_limit

    async def drain(self, timeout: float = 10.0) -> None:
        """Let edits on their way finish (within ``timeout``), then stop the rest."""
        await finish_or_cancel(list(self._editors.values()), timeout)

    async def _edit_until_current(
        self, chat: ChatRef, message_id: str, key: tuple[str, str]
    ) -> None:
        chat_id, _ = parse_chat(chat)
        try:
            while key in self._latest:
                reply, locale = self._latest.pop(key)
                ticket = JobMessage(stale=lambda: key in self._latest)
                try:
                    await edit_text(
                        self.bot, chat_id, int(message_id), render(reply, locale), ticket=ticket
                    )
                except Superseded:
                    continue
                except Exception as error:
                    log.warning(
                        "status message %s in chat %s not edited: %s", message_id, chat_id, error
                    )
        finally:
            self._editors.pop(key, None)

    async def _send_clip(
        self, chat_id: int, topic_id: int | None, rendered: RenderedReply, locale: str
    ) -> Message:
        assert rendered.video is not None
        path = rendered.video
        clip = await asyncio.to_thread(probe_clip, path)
        if clip.size > self.upload_limit:
            log.warning(
                "clip %s is %d bytes, over the %d byte upload limit",
                path.name,
                clip.size,
                self.upload_limit,
            )
            notice = translator(locale)(
                text(
                    "telegram.clip_too_big",
                    size_mb=f"{clip.size / MB:.1f}",
                    limit_mb=self.upload_limit // MB,
                )
            )
            too_big = RenderedReply(
                f"{rendered.text}\n\n{notice}", rendered.buttons, edit=False, private=False
            )
            return await send_text(self.bot, chat_id, topic_id, too_big, ticket=JOB)
        caption = rendered.text[: MessageLimit.CAPTION_LENGTH]
        media = await self._media(path)
        if clip.playable:
            return await self.bot.send_video(
                chat_id,
                media,
                caption=caption,
                width=clip.width,
                height=clip.height,
                duration=clip.duration_s,
                supports_streaming=True,
                message_thread_id=topic_id,
                reply_markup=keyboard(rendered.buttons),
                rate_limit_args=JOB,
            )
        return await self.bot.send_document(
            chat_id,
            media,
            caption=caption,
            message_thread_id=topic_id,
            reply_markup=keyboard(rendered.buttons),
            rate_limit_args=JOB,
        )

    async def _media(self, path: Path) -> Path | InputFile:
        """The clip as PTB should send it: by path to a local server, else its bytes."""
        if self.local_mode:
            return path.resolve()
        data = await asyncio.to_thread(path.read_bytes)
        return InputFile(data, filename=path.name)
