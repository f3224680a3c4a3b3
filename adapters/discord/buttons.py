"""Buttons that survive restarts: one ``DynamicItem`` whose ``custom_id`` is the core's action.

A button's ``custom_id`` is ``kb:`` followed by the core's action string
(``tier:<quote>:<tier>``, ``qcancel:<quote>``, ``cancel:<job>``,
``reroll:<job>``, ``again:<job>``, ``price:10``), well under Discord's 100
characters; the quote or job itself stays in the database. An action
``sku:<id>`` (``/buy``'s packs) becomes Discord's premium button for that
SKU instead: Discord draws its name and price and runs the checkout itself,
so it has no ``custom_id`` and its press never reaches the bot. The client
registers :class:`ActionButton` with ``add_dynamic_items``, so a press on a
message sent before a restart is still understood: discord.py matches the
``custom_id`` against the template and rebuilds the button from it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import discord

log = logging.getLogger(__name__)

PREFIX = "kb:"
MAX_CUSTOM_ID = 100
MAX_LABEL = 80
ROW_WIDTH = 5
ROWS = 5
SHORT_LABEL = 16
"""Buttons whose labels are all this short share rows (Reroll, Other tier)."""

_STYLES = {
    "tier": discord.ButtonStyle.primary,
    "reroll": discord.ButtonStyle.primary,
}


TEMPLATE = re.compile(re.escape(PREFIX) + r"(?P<action>[a-z]+:[A-Za-z0-9_:.-]{1,90})")


class ActionButton(discord.ui.DynamicItem[discord.ui.Button], template=TEMPLATE):
    """A button that hands the core's action string back to the adapter when pressed."""

    def __init__(self, label: str, action: str, *, row: int | None = None) -> None:
        name = action.partition(":")[0]
        super().__init__(
            discord.ui.Button(
                label=label[:MAX_LABEL] or "…",
                style=_STYLES.get(name, discord.ButtonStyle.secondary),
                custom_id=PREFIX + action,
                row=row,
            )
        )
        self.action = action

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ActionButton:
        """Rebuild the pressed button from its ``custom_id`` (after a restart too)."""
        label = getattr(item, "label", None) or ""
        return cls(label, match["action"])

    async def callback(self, interaction: discord.Interaction) -> None:
        """Run the action through the adapter's button handler (which reports its own errors)."""
        handlers = getattr(interaction.client, "klingbot_handlers", None)
        if handlers is None:
            log.warning("button %s pressed on a client without klingbot handlers", self.action)
            return
        await handlers.on_button(interaction, self.action)


SKU_ACTION = re.compile(r"sku:(?P<sku>[0-9]{1,20})")
"""A premium button for a SKU (see :data:`bot.skus.BUTTON_ACTION`)."""


def premium_button(sku_id: str, *, row: int | None = None) -> discord.ui.Button:
    """Discord's button to buy ``sku_id``: no label or ``custom_id`` (Discord draws it)."""
    return discord.ui.Button(style=discord.ButtonStyle.premium, sku_id=int(sku_id), row=row)


def fits(action: str) -> bool:
    """The action fits in a ``custom_id`` and matches the template (or names a SKU)."""
    if SKU_ACTION.fullmatch(action):
        return True
    custom_id = PREFIX + action
    return len(custom_id) <= MAX_CUSTOM_ID and TEMPLATE.fullmatch(custom_id) is not None


class StaticView(discord.ui.View):
    """A view discord.py only serializes: its buttons are dispatched by the client's template.

    Every button is an :class:`ActionButton`, which the client registered
    with ``add_dynamic_items``, so discord.py finds the handler of a press
    from its ``custom_id`` alone. Reporting the view as finished tells
    discord.py not to keep it in its view store, where each ephemeral reply
    would otherwise start a 15-minute timeout task, and lets one view object
    be sent with any number of messages.
    """

    def __init__(self) -> None:
        super().__init__(timeout=None)
        self._components: list[dict[str, Any]] | None = None

    def is_finished(self) -> bool:
        """Always: nothing listens on this view itself."""
        return True

    def to_components(self) -> list[dict[str, Any]]:
        """The buttons as Discord's JSON, worked out once (the view never changes once sent)."""
        if self._components is None:
            self._components = super().to_components()
        return self._components


VIEWS_KEPT = 512
"""Views :func:`make_view` keeps for buttons seen before (price tables, help)."""

_views: dict[tuple[tuple[str, str], ...], StaticView | None] = {}


def make_view(buttons: tuple[tuple[str, str], ...]) -> discord.ui.View | None:
    """The buttons as a persistent view: short labels side by side, long ones one per row.

    Views are kept by their buttons (labels and actions), so a reply every
    member gets alike, such as the price table's "Show 10 s prices", builds
    its view once.
    """
    if not buttons:
        return None
    view = _views.get(buttons)
    if view is None and buttons not in _views:
        view = _build_view(buttons)
        if len(_views) >= VIEWS_KEPT:
            _views.clear()
        _views[buttons] = view
    return view


def _build_view(buttons: tuple[tuple[str, str], ...]) -> StaticView | None:
    usable = []
    for label, action in buttons:
        if not fits(action):
            log.error("button %r dropped: its action %r does not fit a custom_id", label, action)
            continue
        usable.append((label, action))
    if not usable:
        return None
    short = all(len(label) <= SHORT_LABEL for label, _ in usable)
    one_per_row = not short and len(usable) <= ROWS
    view = StaticView()
    for index, (label, action) in enumerate(usable[: ROW_WIDTH * ROWS]):
        row = index if one_per_row else None
        sku = SKU_ACTION.fullmatch(action)
        if sku is not None:
            view.add_item(premium_button(sku["sku"], row=row))
        else:
            view.add_item(ActionButton(label, action, row=row))
    return view
