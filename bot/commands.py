"""What a user asked for, as frozen dataclasses that know nothing of any chat platform.

Adapters turn platform input into these (most through :mod:`bot.parsing`)
and hand them to :func:`bot.service.handle`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

PLATFORMS: tuple[str, ...] = ("console", "telegram", "discord", "cli")
"""Where users come from; ``cli`` is an operator working offline."""


@dataclass(frozen=True, slots=True, order=True)
class UserRef:
    """A user on one platform, e.g. ``telegram:12345``."""

    platform: str
    id: str

    @classmethod
    def parse(cls, text: str) -> UserRef:
        """Parse ``platform:id``; raise ValueError naming the expected form."""
        platform, sep, user_id = text.strip().partition(":")
        if not sep or platform not in PLATFORMS or not user_id or any(c.isspace() for c in user_id):
            raise ValueError(
                f"{text.strip()!r} is not a user; expected platform:id with platform one of "
                + ", ".join(PLATFORMS)
            )
        return cls(platform, user_id)

    def __str__(self) -> str:
        return f"{self.platform}:{self.id}"


@dataclass(frozen=True, slots=True)
class ChatRef:
    """A chat (private, group or channel) on one platform."""

    platform: str
    id: str


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a command, and from which chat, as the adapter saw them."""

    user: UserRef
    display_name: str = ""
    username: str | None = None
    locale: str = "en"
    is_platform_admin: bool = False
    """True when the adapter grants moderator rights by the platform's word.

    Only from places the operator configured (Telegram: an admin of a group in
    ``TELEGRAM_ADMIN_CHATS``; Discord: Administrator, Manage Server or the
    moderator role in a server of ``DISCORD_GUILD_IDS``), never from the chat
    the command came from: anyone can make a chat and administer it.
    """
    chat: ChatRef | None = None
    """Where replies, status messages and clips go; None means the user's private chat."""
    platform_locale: str | None = None
    """The platform's language when the member chose another in /settings (``locale``);
    None: ``locale`` is the platform's."""

    @property
    def reply_chat(self) -> ChatRef:
        """The chat to answer in."""
        return self.chat or ChatRef(self.user.platform, self.user.id)


ImageFetch = Callable[[], Awaitable[bytes]]
"""Downloads (or reads) an image's bytes; raises UserError when it cannot."""


@dataclass(frozen=True, slots=True)
class ImageInput:
    """An image a member sent: its size as the platform declares it, and how to fetch it.

    The core decides before fetching: an image whose ``declared_size`` is
    over the limit, or a member who is over their quote rate, costs no
    download. ``declared_size`` is None when the platform says nothing
    before the download (then the bytes decide). The name is only a hint
    (the content decides the format).
    """

    fetch: ImageFetch = field(repr=False)
    filename: str = ""
    declared_size: int | None = None

    @classmethod
    def of(cls, data: bytes, filename: str = "") -> ImageInput:
        """An image already in memory (its size is its length)."""

        async def fetch() -> bytes:
            return data

        return cls(fetch, filename, len(data))


# --- commands ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Price:
    """``/price [5|10]``: every tier's price; None means the default 5 s clip."""

    duration_s: int | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    """``/balance [user]``: a wallet's balance and open holds."""

    target: str | None = None


@dataclass(frozen=True, slots=True)
class History:
    """``/history [n]``: the caller's last ``limit`` ledger entries."""

    limit: int = 10


@dataclass(frozen=True, slots=True)
class TopUp:
    """``/topup <user> <credits> [reason]``: a moderator adds credits to a wallet."""

    target: str
    credits: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Help:
    """``/help``: what the bot does and its commands."""


@dataclass(frozen=True, slots=True)
class Start:
    """``/start``: a greeting, the help text, and the caller's wallet opened."""


