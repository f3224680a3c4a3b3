"""Telegram updates in, core commands out, replies rendered back: the adapter's two handlers.

One handler takes every new message (text, or a photo or file with a
caption), one takes every button press. Each only translates: it works out
who is asking and from where (:class:`~bot.commands.Caller`), builds the
command with :mod:`bot.parsing` (a ``/gen``'s image as a download the core
makes only if it takes the request), hands the command to
:mod:`bot.service`, and shows the replies.

In groups the bot answers only its own commands: ``/gen@otherbot`` and
commands it does not know (another bot's, most likely) are left alone, and
plain chatter is ignored. Replies in a group quote the member's message.
A button press is always answered (``answerCallbackQuery``); the core's
private replies ("not your quote") become an alert only the presser sees.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from contextlib import suppress
from dataclasses import replace
from typing import Any

from telegram import Message, Update, User
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ContextTypes,
    ExtBot,
    MessageHandler,
    PreCheckoutQueryHandler,
    filters,
)

from adapters.tasks import finish_or_cancel
from adapters.telegram.admins import AdminCheck
from adapters.telegram.chats import (
    caller_for,
    chat_ref,
    is_private,
    message_chat,
    parse_chat,
)
from adapters.telegram.images import find_image, image_input
from adapters.telegram.payments import send_invoice
from adapters.telegram.render import edit_text, fits_alert, render, send_text, translator
from bot.commands import Buy, BuyPack, Caller, ChatRef, Command, Gen, Link, Paid, Price
from bot.deps import Deps
from bot.errors import UserError
from bot.i18n import RenderedReply
from bot.parsing import parse_action, parse_command
from bot.purchases import pre_checkout
from bot.replies import Reply, say, text
from bot.service import handle, respond, respond_to_action

log = logging.getLogger(__name__)

MESSAGES = filters.UpdateType.MESSAGE & (
    filters.TEXT | filters.CAPTION | filters.PHOTO | filters.Document.ALL
)
"""New messages (not edits) that can carry a command or an image."""

PENDING_SENDS = 64
"""Replies that may wait for Telegram's pace at once before handlers wait too."""


def split_command(body: str) -> tuple[str, str] | None:
    """``/gen@klingbot a cat`` -> ``("gen", "klingbot")``; None when it is not a command."""
    if not body.startswith("/"):
        return None
    words = body[1:].split(maxsplit=1)
    head = words[0] if words else ""
    name, _, addressee = head.partition("@")
    return name.lower(), addressee


_NO_MODERATION = Price | Buy | BuyPack | Link
"""Commands and buttons no moderator right changes: no admin lookup for them."""


def _may_moderate(command: Command | None) -> bool:
    """Whether the caller's admin rights are worth looking up for ``command`` (None: unparsed)."""
    return command is not None and not isinstance(command, _NO_MODERATION)


def _action_command(action: str) -> Command | None:
    """The command a button's action names, or None when it names none (a stale button)."""
    try:
        return parse_action(action)
    except UserError:
        return None


def _raising(error: UserError) -> Callable[[], Command]:
    """A command builder that fails with ``error``, so the core words the refusal."""

    def build() -> Command:
        raise error

    return build


def with_reply_target(body: str, message: Message) -> str:
    """``/topup 50 gift`` sent as a reply to Bob's message -> ``/topup telegram:<Bob> 50 gift``.

    Only when the words after the command read as an amount (and no target):
    ``/topup @carol 50`` keeps its own target even in a reply.
    """
    replied = message.reply_to_message
    if replied is None or replied.forum_topic_created is not None:
        return body
    target = replied.from_user
    if target is None or target.is_bot:
        return body
    head, _, rest = body.partition(" ")
    words = rest.split()
    if words and words[0].isdigit() and (len(words) == 1 or not words[1].isdigit()):
        return f"{head} telegram:{target.id} {rest.strip()}"
    return body


async def send_rendered(
    bot: ExtBot,
    chat_id: int,
    topic_id: int | None,
    rendered: RenderedReply,
    *,
    reply_to: int | None = None,
) -> None:
    """A reply's text (if it has any, or no invoice) and then its invoice."""
    if rendered.text or rendered.invoice is None:
        await send_text(bot, chat_id, topic_id, rendered, reply_to=reply_to)
    if rendered.invoice is not None:
        await send_invoice(bot, chat_id, topic_id, rendered.invoice, reply_to=reply_to)


