"""``/settings``: a member's personal defaults, shown and changed with buttons; and their use.

What a member may choose (stored per wallet by :class:`~bot.preferences.PreferenceStore`):

- a tier to preselect: quotes list it first and mark it;
- a clip length (5 or 10 s): ``/gen`` quotes it unless the command names one;
- a language (English, Chinese, or the platform's): every reply and status
  message to the member is in it (:func:`localized`, applied by
  :mod:`bot.service` to every command and button press);
- a threshold: a tier press that would hold more credits than this first
  shows a confirm button, and holds nothing until it is pressed.

:func:`member_defaults` is what ``/gen``, ``/compare`` and others read.
Each settings button carries its owner's id, so a member who presses the
settings message of someone else in a group changes nothing; a button whose
data is stale or forged is refused with a message, and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bot.catalog import BASE_DURATION
from bot.commands import Caller, ChangeSetting, ShowSettings
from bot.deps import Deps
from bot.errors import UserError
from bot.preferences import (
    CONFIRM_CHOICES,
    DURATION_CHOICES,
    LOCALE_CHOICES,
    NONE,
    Field,
    Preferences,
    PreferenceStore,
)
from bot.replies import Button, Money, Reply, Text, TierName, text

log = logging.getLogger(__name__)

UNSET = "none"
"""A button's value for "no tier in particular", "the platform's language", "never ask"."""

_FIELDS: dict[str, Field] = {
    "tier": "tier",
    "dur": "duration_s",
    "lang": "locale",
    "ask": "confirm_above",
}
"""Action word -> setting (``set:<word>:<value>:<owner id>``)."""

_LANGUAGE_NAMES = {"en": text("settings.language_en"), "zh-CN": text("settings.language_zh")}
"""Each language by its own name."""


@dataclass(frozen=True, slots=True)
class Defaults:
    """A member's defaults, resolved: what /gen, /compare and a tier press use."""

    duration_s: int = BASE_DURATION
    """The clip length to quote when the command names none."""
    tier: str | None = None
    """A tier of the catalog to preselect (list first, mark), or None."""
    confirm_above: int | None = None
    """Ask before a press that holds more than this many credits; None: never ask."""
    locale: str | None = None
    """The member's language, overriding the platform's; None: the platform's."""

    def asks_before(self, credits: int) -> bool:
        """A press holding ``credits`` must be confirmed first."""
        return self.confirm_above is not None and credits > self.confirm_above

    def ordered(self, tiers: Sequence[str]) -> tuple[str, ...]:
        """``tiers`` with the preselected one first (the others in their order)."""
        return tuple(sorted(tiers, key=lambda key: key != self.tier))


async def preferences_of(deps: Deps, caller_or_user: Caller | object) -> Preferences:
    """The stored settings of a member (none without a store)."""
    if deps.preferences is None:
        return NONE
    user = caller_or_user.user if isinstance(caller_or_user, Caller) else caller_or_user
    return await deps.preferences.get(user)  # type: ignore[arg-type]


def resolve(deps: Deps, preferences: Preferences) -> Defaults:
    """Stored settings as defaults the catalog can use (a tier it no longer has: none)."""
    keys = {tier.key for tier in deps.catalog.tiers}
    return Defaults(
        duration_s=preferences.duration_s or BASE_DURATION,
        tier=preferences.tier if preferences.tier in keys else None,
        confirm_above=preferences.confirm_above,
        locale=preferences.locale,
    )


async def member_defaults(deps: Deps, user: object) -> Defaults:
    """The defaults of ``user`` (a :class:`~bot.commands.UserRef` or a Caller), ready to use."""
    return resolve(deps, await preferences_of(deps, user))


async def localized(caller: Caller, deps: Deps) -> Caller:
    """``caller`` speaking the language they chose, if any (the platform's kept aside).

    A failure to read the settings is logged and the platform's language
    used: the command itself then meets the same trouble and says so.
    """
    if deps.preferences is None:
        return caller
    try:
        chosen = (await deps.preferences.get(caller.user)).locale
    except Exception as error:  # never let a language lookup lose the answer itself
        log.warning("the settings of %s could not be read: %s", caller.user, error)
        return caller
    if chosen is None or chosen == caller.locale:
        return caller
    return replace(caller, locale=chosen, platform_locale=caller.locale)


# --- /settings -----------------------------------------------------------------


def _store(deps: Deps) -> PreferenceStore:
    if deps.preferences is None:
        raise UserError("settings.unavailable")
    return deps.preferences


