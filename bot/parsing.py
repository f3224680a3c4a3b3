"""Chat text and button actions -> commands, with every bad input turned into a UserError.

Adapters on any platform send the raw message text here; nothing in this
module knows where it came from. ``/price@klingbot`` (Telegram's form in
groups) parses like ``/price``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from bot.catalog import DURATIONS
from bot.commands import (
    Balance,
    CancelJob,
    CancelQuote,
    Choose,
    Command,
    Gen,
    Help,
    History,
    ImageInput,
    Jobs,
    OtherTier,
    Price,
    Refund,
    Reroll,
    Start,
    TopUp,
)
from bot.errors import UserError
from bot.text import clean_text

MAX_LINE = 4096
"""Longest message accepted (Telegram's own limit)."""

MAX_REASON = 200
"""Longest top-up reason kept in the ledger."""

HISTORY_MAX = 50
"""Most ledger entries ``/history`` shows at once."""

MAX_AMOUNT_DIGITS = 18
"""Amounts with more digits are refused before conversion (int64 holds 18 for sure)."""

_DIGITS = re.compile(r"[0-9]+")


def parse_command(line: str) -> Command:
    """Parse one chat message; raise UserError with a translatable reason."""
    if len(line) > MAX_LINE:
        raise UserError("error.too_long", limit=MAX_LINE)
    line = clean_text(line)
    if not line:
        raise UserError("error.empty")
    if not line.startswith("/"):
        raise UserError("error.not_a_command")
    head, _, rest = line[1:].partition(" ")
    name = head.split("@", 1)[0].lower()
    parser = _PARSERS.get(name)
    if parser is None:
        raise UserError("error.unknown_command", command=f"/{name[:32]}")
    return parser(rest.strip())


def parse_action(action: str) -> Command:
    """Parse a button's action string (``price:10``, ``tier:<quote>:<tier>``, ``cancel:<job>``)."""
    name, _, argument = action.partition(":")
    if name == "price":
        return Price(_duration(argument))
    if name == "tier" and argument.count(":") == 1:
        quote_id, tier = argument.split(":")
        return Choose(quote_id, tier)
    by_id = {"qcancel": CancelQuote, "cancel": CancelJob, "reroll": Reroll, "again": OtherTier}
    if name in by_id and _ID.fullmatch(argument):
        return by_id[name](argument)
    raise UserError("error.stale_button")


_ID = re.compile(r"[0-9a-f]{4,32}")
_DURATION_FLAG = re.compile(r"(?:^|\s)(?:--duration|-d)(?:\s*=\s*|\s+)(\S+)")
_NEGATIVE_FLAG = re.compile(
    r"""(?:^|\s)(?:--negative|--neg|-n)(?:\s*=\s*|\s+)(?:"([^"]*)"|'([^']*)'|“([^”]*)”|(\S+))"""
)


def parse_gen(rest: str, image: ImageInput | None = None) -> Gen:
    """The text after ``/gen``: ``[--duration 5|10] [--negative "..."] prompt``.

    The image, if any, came separately (a photo's caption, or a console path
    the adapter already read). Prompt checks happen in the handler.
    """
    duration = 5
    if match := _DURATION_FLAG.search(rest):
        duration = _duration(match.group(1))
        rest = rest[: match.start()] + " " + rest[match.end() :]
    negative = ""
    if match := _NEGATIVE_FLAG.search(rest):
        negative = next(group for group in match.groups() if group is not None)
        rest = rest[: match.start()] + " " + rest[match.end() :]
    return Gen(prompt=" ".join(rest.split()), image=image, negative=negative, duration_s=duration)


def _duration(text: str) -> int:
    value = text.lower().removesuffix("s").strip()
    if not _DIGITS.fullmatch(value) or int(value) not in DURATIONS:
        raise UserError("error.duration", value=text[:16])
    return int(value)


def _count(text: str, *, low: int, high: int, error: str) -> int:
    if not _DIGITS.fullmatch(text) or len(text) > MAX_AMOUNT_DIGITS or not low <= int(text) <= high:
        raise UserError(error, value=text[:24], low=low, high=high)
    return int(text)


def _price(rest: str) -> Command:
    return Price(_duration(rest.split()[0]) if rest else None)


def _balance(rest: str) -> Command:
    return Balance(rest.split()[0] if rest else None)


def _history(rest: str) -> Command:
    if not rest:
        return History()
    return History(_count(rest.split()[0], low=1, high=HISTORY_MAX, error="error.history_count"))


def _jobs(rest: str) -> Command:
    return Jobs(rest.split()[0] if rest else None)


def _refund(rest: str) -> Command:
    parts = rest.split(maxsplit=1)
    if not parts or not _ID.fullmatch(parts[0].lower()):
        raise UserError("error.refund_usage")
    reason = parts[1] if len(parts) > 1 else ""
    if len(reason) > MAX_REASON:
        raise UserError("error.reason_too_long", limit=MAX_REASON)
    return Refund(parts[0].lower(), reason)


def _topup(rest: str) -> Command:
    parts = rest.split(maxsplit=2)
    if len(parts) < 2:
        raise UserError("error.topup_usage")
    target, amount = parts[0], parts[1]
    if amount.startswith("-") or amount == "0" or (_DIGITS.fullmatch(amount) and int(amount) == 0):
        raise UserError("error.amount_positive", value=amount[:24])
    if not _DIGITS.fullmatch(amount):
        raise UserError("error.amount_not_number", value=amount[:24])
    if len(amount) > MAX_AMOUNT_DIGITS:
        raise UserError("error.amount_too_large", value=amount[:24])
    reason = parts[2] if len(parts) > 2 else ""
    if len(reason) > MAX_REASON:
        raise UserError("error.reason_too_long", limit=MAX_REASON)
    return TopUp(target=target, credits=int(amount), reason=reason)


_PARSERS: dict[str, Callable[[str], Command]] = {
    "price": _price,
    "prices": _price,
    "balance": _balance,
    "history": _history,
    "topup": _topup,
    "gen": parse_gen,
    "jobs": _jobs,
    "refund": _refund,
    "help": lambda _: Help(),
    "start": lambda _: Start(),
}
