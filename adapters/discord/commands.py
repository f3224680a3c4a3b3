"""The slash commands: localized in English and Chinese, synced only when they change.

Names, descriptions, option names and choices are ``locale_str`` values
whose English text comes from the ``[discord]`` table of ``bot/i18n/en.toml``
and whose ``key`` extra names the same message in ``zh-CN.toml``;
:class:`CatalogTranslator` hands Discord the Chinese ones (for every ``zh``
locale, as replies do). Each callback turns its options into the command's
text and leaves the rest to :class:`~adapters.discord.handlers.Handlers`.

Discord allows 200 command creations a day per server, so commands are
synced only when their definitions change: :func:`sync_commands` hashes the
exact payload it would send for each scope (each of ``DISCORD_GUILD_IDS``,
or global) and compares it with the hash stored in the database after the
last successful sync.

The moderator commands carry no ``default_member_permissions``: a moderator
listed as ``discord:<id>`` may hold no permission in the server, so the core
refuses non-moderators, privately, instead.
"""

import hashlib
import json
import logging
from typing import Any

import discord
from discord import app_commands

from adapters.discord.handlers import Handlers
from adapters.discord.render import translator
from bot.i18n import DEFAULT_LOCALE, resolve_locale
from bot.parsing import HISTORY_MAX
from bot.ports import AppState
from bot.replies import text

log = logging.getLogger(__name__)


def label(key: str) -> app_commands.locale_str:
    """``discord.<key>``: English text, with the key for the translator."""
    full = f"discord.{key}"
    return app_commands.locale_str(translator(DEFAULT_LOCALE)(text(full)), key=full)


class CatalogTranslator(app_commands.Translator):
    """Command names and descriptions from the bot's catalogs, for Discord's Chinese locales."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        """The Chinese text of a labelled string; None (Discord shows English) otherwise."""
        key = string.extras.get("key")
        catalog = resolve_locale(locale.value)
        if key is None or catalog == DEFAULT_LOCALE:
            return None
        return translator(catalog)(text(key))


DURATIONS = [
    app_commands.Choice(name=label("choice_5"), value=5),
    app_commands.Choice(name=label("choice_10"), value=10),
]
SCOPES = [app_commands.Choice(name=label("choice_all"), value="all")]
"""``/jobs scope:all``: everyone's jobs, for moderators (the core refuses others)."""


def _someone(interaction: discord.Interaction, user: discord.User | None) -> str:
    """The target word of /balance and /jobs: nothing for oneself, else ``discord:<id>``."""
    if user is None or user.id == interaction.user.id:
        return ""
    return f" discord:{user.id}"


