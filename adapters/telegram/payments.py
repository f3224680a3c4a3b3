"""Telegram Stars: invoices out, pre-checkout answers, payments in, refunds back.

The core decides (:mod:`bot.purchases`); this module speaks the Bot API:
``sendInvoice`` in ``XTR`` with an empty provider token and one price,
``answerPreCheckoutQuery`` at once (Telegram waits 10 seconds, then fails
the payment), the ``successful_payment`` message, and
``refundStarPayment``.
"""

from __future__ import annotations

import logging

from telegram import LabeledPrice, Message, ReplyParameters
from telegram.error import BadRequest
from telegram.ext import ExtBot

from bot.commands import UserRef
from bot.i18n import RenderedInvoice
from bot.ports import PaymentRefunds, RefundRefused

log = logging.getLogger(__name__)

ALREADY_REFUNDED = "CHARGE_ALREADY_REFUNDED"
"""What ``refundStarPayment`` answers for a charge it gave back before."""


async def send_invoice(
    bot: ExtBot,
    chat_id: int,
    topic_id: int | None,
    invoice: RenderedInvoice,
    *,
    reply_to: int | None = None,
) -> Message:
    """An invoice in Stars: no provider token, exactly one price."""
    return await bot.send_invoice(
        chat_id,
        title=invoice.title[:32],
        description=invoice.description[:255],
        payload=invoice.payload,
        currency=invoice.currency,
        prices=[LabeledPrice(invoice.label, invoice.amount)],
        provider_token="",
        message_thread_id=topic_id,
        reply_parameters=ReplyParameters(reply_to, allow_sending_without_reply=True)
        if reply_to is not None
        else None,
    )


class TelegramRefunds(PaymentRefunds):
    """``refundStarPayment``: the Stars of one payment go back to the member who paid."""

    def __init__(self, bot: ExtBot) -> None:
        self.bot = bot

    async def refund(self, user: UserRef, charge_id: str) -> None:
        """Give the payment back; one Telegram gave back already counts as done."""
        try:
            await self.bot.refund_star_payment(int(user.id), charge_id)
        except BadRequest as error:
            # PTB words Telegram's "Bad Request: CHARGE_ALREADY_REFUNDED" as
            # "Charge_already_refunded": compare without the case.
            if ALREADY_REFUNDED.lower() in error.message.lower():
                log.info("payment %s was already refunded by Telegram", charge_id)
                return
            raise RefundRefused(error.message) from None