async def show_settings(
    command: ShowSettings, caller: Caller, deps: Deps, _request_id: str | None
) -> list[Reply]:
    """The member's settings, with a button for every choice."""
    preferences = await _store(deps).get(caller.user)
    return [_settings_reply(preferences, caller, deps, edit=False)]


async def change_setting(
    command: ChangeSetting, caller: Caller, deps: Deps, _request_id: str | None
) -> list[Reply]:
    """A settings button: store the choice, then show the settings again in place."""
    store = _store(deps)
    field = _FIELDS.get(command.field)
    if field is None:
        raise UserError("error.stale_button")
    if command.owner != caller.user.id:
        return [Reply((text("settings.not_yours"),), private=True)]
    value = _value(field, command.value, deps)
    preferences = await store.change(caller.user, field, value, now=deps.clock.now())
    reply = _settings_reply(preferences, caller, deps, edit=True)
    if field == "locale":
        # The answer to this very press is in the language just chosen.
        reply = replace(reply, locale=preferences.locale or caller.platform_locale or caller.locale)
    return [reply]


def _value(field: Field, raw: str, deps: Deps) -> str | int | None:
    """The value a button names, if it is one the settings offer; else a refusal."""
    if raw == UNSET:
        return None
    if field == "tier" and raw in {tier.key for tier in deps.catalog.tiers}:
        return raw
    if field == "duration_s" and raw.isdigit() and int(raw) in DURATION_CHOICES:
        return int(raw)
    if field == "locale" and raw in LOCALE_CHOICES:
        return raw
    if field == "confirm_above" and raw.isdigit() and int(raw) in CONFIRM_CHOICES:
        return int(raw)
    raise UserError("settings.bad_choice")


def _settings_reply(preferences: Preferences, caller: Caller, deps: Deps, *, edit: bool) -> Reply:
    defaults = resolve(deps, preferences)
    tiers = {tier.key: tier for tier in deps.catalog.tiers}
    owner = caller.user.id

    def button(label: Text, word: str, value: str, chosen: bool) -> Button:
        shown = text("settings.chosen", label=label) if chosen else label
        return Button(shown, f"set:{word}:{value}:{owner}")

    tier_name: Text | TierName = (
        text("settings.tier_none") if defaults.tier is None else TierName(tiers[defaults.tier])
    )
    language = (
        text("settings.language_platform")
        if preferences.locale is None
        else _LANGUAGE_NAMES[preferences.locale]
    )
    ask = (
        text("settings.ask_never")
        if preferences.confirm_above is None
        else text("settings.ask_above", money=deps.money(preferences.confirm_above))
    )
    lines = (
        text("settings.header"),
        text("settings.tier", tier=tier_name),
        text("settings.duration", duration=defaults.duration_s),
        text("settings.language", language=language),
        text("settings.ask", ask=ask),
        text("settings.help"),
    )
    buttons = [
        button(text("settings.tier_button", tier=TierName(tier)), "tier", key, key == defaults.tier)
        for key, tier in tiers.items()
    ]
    buttons.append(button(text("settings.tier_none"), "tier", UNSET, defaults.tier is None))
    buttons.extend(
        button(
            text("settings.duration_button", duration=seconds),
            "dur",
            str(seconds),
            seconds == defaults.duration_s,
        )
        for seconds in DURATION_CHOICES
    )
    buttons.extend(
        button(
            _LANGUAGE_NAMES[locale],
            "lang",
            locale,
            locale == preferences.locale,
        )
        for locale in LOCALE_CHOICES
    )
    buttons.append(
        button(text("settings.language_platform"), "lang", UNSET, preferences.locale is None)
    )
    never = preferences.confirm_above is None
    buttons.append(button(text("settings.ask_never"), "ask", UNSET, never))
    buttons.extend(
        button(
            text("settings.ask_button", credits=limit),
            "ask",
            str(limit),
            limit == preferences.confirm_above,
        )
        for limit in CONFIRM_CHOICES
    )
    return Reply(lines, buttons=tuple(buttons), edit=edit)


def confirm_reply(quote_id: str, tier: TierName, price: Money, limit: Money) -> Reply:
    """Asked before a press over the member's threshold: nothing is held until confirmed."""
    return Reply(
        (text("quote.confirm", tier=tier, money=price, limit=limit),),
        buttons=(
            Button(
                text("quote.confirm_button", tier=tier, money=price),
                f"tierok:{quote_id}:{tier.tier.key}",
            ),
        ),
    )
