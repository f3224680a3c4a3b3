"""Errors the core turns into a user message, routed by type in one place (:mod:`bot.service`)."""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """Something the user can fix; ``key`` and ``params`` name the translated message."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


class NotModerator(UserError):
    """The command is for moderators only."""

    def __init__(self) -> None:
        super().__init__("error.not_moderator")


class UnknownUser(UserError):
    """No user by that name or id has talked to the bot yet."""

    def __init__(self, query: str) -> None:
        super().__init__("error.unknown_user", query=query)


class InsufficientCredits(Exception):
    """A hold was refused: the wallet has ``balance`` credits, the hold needed ``needed``."""

    def __init__(self, balance: int, needed: int) -> None:
        super().__init__(f"balance {balance} < {needed}")
        self.balance = balance
        self.needed = needed


class PurchaseSpent(InsufficientCredits):
    """A purchase refund was refused: the balance no longer covers the credits bought.

    ``balance`` is what the wallet can spend, ``needed`` what the purchase
    brought (the rest was spent, or is held by a job).
    """


class UnknownPurchase(Exception):
    """No purchase in the ledger has that payment (source and charge id)."""


class NotLinked(Exception):
    """The identity shares its wallet with no other identity."""


class NoWallet(Exception):
    """The user has no wallet yet (they never used the bot)."""


class StorageUnavailable(Exception):
    """The database cannot be opened or written: read-only, locked, or not a database."""
