"""Chat text and button actions -> commands, with every bad input turned into a UserError.

Adapters on any platform send the raw message text here; nothing in this
module knows where it came from. ``/price@klingbot`` (Telegram's form in
groups) parses like ``/price``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from bot.catalog import DURATIONS
from bot.commands import (
    Balance,
    Buy,
    BuyPack,
    CancelJob,
    CancelQuote,
    ChangeSetting,
    Choose,
    Command,
    CompareTiers,
    Gen,
    Help,
    History,
    ImageInput,
    Jobs,
    Link,
    OtherTier,
    Price,
    Refund,
    RefundPurchase,
    Reroll,
    Resend,
    ShowSettings,
    Start,
    TopUp,
    Unlink,
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
    """Parse a button's action string (``price:10``, ``tier:<quote>:<tier>``, ``cancel:<job>``).

    ``cmp:<quote>:0.2`` names the tiers of a /compare quote by their places in it.
    """
    name, _, argument = action.partition(":")
    if name == "price":
        return Price(_duration(argument))
    if name == "buy" and (pack := _PACK_ACTION.fullmatch(argument)):
        return BuyPack(int(pack.group(1)), int(pack.group(2)))
    if name in ("tier", "tierok") and argument.count(":") == 1:
        quote_id, tier = argument.split(":")
        return Choose(quote_id, tier, confirmed=name == "tierok")
    if name in ("cmp", "cmpok") and (picked := _COMPARE_ACTION.fullmatch(argument)):
        picks = tuple(int(n) for n in picked.group(2).split("."))
        return CompareTiers(picked.group(1), picks, confirmed=name == "cmpok")
    if name == "set" and (setting := _SETTING_ACTION.fullmatch(argument)):
        return ChangeSetting(*setting.groups())
    by_id = {
        "qcancel": CancelQuote,
        "cancel": CancelJob,
        "reroll": Reroll,
        "again": OtherTier,
        "resend": Resend,
    }
    if name in by_id and _ID.fullmatch(argument):
        return by_id[name](argument)
    raise UserError("error.stale_button")


_ID = re.compile(r"[0-9a-f]{4,32}")
_COMPARE_ACTION = re.compile(r"([0-9a-f]{4,32}):([0-9]{1,2}(?:\.[0-9]{1,2}){1,15})")
"""``cmp:<quote>:0.2``: the tiers to compare, as places in the quote's tiers."""
_SETTING_ACTION = re.compile(r"([a-z]{1,8}):([A-Za-z0-9_.-]{1,32}):([A-Za-z0-9_.-]{1,64})")
"""``set:<setting>:<value>:<owner id>`` (values are checked by the handler)."""
_PACK_ACTION = re.compile(r"([0-9]{1,13}):([0-9]{1,6})")
CHARGE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,256}")
"""A payment's charge id (Telegram's ``telegram_payment_charge_id``: ``stx...``)."""

_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "「": "」", "『": "』"}
"""Opening quote -> closing quote, for arguments with spaces (``"my sun.jpg"``)."""

_GEN_OPTIONS = {
    "--duration": "duration",
    "-d": "duration",
    "--negative": "negative",
    "--neg": "negative",
    "-n": "negative",
}
_OPTION_LIKE = re.compile(r"--[A-Za-z][A-Za-z0-9_-]*")
GEN_OPTION_NAMES = "--duration, --negative"
"""How the options of ``/gen`` are named in messages."""


@dataclass(frozen=True, slots=True)
class Word:
    """One argument as typed (``raw``, quotes kept) and as meant (``value``, quotes removed)."""

    raw: str
    value: str


def split_words(text: str) -> list[Word]:
    """Split on whitespace, keeping a quoted stretch (``"a b"``, ``“a b”``) as one word.

    A quote with no closing partner is an ordinary character, so apostrophes
    (``the dog's tail``) never swallow the rest of a prompt. ``--option="a b"``
    keeps its quoted value together too.
    """
    words: list[Word] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start = i
        close = _QUOTES.get(text[i])
        if close is not None and (end := text.find(close, i + 1)) != -1:
            words.append(Word(text[start : end + 1], text[i + 1 : end]))
            i = end + 1
            continue
        while i < n and not text[i].isspace():
            i += 1
        raw = text[start:i]
        name, eq, value = raw.partition("=")
        close = _QUOTES.get(value[:1]) if eq and name.startswith("-") else None
        if close is not None and (end := text.find(close, start + len(name) + 2)) != -1:
            i = end + 1
            raw = text[start:i]
            value = text[start + len(name) + 2 : end]
            words.append(Word(raw, f"{name}={value}"))
            continue
        words.append(Word(raw, raw))
    return words


@dataclass(frozen=True, slots=True)
class GenArguments:
    """``/gen`` arguments with the options taken out: what is left is image and prompt words."""

    duration_s: int | None
    negative: str
    words: tuple[Word, ...]

    def gen(self, image: ImageInput | None, *, skip: int = 0) -> Gen:
        """The command, with the first ``skip`` words (an image argument) left out."""
        return Gen(
            prompt=prompt_of(self.words[skip:]),
            image=image,
            negative=self.negative,
            duration_s=self.duration_s,
        )


def prompt_of(words: tuple[Word, ...]) -> str:
    """The prompt as typed, one space between words.

    A prompt given as one quoted word loses its quotes.
    """
    if len(words) == 1:
        return words[0].value
    return " ".join(word.raw for word in words)


