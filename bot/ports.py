"""The storage ports the core depends on, and the values that cross them.

``storage`` implements them for SQLite, ``storage.postgres`` for
PostgreSQL (``app.backend`` picks one), and ``tests/unit/fakes.py`` in
memory; the contract suites in ``tests/contracts`` hold all three to the
same promises.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from bot.commands import ChatRef, UserRef
from bot.replies import Reply

EntryKind = Literal[
    "topup",
    "hold",
    "capture",
    "release",
    "adjust",
    "purchase",
    "purchase_refund",
    "link_in",
    "link_out",
]
HoldState = Literal["open", "captured", "released"]


@dataclass(frozen=True, slots=True)
class UserProfile:
    """What the bot knows of a user: their id, how to show them, how to find them."""

    user: UserRef
    display_name: str = ""
    username: str | None = None
    locale: str = "en"


@dataclass(frozen=True, slots=True)
class Wallet:
    """A user's credits: ``balance`` is spendable, ``held`` is reserved by ``open_holds`` holds."""

    user: UserRef
    balance: int
    held: int
    open_holds: int


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One append-only ledger row.

    ``amount`` is the change to the spendable balance, ``held_delta`` the
    change to the held credits: a hold moves credits from balance to held, a
    capture spends held credits, a release moves them back.
    """

    seq: int
    key: str
    user: UserRef
    kind: EntryKind
    amount: int
    held_delta: int
    balance_after: int
    held_after: int
    hold_id: str | None
    actor: str
    reason: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Hold:
    """Credits reserved for one job; ``hold_id`` is the job id."""

    hold_id: str
    user: UserRef
    amount: int
    state: HoldState


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of a ledger write: the entry, and whether this call wrote it.

    ``applied`` is False when the idempotency key was seen before (or the
    hold had already ended): the caller gets the earlier result back and
    nothing changed.
    """

    entry: LedgerEntry
    applied: bool


def purchase_key(source: str, charge_id: str) -> str:
    """The idempotency key of the purchase paid by ``charge_id`` on ``source`` (``telegram``)."""
    return f"purchase:{source}:{charge_id}"


def purchase_refund_key(source: str, charge_id: str) -> str:
    """The idempotency key of that purchase's refund."""
    return f"purchase_refund:{source}:{charge_id}"


@dataclass(frozen=True, slots=True)
class Purchase:
    """A payment the ledger credited (``bought``) and its refund, if there was one."""

    source: str
    charge_id: str
    bought: LedgerEntry
    refund: LedgerEntry | None


