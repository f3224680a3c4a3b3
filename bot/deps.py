"""What the handlers depend on, built once by :mod:`app.bootstrap` and passed to every call."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.catalog import Catalog
from bot.clock import Clock
from bot.commands import UserRef
from bot.inputs import FileInputStore, InputStore
from bot.jobs.outbox import OutboxRouter
from bot.jobs.runner import JobRunner
from bot.jobs.store import JobStore
from bot.jobs.waits import ExpectedWaits
from bot.metrics import Metrics, NullMetrics
from bot.pacing import ChatPace
from bot.packs import Pack
from bot.ports import AppState, Ledger, PaymentRefunds
from bot.preferences import PreferenceStore
from bot.replies import Money
from bot.roles import Roles, SoleRoles
from bot.skus import SkuPack


@dataclass(frozen=True)
class Generation:
    """The /gen side: quotes and jobs, the runner, and where input images are kept."""

    store: JobStore
    runner: JobRunner
    waits: ExpectedWaits
    outboxes: OutboxRouter
    inputs_dir: Path
    quote_ttl_s: int = 600
    blocked_words: tuple[str, ...] = ()
    max_open_quotes: int = 5
    """Open quotes per member; a new one retires the oldest and removes its image."""
    quotes_per_minute: int = 5
    """Quote requests per member in any minute; past it, "slow down" (nothing stored)."""
    inputs: InputStore = None  # type: ignore[assignment]
    """Where the members' images are kept (default: files in ``inputs_dir``)."""

    def __post_init__(self) -> None:
        if self.inputs is None:
            object.__setattr__(self, "inputs", FileInputStore(self.inputs_dir))


@dataclass(frozen=True)
class Deps:
    """Everything the handlers need."""

    catalog: Catalog
    ledger: Ledger
    clock: Clock
    moderators: frozenset[UserRef] = frozenset()
    max_topup: int = 100_000
    welcome_credits: int = 0
    generation: Generation | None = None
    new_id: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)
    state: AppState | None = None
    """Adapters' small key/value facts kept between runs (None: nothing is kept)."""
    metrics: Metrics = field(default_factory=NullMetrics)
    """Where handled commands and tier presses are counted (``app.metrics``); no-op by default."""
    pace: ChatPace | None = None
    """Per-chat pacing shared with other replicas (``bot.pacing``); None: this process is
    the only one sending, and the adapters' own pacing is all there is."""
    roles: Roles = field(default_factory=SoleRoles)
    """What one replica at a time does (:mod:`bot.roles`); all held by the one SQLite runner."""
    stars_packs: tuple[Pack, ...] = ()
    """The credit packs on sale for Telegram Stars (``TELEGRAM_STARS_PACKS``); none: no sales."""
    refunds: dict[str, PaymentRefunds] = field(default_factory=dict)
    """Who gives payments back, by ledger source (``telegram``): each adapter that takes
    payments registers itself here when it starts."""
    preferences: PreferenceStore | None = None
    """Members' personal defaults (``/settings``); None: nobody has any, /settings is off."""
    sku_packs: tuple[SkuPack, ...] = ()
    """Discord's consumable SKUs and the credits each buys (``DISCORD_SKU_CREDITS``);
    none: no purchases on Discord."""

    def money(self, credits: int) -> Money:
        """Credits with their yuan value, ready for a message."""
        return Money.of(self.catalog, credits)