def split_gen(rest: str) -> GenArguments:
    """Take ``--duration``/``-d`` and ``--negative``/``-n`` out of ``/gen``'s text, anywhere.

    ``--name value`` and ``--name=value`` both work; ``--`` ends the options
    (everything after it is prompt). An unknown ``--option``, an option
    without its value, or one given twice is refused with a message naming it.
    """
    found: dict[str, str] = {}
    words = split_words(rest)
    kept: list[Word] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word.raw == "--":
            kept.extend(words[i:])
            break
        name, eq, inline = word.value.partition("=")
        lowered = name.lower()
        if lowered not in _GEN_OPTIONS:
            if _OPTION_LIKE.fullmatch(name) and word.raw == word.value:
                raise UserError("error.unknown_option", option=name[:32], known=GEN_OPTION_NAMES)
            kept.append(word)
            continue
        option = _GEN_OPTIONS[lowered]
        if eq:
            value = inline
        elif i < len(words) and not _is_option(words[i]):
            value = words[i].value
            i += 1
        else:
            raise UserError("error.option_value", option=name)
        if option in found:
            raise UserError("error.option_twice", option=name)
        found[option] = value
    duration = None
    if "duration" in found:
        duration = _gen_duration(found["duration"])
    return GenArguments(duration, found.get("negative", ""), tuple(kept))


def _is_option(word: Word) -> bool:
    return word.raw == word.value and word.value.partition("=")[0].lower() in _GEN_OPTIONS


def parse_gen(rest: str, image: ImageInput | None = None) -> Gen:
    """The text after ``/gen``: options anywhere, the rest is the prompt.

    Options are ``--duration 5|10`` and ``--negative "..."``. The image, if
    any, came separately (a photo's caption, or a console path the adapter
    already read). Prompt checks happen in the handler.
    """
    return split_gen(rest).gen(image)


def parse_compare(rest: str, image: ImageInput | None = None) -> Gen:
    """The text after ``/compare``: as ``/gen``'s, quoting the tiers to run side by side."""
    return replace(parse_gen(rest, image), compare=True)


def _gen_duration(text: str) -> int:
    value = text.lower().removesuffix("s").strip()
    if not _DIGITS.fullmatch(value) or int(value) not in DURATIONS:
        raise UserError("error.gen_duration", value=text[:16])
    return int(value)


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
    value = rest.split()[0]
    if not _DIGITS.fullmatch(value.lstrip("+-")):
        raise UserError("error.history_not_number", value=value[:24], low=1, high=HISTORY_MAX)
    return History(_count(value, low=1, high=HISTORY_MAX, error="error.history_count"))


def _jobs(rest: str) -> Command:
    return Jobs(rest.split()[0] if rest else None)


def _refund(rest: str) -> Command:
    """``/refund <job> [reason]``, or ``/refund <charge id> [reason] [force]``.

    A job id is 4 to 32 hex digits; anything else that reads as a charge id
    (Telegram's start with ``stx``) names a payment.
    """
    parts = rest.split(maxsplit=1)
    if not parts:
        raise UserError("error.refund_usage")
    reason = parts[1] if len(parts) > 1 else ""
    if _ID.fullmatch(parts[0].lower()):
        if len(reason) > MAX_REASON:
            raise UserError("error.reason_too_long", limit=MAX_REASON)
        return Refund(parts[0].lower(), reason)
    if not CHARGE_ID.fullmatch(parts[0]):
        raise UserError("error.refund_usage")
    words = reason.split()
    force = bool(words) and words[-1].lower() == "force"
    if force:
        reason = reason[: reason.lower().rfind("force")].strip()
    if len(reason) > MAX_REASON:
        raise UserError("error.reason_too_long", limit=MAX_REASON)
    return RefundPurchase(parts[0], reason, force)


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


_LINK_CODE = re.compile(r"[A-Za-z0-9 -]{1,40}")


def _link(rest: str) -> Command:
    """``/link`` or ``/link <code>`` (any case; spaces and dashes ignored)."""
    if not rest:
        return Link()
    if not _LINK_CODE.fullmatch(rest):
        raise UserError("link.unknown")
    return Link(rest.replace(" ", "").replace("-", "").upper())


def _unlink(rest: str) -> Command:
    """``/unlink <user> [credits]``."""
    parts = rest.split()
    if not parts or len(parts) > 2:
        raise UserError("link.unlink_usage")
    credits = 0
    if len(parts) == 2:
        amount = parts[1]
        if not _DIGITS.fullmatch(amount):
            raise UserError("error.amount_not_number", value=amount[:24])
        if len(amount) > MAX_AMOUNT_DIGITS:
            raise UserError("error.amount_too_large", value=amount[:24])
        credits = int(amount)
    return Unlink(parts[0], credits)


_PARSERS: dict[str, Callable[[str], Command]] = {
    "price": _price,
    "prices": _price,
    "balance": _balance,
    "history": _history,
    "topup": _topup,
    "gen": parse_gen,
    "compare": parse_compare,
    "settings": lambda _rest: ShowSettings(),
    "jobs": _jobs,
    "refund": _refund,
    "buy": lambda _: Buy(),
    "link": _link,
    "unlink": _unlink,
    "help": lambda _: Help(),
    "start": lambda _: Start(),
}