class Ledger(ABC):
    """Users, wallets and the append-only credit ledger.

    Every write is one transaction that either changes a balance and appends
    its entry, or changes nothing. Writes are idempotent by ``key``.
    """

    @abstractmethod
    async def open_wallet(self, profile: UserProfile, *, welcome_credits: int, now: int) -> Wallet:
        """Record the user (refreshing their name) and open their wallet if it is new.

        A new wallet is granted ``welcome_credits`` as a ``topup`` by ``system``.
        """

    @abstractmethod
    async def wallet(self, user: UserRef) -> Wallet | None:
        """The user's wallet, or None if they have none."""

    @abstractmethod
    async def find_user(self, platform: str, query: str) -> UserProfile | None:
        """A known user on ``platform`` by id or by username (without ``@``, any case)."""

    @abstractmethod
    async def top_up(
        self,
        user: UserRef,
        credits: int,
        *,
        key: str,
        actor: str,
        reason: str,
        now: int,
        create_wallet: bool = False,
        welcome_credits: int = 0,
    ) -> Outcome:
        """Add ``credits`` (> 0). Raises NoWallet, unless ``create_wallet``.

        With ``create_wallet``, a user the bot has never seen is recorded (no
        name yet) and their wallet opened in the same transaction as the
        top-up; a new wallet gets ``welcome_credits`` first, as it would on
        the user's first message. A known user's name is left as it is.
        """

    @abstractmethod
    async def adjust(
        self, user: UserRef, credits: int, *, key: str, actor: str, reason: str, now: int
    ) -> Outcome:
        """Add or remove credits (a correction or refund). Raises InsufficientCredits, NoWallet."""

    @abstractmethod
    async def hold(
        self, user: UserRef, credits: int, *, hold_id: str, actor: str, reason: str, now: int
    ) -> Outcome:
        """Reserve ``credits`` under ``hold_id``. Raises InsufficientCredits, NoWallet."""

    @abstractmethod
    async def capture(self, hold_id: str, *, actor: str, reason: str, now: int) -> Outcome:
        """Spend an open hold. A hold that already ended is returned unchanged. Raises KeyError."""

    @abstractmethod
    async def release(self, hold_id: str, *, actor: str, reason: str, now: int) -> Outcome:
        """Give an open hold back. An ended hold is returned unchanged. Raises KeyError."""

    @abstractmethod
    async def get_hold(self, hold_id: str) -> Hold | None:
        """The hold called ``hold_id``."""

    @abstractmethod
    async def history(self, user: UserRef, limit: int) -> list[LedgerEntry]:
        """The user's last ``limit`` entries, newest first."""

    @abstractmethod
    async def entry(self, key: str) -> LedgerEntry | None:
        """The entry written under idempotency key ``key``, or None."""

    @abstractmethod
    async def purchase(
        self,
        user: UserRef,
        credits: int,
        *,
        source: str,
        charge_id: str,
        actor: str,
        reason: str,
        now: int,
        create_wallet: bool = True,
        welcome_credits: int = 0,
    ) -> Outcome:
        """Credit a paid pack (``credits`` > 0) once per ``(source, charge_id)``.

        The entry is a ``purchase`` under :func:`purchase_key`: a replayed or
        duplicated payment returns the first entry (``applied=False``) and
        credits nothing, whatever its user or amount say. With
        ``create_wallet`` (the default: a payment must never be lost) a
        member without a wallet gets one in the same transaction, as
        :meth:`top_up` does. Raises NoWallet without it.
        """

    @abstractmethod
    async def refund_purchase(
        self, source: str, charge_id: str, *, force: bool, actor: str, reason: str, now: int
    ) -> Outcome:
        """Take a purchase's credits back from its member, once (a ``purchase_refund``).

        Refused with :class:`~bot.errors.PurchaseSpent` (nothing changes) when
        the spendable balance no longer covers them, unless ``force``: then it
        takes what is there (possibly nothing), so the balance ends at zero and
        never below. A second call returns the first refund (``applied=False``).
        Raises :class:`~bot.errors.UnknownPurchase` when no purchase has that
        payment.
        """

    # --- one wallet on several platforms (see docs/ARCHITECTURE.md, "Linked wallets") ---

    @abstractmethod
    async def issue_link_code(
        self, user: UserRef, code_hash: str, *, now: int, ttl_s: int, per_hour: int
    ) -> bool:
        """Store a new link code of ``user`` (its hash), valid ``ttl_s``; False if rate-limited.

        At most ``per_hour`` codes per member in any hour; a refused request
        stores nothing. The member must have a wallet (NoWallet).
        """

    @abstractmethod
    async def redeem_link_code(
        self, user: UserRef, code_hash: str, *, now: int, failures_per_hour: int
    ) -> LinkResult:
        """Link ``user`` to the wallet of the code's issuer, in one transaction.

        ``user``'s balance and held credits move to the issuer's wallet
        (``link_out`` on ``user``'s, ``link_in`` on the issuer's) and its open
        holds with them; from then on every operation naming either identity
        uses the issuer's wallet. Only two identities on different platforms
        that share no wallet yet can be linked (no chains). Anything but
        ``linked`` changes nothing but, for a wrong code, the member's count
        of failures (past ``failures_per_hour`` nothing is even looked up).
        """

    @abstractmethod
    async def unlink(
        self, user: UserRef, *, credits: int, actor: str, reason: str, now: int
    ) -> Unlinked:
        """Separate ``user`` (either identity of a pair) from its partner.

        The identity that issued the code keeps the shared wallet and its open
        holds; the one that redeemed it leaves with ``credits`` (0 or more)
        taken from the shared balance, recorded as ``link_out``/``link_in``.
        Raises NotLinked, NoWallet, InsufficientCredits.
        """

    @abstractmethod
    async def linked_identities(self, user: UserRef) -> list[UserRef]:
        """Every identity sharing ``user``'s wallet, the wallet's owner first ([] without one)."""

    async def find_purchase(self, source: str, charge_id: str) -> Purchase | None:
        """The purchase paid by ``charge_id`` on ``source``, with its refund; None if unknown."""
        bought = await self.entry(purchase_key(source, charge_id))
        if bought is None:
            return None
        refund = await self.entry(purchase_refund_key(source, charge_id))
        return Purchase(source, charge_id, bought, refund)