class Handlers:
    """The adapter's update handlers, with what they need passed in."""

    def __init__(self, deps: Deps, admins: AdminCheck) -> None:
        self.deps = deps
        self.admins = admins
        self._pending = asyncio.Semaphore(PENDING_SENDS)
        self._sending: set[asyncio.Task[None]] = set()

    def register(self, application: Application) -> None:
        """Add the message and button handlers to ``application``."""
        application.add_handler(PreCheckoutQueryHandler(self.on_pre_checkout))
        application.add_handler(MessageHandler(filters.SUCCESSFUL_PAYMENT, self.on_paid))
        application.add_handler(MessageHandler(MESSAGES, self.on_message))
        application.add_handler(CallbackQueryHandler(self.on_button))

    async def _caller(self, user: User, chat: ChatRef, *, moderation: bool) -> Caller:
        """The core's caller; admin rights are looked up only when the command may need them."""
        is_admin = await self.admins.is_admin(user.id) if moderation else False
        return caller_for(user, chat, is_admin=is_admin)

    # --- messages ---------------------------------------------------------------------

    async def on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A new message: answer it if it is one of our commands (or in a private chat)."""
        message = update.message
        if message is None or message.from_user is None or message.from_user.is_bot:
            return
        bot: ExtBot = context.bot
        body = message.text or message.caption or ""
        private = is_private(message.chat)
        command_name = split_command(body)
        if command_name is None:
            if private:
                await self._not_a_command(context, update, message)
            return
        name, addressee = command_name
        if addressee and addressee.lower() != (bot.username or "").lower():
            return  # /gen@otherbot
        if name == "topup":
            body = with_reply_target(body, message)
        command: Command | None = None
        failure: UserError | None = None
        try:
            command = parse_command(body)
        except UserError as error:
            if error.key == "error.unknown_command" and not private and not addressee:
                return  # most likely another bot's command
            failure = error
        chat = message_chat(message)
        caller = await self._caller(
            message.from_user,
            chat,
            moderation=_may_moderate(command),
        )
        request_id = f"telegram:{message.chat.id}:{message.message_id}"
        if failure is not None:
            replies = await respond(_raising(failure), caller, self.deps, request_id=request_id)
        elif isinstance(command, Gen):
            replies = await self._gen(bot, message, command, caller, request_id)
        else:
            assert command is not None
            replies = await handle(command, caller, self.deps, request_id=request_id)
        await self._in_background(
            context, update, self._show(bot, message, chat, caller.locale, replies)
        )

    # --- payments --------------------------------------------------------------------------

    async def on_pre_checkout(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Telegram asks whether to take a payment: answer now (it waits 10 s at most).

        The check reads no database (:func:`bot.purchases.pre_checkout`); if it
        fails anyway, the answer is no rather than none.
        """
        query = update.pre_checkout_query
        if query is None:
            return
        caller = caller_for(query.from_user, chat_ref(query.from_user.id), is_admin=False)
        try:
            refusal = pre_checkout(
                self.deps, caller.user, query.invoice_payload, query.currency, query.total_amount
            )
        except Exception:
            log.exception("pre-checkout %s could not be checked: refused", query.id)
            refusal = text("telegram.error")
        if refusal is None:
            await query.answer(ok=True)
        else:
            log.info("pre-checkout %s by %s refused: %s", query.id, caller.user, refusal.key)
            await query.answer(ok=False, error_message=translator(caller.locale)(refusal))

    async def on_paid(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A ``successful_payment``: the core credits it once per charge id and says so."""
        message = update.message
        if message is None or message.from_user is None or message.successful_payment is None:
            return
        payment = message.successful_payment
        chat = message_chat(message)
        caller = caller_for(message.from_user, chat, is_admin=False)
        command = Paid(
            charge_id=payment.telegram_payment_charge_id,
            payload=payment.invoice_payload,
            currency=payment.currency,
            amount=payment.total_amount,
        )
        request_id = f"telegram:{message.chat.id}:{message.message_id}"
        replies = await handle(command, caller, self.deps, request_id=request_id)
        await self._in_background(
            context, update, self._show(context.bot, message, chat, caller.locale, replies)
        )

    async def _gen(
        self, bot: ExtBot, message: Message, command: Gen, caller: Caller, request_id: str
    ) -> list[Reply]:
        """``/gen``: the core quotes, downloading the image (here or in the reply) if it may."""
        image = find_image(message)
        if image is not None:
            command = replace(command, image=image_input(bot, image))
        return await handle(command, caller, self.deps, request_id=request_id)

    async def _not_a_command(
        self, context: ContextTypes.DEFAULT_TYPE, update: Update, message: Message
    ) -> None:
        """Plain text or a bare picture in a private chat: say how to talk to the bot."""
        assert message.from_user is not None
        caller = caller_for(message.from_user, message_chat(message), is_admin=False)
        if message.photo or message.document is not None:
            replies = [say("telegram.photo_without_command")]
        else:
            replies = await respond(_raising(UserError("error.not_a_command")), caller, self.deps)
        sending = self._show(context.bot, message, message_chat(message), caller.locale, replies)
        await self._in_background(context, update, sending)

    async def _show(
        self, bot: ExtBot, message: Message, chat: ChatRef, locale: str, replies: list[Reply]
    ) -> None:
        """Send the replies to a message; in a group each quotes the member's message."""
        chat_id, topic_id = parse_chat(chat)
        reply_to = None if is_private(message.chat) else message.message_id
        for reply in replies:
            await send_rendered(bot, chat_id, topic_id, render(reply, locale), reply_to=reply_to)

    async def _in_background(
        self, context: ContextTypes.DEFAULT_TYPE, update: Update, sending: Coroutine[Any, Any, None]
    ) -> None:
        """Send replies without holding up update handling while flood control paces them.

        A busy group may take only 20 messages a minute; waiting for that
        inside the handler would hold one of the application's concurrent
        update slots and stall everyone else. The application tracks the
        task (``Application.stop`` waits for it) and hands its errors to the
        error handler, with the update. At most :data:`PENDING_SENDS` wait at
        once: past that, handlers wait too, so a flood of updates cannot pile
        up replies without bound.
        """
        await self._pending.acquire()

        async def send_then_release() -> None:
            try:
                await sending
            finally:
                self._pending.release()

        task = context.application.create_task(send_then_release(), update=update)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def drain(self, timeout: float = 10.0) -> None:
        """At shutdown: let replies on their way go out (within ``timeout``), drop the rest."""
        late = await finish_or_cancel(list(self._sending), timeout)
        if late:
            log.warning("%d replies not sent: still waiting for Telegram's pace", late)

    async def _apply(
        self, bot: ExtBot, message: Message | None, chat: ChatRef, rendered: list[RenderedReply]
    ) -> None:
        """A button's replies: edit the pressed message where asked, else send in its chat."""
        chat_id, topic_id = parse_chat(chat)
        for item in rendered:
            if item.edit and message is not None and message.text is not None:
                await edit_text(bot, message.chat.id, message.message_id, item)
            else:
                quoted = message.message_id if message and not is_private(message.chat) else None
                await send_rendered(bot, chat_id, topic_id, item, reply_to=quoted)

    # --- buttons --------------------------------------------------------------------------

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A button press: run its action, answer the query, then edit or send."""
        query = update.callback_query
        if query is None:
            return
        bot: ExtBot = context.bot
        answered = False
        try:
            message = query.message if isinstance(query.message, Message) else None
            chat = message_chat(message) if message is not None else chat_ref(query.from_user.id)
            action = query.data or ""
            caller = await self._caller(
                query.from_user, chat, moderation=_may_moderate(_action_command(action))
            )
            replies = await respond_to_action(
                action, caller, self.deps, request_id=f"telegram:button:{query.id}"
            )
            rendered = [render(reply, caller.locale) for reply in replies]
            alert = next((r for r in rendered if r.private and fits_alert(r.text)), None)
            answered = True
            try:
                await query.answer(alert.text if alert else None, show_alert=alert is not None)
            except BadRequest as error:  # e.g. "query is too old": the action still happened
                log.info("button press %s not answered: %s", query.id, error)
            rest = [item for item in rendered if item is not alert]
            if rest:
                await self._in_background(context, update, self._apply(bot, message, chat, rest))
        finally:
            if not answered:
                with suppress(TelegramError):
                    await query.answer()
