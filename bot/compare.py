"""Handlers of /compare: the same inputs on several tiers, then one side-by-side clip.

``/compare`` checks and keeps its inputs as ``/gen`` does and quotes every
tier they allow, with the sum; a button per pair of tiers and one for all of
them (with two tiers, one button) holds the sum in one press. Each tier is
then a job of its own (its own hold, limits, queue position, status message
and delivery): :meth:`bot.jobs.store.JobStore.create_compare` makes them, and
the holds, in one transaction, or none. When all are over, the runner that
ended the last sends the side-by-side clip (``bot.jobs.compares``).
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from bot import generation
from bot.commands import Caller, CompareTiers, Gen
from bot.defaults import member_defaults
from bot.deps import Deps
from bot.errors import InsufficientCredits, UserError
from bot.jobs.compares import tier_names
from bot.jobs.model import Compare, Quote
from bot.jobs.store import QueueFull, QuoteTaken
from bot.replies import Button, Reply, Text, TextList, TierName, text


async def gen(command: Gen, caller: Caller, deps: Deps, request_id: str | None) -> list[Reply]:
    """``/gen`` quotes tiers to pick one; ``/compare`` (``command.compare``) to run several."""
    if not command.compare:
        return await generation.gen(command, caller, deps, request_id)
    if len(deps.catalog.tiers) < 2 or (
        command.image is None and len(generation.tiers_for(deps, None)) < 2
    ):
        # Text alone: only the tiers that need no image, one of them at most. Nothing stored.
        raise UserError("compare.too_few")
    quote = await generation.take_inputs(command, caller, deps)
    return [await _quote_reply(quote, caller, deps)]


def _names(deps: Deps, keys: tuple[str, ...]) -> TextList:
    return tier_names(deps.catalog, keys)


def _sum(deps: Deps, keys: tuple[str, ...], duration_s: int) -> int:
    return sum(deps.catalog.tier(key).price(duration_s) for key in keys)


async def _quote_reply(quote: Quote, caller: Caller, deps: Deps) -> Reply:
    """Every tier with its price, the sum, and a button per choice of two tiers or more."""
    ttl_s = generation._generation(deps).quote_ttl_s
    preview = generation.prompt_preview(quote.prompt)
    lines: list[Text] = [
        text("compare.header", duration=quote.duration_s, prompt=preview)
        if preview
        else text("compare.header_image_only", duration=quote.duration_s)
    ]
    preferred = (await member_defaults(deps, caller)).tier
    for key in quote.tiers:
        tier = deps.catalog.tier(key)
        row = text(
            "compare.row",
            tier=TierName(tier),
            resolution=f"{tier.resolution}p",
            money=deps.money(tier.price(quote.duration_s)),
        )
        lines.append(text("quote.preferred", label=row) if key == preferred else row)
    total = _sum(deps, quote.tiers, quote.duration_s)
    lines.append(text("compare.total", count=len(quote.tiers), money=deps.money(total)))
    wallet = await deps.ledger.wallet(caller.user)
    balance = wallet.balance if wallet else 0
    lines.append(text("compare.balance", money=deps.money(balance)))
    lines.append(text("quote.expires", minutes=max(1, round(ttl_s / 60))))
    choices = [pair for pair in itertools.combinations(quote.tiers, 2)]
    if len(quote.tiers) > 2:
        choices.append(quote.tiers)
    buttons = []
    for keys in choices:
        price = deps.money(_sum(deps, keys, quote.duration_s))
        label = (
            text("compare.all_button", count=len(keys), money=price)
            if len(keys) == len(quote.tiers) and len(keys) > 2
            else text("compare.pair_button", tiers=_names(deps, keys), money=price)
        )
        picks = ".".join(str(quote.tiers.index(key)) for key in keys)
        buttons.append(Button(label, f"cmp:{quote.quote_id}:{picks}"))
    buttons.append(Button(text("quote.cancel_button"), f"qcancel:{quote.quote_id}"))
    return Reply(tuple(lines), buttons=tuple(buttons))


async def compare_tiers(
    command: CompareTiers, caller: Caller, deps: Deps, _request_id: str | None
) -> list[Reply]:
    """Tiers to compare were pressed: hold the sum, a job per tier, then hand them to the runner."""
    gen_side = generation._generation(deps)
    quote = await gen_side.store.get_quote(command.quote_id)
    picks = set(command.picks)
    if quote is None or len(picks) != len(command.picks) or len(picks) < 2:
        raise UserError("error.stale_button")
    if max(picks) >= len(quote.tiers):
        raise UserError("error.stale_button")
    refusal = await generation.quote_refusal(quote, caller, deps)
    if refusal is not None:
        return refusal
    keys = tuple(key for n, key in enumerate(quote.tiers) if n in picks)  # the quote's order
    jobs = [
        replace(
            generation.new_job(quote, deps.catalog.tier(key), deps),
            quote_id=f"{quote.quote_id}-{n}",
        )
        for n, key in enumerate(keys)
    ]
    compare = Compare(
        compare_id=deps.new_id(),
        quote_id=quote.quote_id,
        user=quote.user,
        chat=quote.chat,
        locale=quote.locale,
        job_ids=tuple(job.job_id for job in jobs),
    )
    total = sum(job.price for job in jobs)
    asked = None if command.confirmed else await member_defaults(deps, caller)
    if asked is not None and asked.confirm_above is not None and asked.asks_before(total):
        # Over the member's threshold (/settings): nothing is held until they confirm.
        limit = asked.confirm_above
        return [
            Reply(
                (
                    text(
                        "compare.confirm",
                        tiers=_names(deps, keys),
                        money=deps.money(total),
                        limit=deps.money(limit),
                    ),
                ),
                buttons=(
                    Button(
                        text("compare.confirm_button", money=deps.money(total)),
                        f"cmpok:{quote.quote_id}:{'.'.join(str(n) for n in sorted(picks))}",
                    ),
                ),
            )
        ]
    try:
        created = await gen_side.store.create_compare(
            compare, jobs, max_active=gen_side.runner.settings.max_active, now=deps.clock.now()
        )
    except QuoteTaken:
        return generation._private("quote.already_chosen")
    except InsufficientCredits as error:
        return generation._private(
            "compare.insufficient", price=deps.money(total), money=deps.money(error.balance)
        )
    except QueueFull as error:
        return generation._private(
            "compare.queue_full",
            count=len(jobs),
            active=error.active,
            limit=gen_side.runner.settings.max_active,
        )
    for job in created:
        deps.metrics.press(job.tier)
        await gen_side.runner.admit(job)
    return [
        Reply(
            (text("compare.chosen", tiers=_names(deps, keys), money=deps.money(total)),),
            edit=True,
        )
    ]