def build_commands(handlers: Handlers) -> list[app_commands.Command[Any, Any, None]]:
    """Every slash command, bound to ``handlers``."""

    @app_commands.command(name=label("name_gen"), description=label("gen"))
    @app_commands.rename(
        prompt=label("name_gen_prompt"),
        image=label("name_gen_image"),
        duration=label("name_gen_duration"),
        negative=label("name_gen_negative"),
    )
    @app_commands.describe(
        prompt=label("gen_prompt"),
        image=label("gen_image"),
        duration=label("gen_duration"),
        negative=label("gen_negative"),
    )
    @app_commands.choices(duration=DURATIONS)
    async def gen(
        interaction: discord.Interaction,
        prompt: str,
        image: discord.Attachment | None = None,
        duration: int | None = None,
        negative: str | None = None,
    ) -> None:
        await handlers.gen(interaction, prompt, image, duration, negative)

    @app_commands.command(name=label("name_compare"), description=label("compare"))
    @app_commands.rename(
        prompt=label("name_gen_prompt"),
        image=label("name_gen_image"),
        duration=label("name_gen_duration"),
    )
    @app_commands.describe(
        prompt=label("gen_prompt"), image=label("gen_image"), duration=label("gen_duration")
    )
    @app_commands.choices(duration=DURATIONS)
    async def compare(
        interaction: discord.Interaction,
        prompt: str,
        image: discord.Attachment | None = None,
        duration: int | None = None,
    ) -> None:
        await handlers.gen(interaction, prompt, image, duration, None, compare=True)

    @app_commands.command(name=label("name_price"), description=label("price"))
    @app_commands.rename(duration=label("name_price_duration"))
    @app_commands.describe(duration=label("price_duration"))
    @app_commands.choices(duration=DURATIONS)
    async def price(interaction: discord.Interaction, duration: int | None = None) -> None:
        await handlers.price(interaction, duration)

    @app_commands.command(name=label("name_balance"), description=label("balance"))
    @app_commands.rename(user=label("name_balance_user"))
    @app_commands.describe(user=label("balance_user"))
    async def balance(interaction: discord.Interaction, user: discord.User | None = None) -> None:
        await handlers.command(interaction, "/balance" + _someone(interaction, user))

    @app_commands.command(name=label("name_history"), description=label("history"))
    @app_commands.rename(n=label("name_history_n"))
    @app_commands.describe(n=label("history_n"))
    async def history(
        interaction: discord.Interaction,
        n: app_commands.Range[int, 1, HISTORY_MAX] | None = None,
    ) -> None:
        await handlers.command(interaction, f"/history {n}" if n else "/history")

    @app_commands.command(name=label("name_jobs"), description=label("jobs"))
    @app_commands.rename(user=label("name_jobs_user"), scope=label("name_jobs_scope"))
    @app_commands.describe(user=label("jobs_user"), scope=label("jobs_scope"))
    @app_commands.choices(scope=SCOPES)
    async def jobs(
        interaction: discord.Interaction,
        user: discord.User | None = None,
        scope: str | None = None,
    ) -> None:
        target = " all" if scope == "all" else _someone(interaction, user)
        await handlers.command(interaction, "/jobs" + target)

    @app_commands.command(name=label("name_topup"), description=label("topup"))
    @app_commands.rename(
        user=label("name_topup_user"),
        credits=label("name_topup_credits"),
        reason=label("name_topup_reason"),
    )
    @app_commands.describe(
        user=label("topup_user"), credits=label("topup_credits"), reason=label("topup_reason")
    )
    async def topup(
        interaction: discord.Interaction,
        user: discord.User,
        credits: app_commands.Range[int, 1, None],
        reason: str | None = None,
    ) -> None:
        line = f"/topup discord:{user.id} {credits} {reason or ''}".rstrip()
        await handlers.command(interaction, line)

    @app_commands.command(name=label("name_refund"), description=label("refund"))
    @app_commands.rename(job=label("name_refund_job"), reason=label("name_refund_reason"))
    @app_commands.describe(job=label("refund_job"), reason=label("refund_reason"))
    async def refund(interaction: discord.Interaction, job: str, reason: str | None = None) -> None:
        await handlers.command(interaction, f"/refund {job.strip()} {reason or ''}".rstrip())

    @app_commands.command(name=label("name_buy"), description=label("buy"))
    async def buy(interaction: discord.Interaction) -> None:
        await handlers.buy(interaction)

    @app_commands.command(name=label("name_link"), description=label("link"))
    @app_commands.rename(code=label("name_link_code"))
    @app_commands.describe(code=label("link_code"))
    async def link(
        interaction: discord.Interaction,
        code: app_commands.Range[str, 1, 40] | None = None,
    ) -> None:
        await handlers.command(interaction, f"/link {code.strip()}" if code else "/link")

    @app_commands.command(name=label("name_unlink"), description=label("unlink"))
    @app_commands.rename(user=label("name_unlink_user"), credits=label("name_unlink_credits"))
    @app_commands.describe(user=label("unlink_user"), credits=label("unlink_credits"))
    async def unlink(
        interaction: discord.Interaction,
        user: discord.User,
        credits: app_commands.Range[int, 0, None] | None = None,
    ) -> None:
        await handlers.command(interaction, f"/unlink discord:{user.id} {credits or 0}")
    @app_commands.command(name=label("name_settings"), description=label("settings"))
    async def settings(interaction: discord.Interaction) -> None:
        await handlers.command(interaction, "/settings")

    @app_commands.command(name=label("name_help"), description=label("help"))
    async def help_(interaction: discord.Interaction) -> None:
        await handlers.command(interaction, "/help")

    return [gen, compare, price, balance, history, jobs, topup, refund, buy, link, unlink, settings,
            help_]


def _digest(payload: list[dict[str, Any]]) -> str:
    encoded = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


async def sync_commands(
    tree: app_commands.CommandTree, state: AppState | None, guild_ids: tuple[int, ...]
) -> list[str]:
    """Sync each scope whose definitions changed since the last sync; return the scopes synced.

    With ``guild_ids`` the commands go to those servers only (updates show at
    once) and global commands are left alone; without, they are global.
    """
    client = tree.client
    scopes: list[discord.Object | None] = [discord.Object(g) for g in guild_ids] or [None]
    synced = []
    for guild in scopes:
        if guild is not None:
            tree.copy_global_to(guild=guild)
        name = str(guild.id) if guild is not None else "global"
        commands = tree.get_commands(guild=guild)
        translator_ = tree.translator
        payload = [
            await command.get_translated_payload(tree, translator_)
            if translator_ is not None
            else command.to_dict(tree)
            for command in commands
        ]
        digest = _digest(payload)
        key = f"discord.commands.{client.application_id}.{name}"
        if state is not None and await state.get(key) == digest:
            log.info("Discord commands for %s unchanged; not synced", name)
            continue
        try:
            await tree.sync(guild=guild)
        except discord.Forbidden as error:
            log.error(
                "cannot sync commands to server %s (invite the bot with the"
                " applications.commands scope): %s",
                name,
                error,
            )
            continue
        if state is not None:
            await state.put(key, digest)
        synced.append(name)
        log.info("Discord commands synced to %s", name)
    return synced