@dataclass(frozen=True, slots=True)
class Gen:
    """``/gen``: quote every tier for an image (optional) and a prompt."""

    prompt: str
    image: ImageInput | None = None
    negative: str = ""
    duration_s: int | None = None
    """5 or 10; None: the member's default (``/settings``), else 5."""
    compare: bool = False
    """``/compare``: quote the tiers to run side by side instead of one to pick."""


@dataclass(frozen=True, slots=True)
class CompareTiers:
    """A button under a ``/compare`` quote: run these tiers (two or more), one job each.

    ``confirmed``: the confirm button shown when the sum is over the member's threshold.
    """

    quote_id: str
    picks: tuple[int, ...]
    """The tiers, as places in the quote's list of tiers (0 for its first)."""
    confirmed: bool = False


@dataclass(frozen=True, slots=True)
class Choose:
    """A tier button under a quote was pressed (``confirmed``: its confirm button)."""

    quote_id: str
    tier: str
    confirmed: bool = False


@dataclass(frozen=True, slots=True)
class CancelQuote:
    """The Cancel button under a quote."""

    quote_id: str


@dataclass(frozen=True, slots=True)
class CancelJob:
    """The Cancel button under a status message."""

    job_id: str


@dataclass(frozen=True, slots=True)
class Reroll:
    """After delivery: the same inputs and tier again, as a fresh quote."""

    job_id: str


@dataclass(frozen=True, slots=True)
class OtherTier:
    """After delivery: the same inputs, quoted for every tier."""

    job_id: str


@dataclass(frozen=True, slots=True)
class Resend:
    """Send again: a made clip the platform did not take yet is tried at once."""

    job_id: str


@dataclass(frozen=True, slots=True)
class Jobs:
    """``/jobs [user]``: recent jobs with state and cost (others' for moderators)."""

    target: str | None = None


@dataclass(frozen=True, slots=True)
class Refund:
    """``/refund <job> [reason]``: a moderator gives a delivered job's credits back."""

    job_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RefundPurchase:
    """``/refund <charge id> [reason] [force]``: a moderator gives a member's payment back.

    The platform returns the money and the ledger takes the pack's credits
    back; ``force`` takes what is left when they were spent.
    """

    charge_id: str
    reason: str = ""
    force: bool = False


@dataclass(frozen=True, slots=True)
class Buy:
    """``/buy``: the credit packs on sale, one button each."""


@dataclass(frozen=True, slots=True)
class BuyPack:
    """A pack's button under ``/buy``: send its invoice."""

    credits: int
    price: int


@dataclass(frozen=True, slots=True)
class Paid:
    """The platform says the member paid an invoice (Telegram: ``successful_payment``)."""

    charge_id: str
    payload: str
    currency: str
    amount: int


@dataclass(frozen=True, slots=True)
class Link:
    """``/link``: a one-time code for the member's other platform; ``/link <code>`` redeems one."""

    code: str | None = None


@dataclass(frozen=True, slots=True)
class Unlink:
    """``/unlink <user> [credits]``: a moderator separates linked accounts.

    The account that redeemed the code leaves with ``credits`` (default 0)
    taken from the shared wallet; the other keeps the wallet.
    """

    target: str
    credits: int = 0


class ShowSettings:
    """``/settings``: the member's personal defaults, with buttons to change them."""


@dataclass(frozen=True, slots=True)
class ChangeSetting:
    """A button under ``/settings``: set ``field`` (``tier``, ``dur``, ``lang``, ``ask``).

    ``owner`` is the id of the member whose settings message it is.
    """

    field: str
    value: str
    owner: str


Command = (
    Price
    | Balance
    | History
    | TopUp
    | Help
    | Start
    | Gen
    | Choose
    | CompareTiers
    | CancelQuote
    | CancelJob
    | Reroll
    | OtherTier
    | Resend
    | Jobs
    | Refund
    | RefundPurchase
    | Buy
    | BuyPack
    | Paid
    | Link
    | Unlink
    | ShowSettings
    | ChangeSetting
)