LinkStatus = Literal[
    "linked", "unknown", "expired", "used", "own", "same_platform", "already_linked", "too_many"
]
"""How a ``/link <code>`` ended: ``linked``, or why nothing changed.

``unknown``: no such code; ``expired``: older than its ten minutes; ``used``:
redeemed before; ``own``: the issuer's own account; ``same_platform``: another
account on the issuer's platform; ``already_linked``: either identity already
shares a wallet (with each other or someone else); ``too_many``: the member
entered too many wrong codes in the last hour.
"""


@dataclass(frozen=True, slots=True)
class LinkResult:
    """What redeeming a link code did: ``status``, the other identity, the credits moved."""

    status: LinkStatus
    partner: UserRef | None = None
    moved: int = 0
    moved_held: int = 0


@dataclass(frozen=True, slots=True)
class Unlinked:
    """A pair separated: ``kept`` keeps the shared wallet, ``left`` starts with ``credits``."""

    kept: UserRef
    left: UserRef
    credits: int
    kept_balance: int


def link_id(code_hash: str) -> str:
    """The short id of a link made with the code whose SHA-256 is ``code_hash``."""
    return code_hash[:24]


class RefundRefused(Exception):
    """The platform would not give the payment back; ``reason`` is its own words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PaymentRefunds(ABC):
    """A platform's side of a purchase refund: the money goes back to the member."""

    @abstractmethod
    async def refund(self, user: UserRef, charge_id: str) -> None:
        """Give the payment ``charge_id`` by ``user`` back.

        A payment the platform already gave back counts as done (so a refund
        cut short can simply be run again). Raises :class:`RefundRefused`
        when the platform refuses; network trouble raises what it raises.
        """


class AppState(ABC):
    """Small facts an adapter keeps between runs, by key (e.g. the hash of synced commands)."""

    @abstractmethod
    async def get(self, key: str) -> str | None:
        """The value stored under ``key``, or None."""

    @abstractmethod
    async def put(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``, replacing what was there."""


Route = Literal["chat", "followup", "dm"]
"""How a message reached its member: in the chat where they asked (``chat``), or,
when that chat refused the bot, as a reply to one of their live interactions
(``followup``, Discord) or in their direct messages (``dm``)."""


@dataclass(frozen=True, slots=True)
class Sent:
    """A message an outbox sent: its id (for later edits) and the route it took."""

    message_id: str
    route: Route = "chat"


class Undeliverable(Exception):
    """The platform says no message can reach this member now, and retrying will not help.

    Raised by an outbox when every route it has was refused for a permanent
    reason (the bot may not post in the chat, was blocked, the chat is gone);
    ``reason`` is the platform's own words or code. Network trouble, server
    errors and rate limits are not permanent and raise something else.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Outbox(ABC):
    """Messages the core sends on its own, outside a command's reply: job status and clips.

    Each adapter implements it for its platform; ``bot.jobs.outbox.OutboxRouter``
    picks the right one by the chat's platform. Both ``send`` and ``deliver``
    raise :class:`Undeliverable` when the platform refuses the member for good.
    """

    @abstractmethod
    async def send(self, chat: ChatRef, reply: Reply, locale: str) -> str:
        """Send a new message (with its video, if any); return its id for later edits."""

    async def deliver(self, chat: ChatRef, reply: Reply, locale: str) -> Sent:
        """Send a message the member must get (their clip, or where to find it).

        The same as :meth:`send`, but says by which route it went, so the job
        records how it was delivered. An adapter with routes besides the chat
        itself (Discord: an interaction follow-up, a DM) overrides it.
        """
        return Sent(await self.send(chat, reply, locale))

    @abstractmethod
    async def edit(self, chat: ChatRef, message_id: str, reply: Reply, locale: str) -> None:
        """Replace the text and buttons of a message sent earlier."""

    def fits(self, chat: ChatRef, size_bytes: int) -> bool:
        """Whether a clip this size can be uploaded to ``chat``.

        When it cannot, ``send`` still answers the chat (with a notice in
        place of the clip) and the runner records the delivery as
        ``too_large`` rather than ``uploaded``.
        """
        return True
