"""Handlers of the /gen feature: quotes, tier presses, cancels, rerolls, Send again, /jobs, /refund.

A quote is free; pressing a tier creates the job and holds its price in one
transaction (the quote can become a job only once, so a double click or two
tiers pressed together hold credits once); the runner does the rest.

Free must not mean unbounded: a member may ask for ``quotes_per_minute``
quotes in any minute and keep ``max_open_quotes`` open (a new one retires
the oldest and removes its image), both counted by the store in the
database, and an image is downloaded only once both and its declared size
allow it.
"""

from __future__ import annotations

import asyncio
import logging

from bot.access import is_moderator, resolve_user
from bot.catalog import Tier
from bot.commands import (
    Caller,
    CancelJob,
    CancelQuote,
    Choose,
    Gen,
    Jobs,
    OtherTier,
    Refund,
    Reroll,
    Resend,
)
from bot.defaults import confirm_reply, member_defaults
from bot.deps import Deps, Generation
from bot.errors import InsufficientCredits, NotModerator, UserError
from bot.jobs.model import Job, Quote
from bot.jobs.retention import remove_input
from bot.jobs.store import QueueFull, QuoteTaken, SlowDown
from bot.media import check_file_size, check_prompt, inspect_image
from bot.reasons import reason
from bot.replies import Button, Reply, Text, TierName, Timestamp, Wait, text

log = logging.getLogger(__name__)

PROMPT_PREVIEW = 60
"""Characters of the prompt repeated in a quote."""

JOBS_SHOWN = 10


def _generation(deps: Deps) -> Generation:
    if deps.generation is None:
        raise UserError("error.gen_unavailable")
    return deps.generation


def _private(key: str, **params: object) -> list[Reply]:
    return [Reply((text(key, **params),), private=True)]


async def gen(command: Gen, caller: Caller, deps: Deps, _request_id: str | None) -> list[Reply]:
    """Check the inputs, keep the image, and quote every tier that can take them."""
    quote = await take_inputs(command, caller, deps)
    return [await _quote_reply(quote, caller, deps)]


async def take_inputs(command: Gen, caller: Caller, deps: Deps) -> Quote:
    """Check a /gen's (or /compare's) inputs, keep the image, and save the quote.

    Cheapest first, so that a flood costs nothing: the image's declared size
    and the prompts (no download yet), then the member's quote rate (counted
    in the database), and only then the download and the checks of the
    image's content. A refusal at any step stores nothing.
    """
    generation = _generation(deps)
    image = command.image
    if image is not None and image.declared_size is not None:
        check_file_size(image.declared_size)
    prompt = check_prompt(
        command.prompt, required=image is None, blocked_words=generation.blocked_words
    )
    negative = check_prompt(
        command.negative, required=False, blocked_words=generation.blocked_words, field="negative"
    )
    await _admit_quote(caller, deps)
    duration_s = command.duration_s or (await member_defaults(deps, caller)).duration_s
    quote_id = deps.new_id()[:12]
    written = None
    if image is not None:
        data = await image.fetch()
        info = await asyncio.to_thread(inspect_image, data)
        written = await generation.inputs.save(quote_id, info.extension, data)
    return await save_quote(
        caller,
        deps,
        quote_id=quote_id,
        image_path=written,
        prompt=prompt,
        negative=negative,
        duration_s=duration_s,
        tiers=tiers_for(deps, written),
        written=written,
    )


async def _admit_quote(caller: Caller, deps: Deps) -> None:
    """Count one quote request of the member; UserError ("slow down") past the rate."""
    generation = _generation(deps)
    try:
        await generation.store.admit_quote_request(
            caller.user, per_minute=generation.quotes_per_minute, now=deps.clock.now()
        )
    except SlowDown as error:
        raise UserError(
            "quote.slow_down", count=generation.quotes_per_minute, seconds=error.retry_after_s
        ) from None


def tiers_for(deps: Deps, image_path: str | None) -> tuple[str, ...]:
    """Every tier, less those that need an image when there is none."""
    return tuple(t.key for t in deps.catalog.tiers if image_path or not t.requires_image)


async def _offer(
    caller: Caller,
    deps: Deps,
    *,
    quote_id: str,
    image_path: str | None,
    prompt: str,
    negative: str,
    duration_s: int,
    tiers: tuple[str, ...],
    written: str | None = None,
) -> list[Reply]:
    """Save a quote for these inputs and show it with a button per tier."""
    quote = await save_quote(
        caller,
        deps,
        quote_id=quote_id,
        image_path=image_path,
        prompt=prompt,
        negative=negative,
        duration_s=duration_s,
        tiers=tiers,
        written=written,
    )
    return [await _quote_reply(quote, caller, deps)]


async def save_quote(
    caller: Caller,
    deps: Deps,
    *,
    quote_id: str,
    image_path: str | None,
    prompt: str,
    negative: str,
    duration_s: int,
    tiers: tuple[str, ...],
    written: str | None = None,
) -> Quote:
    """Save a quote for these inputs (for /gen or /compare).

    The member's open quotes beyond ``max_open_quotes`` are retired in the
    same write, and the input images only they named are removed at once.
    ``written`` is the reference of an image saved for this quote alone: it
    goes if the quote cannot be saved.
    """
    generation = _generation(deps)
    now = deps.clock.now()
    quote = Quote(
        quote_id=quote_id,
        user=caller.user,
        chat=caller.reply_chat,
        locale=caller.locale,
        image_path=image_path,
        prompt=prompt,
        negative_prompt=negative,
        duration_s=duration_s,
        tiers=tiers,
        state="open",
        created_at=now,
        expires_at=now + generation.quote_ttl_s,
    )
    try:
        freed = await generation.store.save_quote(quote, max_open=generation.max_open_quotes)
    except BaseException:
        if written is not None:
            try:
                await asyncio.shield(generation.inputs.remove(written))
            except Exception as error:  # the quote's own error is the one to report
                log.warning("the image %s of an unsaved quote stays: %s", written, error)
        raise
    for reference in freed:
        await remove_input(generation.store, generation.inputs, reference, now=now)
    return quote


def prompt_preview(prompt: str) -> str:
    """A prompt as quotes repeat it: its first ``PROMPT_PREVIEW`` characters, then …."""
    return prompt if len(prompt) <= PROMPT_PREVIEW else prompt[:PROMPT_PREVIEW] + "…"


async def _quote_reply(quote: Quote, caller: Caller, deps: Deps) -> Reply:
    generation = _generation(deps)
    preview = prompt_preview(quote.prompt)
    lines: list[Text] = [
        text("quote.header", duration=quote.duration_s, prompt=preview)
        if preview
        else text("quote.header_image_only", duration=quote.duration_s)
    ]
    preferred = await member_defaults(deps, caller)
    offered = [deps.catalog.tier(key) for key in preferred.ordered(quote.tiers)]
    if any(t.requires_image for t in deps.catalog.tiers) and quote.image_path is None:
        lines.append(text("quote.needs_image_omitted"))
    wallet = await deps.ledger.wallet(caller.user)
    balance = wallet.balance if wallet else 0
    buttons = []
    for tier in offered:
        price = tier.price(quote.duration_s)
        label = text(
            "quote.button" if price <= balance else "quote.button_short",
            tier=TierName(tier),
            resolution=f"{tier.resolution}p",
            money=deps.money(price),
            wait=Wait(generation.waits.seconds(tier.key, quote.duration_s)),
        )
        if tier.key == preferred.tier:
            label = text("quote.preferred", label=label)
        buttons.append(Button(label, f"tier:{quote.quote_id}:{tier.key}"))
    cheapest = min(t.price(quote.duration_s) for t in offered)
    lines.append(
        text(
            "quote.balance" if balance >= cheapest else "quote.balance_short",
            money=deps.money(balance),
        )
    )
    lines.append(text("quote.expires", minutes=max(1, round(generation.quote_ttl_s / 60))))
    buttons.append(Button(text("quote.cancel_button"), f"qcancel:{quote.quote_id}"))
    return Reply(tuple(lines), buttons=tuple(buttons))


async def choose(
    command: Choose, caller: Caller, deps: Deps, _request_id: str | None
) -> list[Reply]:
    """A tier was pressed: create the job with its hold, then hand it to the runner."""
    generation = _generation(deps)
    quote = await generation.store.get_quote(command.quote_id)
    if quote is None or command.tier not in quote.tiers:
        raise UserError("error.stale_button")
    refusal = await quote_refusal(quote, caller, deps)
    if refusal is not None:
        return refusal
    tier = deps.catalog.tier(command.tier)
    job = new_job(quote, tier, deps)
    if not command.confirmed:
        asked = await member_defaults(deps, caller)
        if asked.confirm_above is not None and asked.asks_before(job.price):
            # Nothing is held until the member presses the confirm button.
            return [
                confirm_reply(
                    quote.quote_id,
                    TierName(tier),
                    deps.money(job.price),
                    deps.money(asked.confirm_above),
                )
            ]
    try:
        job = await generation.store.create_job(
            job, max_active=generation.runner.settings.max_active, now=deps.clock.now()
        )
    except QuoteTaken:
        return _private("quote.already_chosen")
    except InsufficientCredits as error:
        cheapest = min(deps.catalog.tier(key).price(quote.duration_s) for key in quote.tiers)
        return _private(
            "quote.insufficient" if error.balance >= cheapest else "quote.insufficient_any",
            tier=TierName(tier),
            price=deps.money(job.price),
            money=deps.money(error.balance),
        )
    except QueueFull as error:
        return _private("quote.queue_full", count=error.active)
    await generation.runner.admit(job)
    return [
        Reply(
            (
                text(
                    "quote.chosen",
                    tier=TierName(tier),
                    money=deps.money(job.price),
                    job=job.short_id,
                ),
            ),
            edit=True,
        )
    ]


async def quote_refusal(quote: Quote, caller: Caller, deps: Deps) -> list[Reply] | None:
    """Why a press on ``quote`` cannot make jobs, as the replies saying so; None when it can.

    Not the caller's, used already, closed, expired, or its image gone.
    """
    if quote.user != caller.user:
        return _private("quote.not_yours")
    if quote.state == "used":
        return _private("quote.already_chosen")
    if quote.retired_at is not None:
        return [_retired(deps)]
    if quote.state == "cancelled":
        return _private("quote.was_cancelled")
    if deps.clock.now() > quote.expires_at:
        return [Reply((text("quote.expired"),), edit=True)]
    inputs = _generation(deps).inputs
    if quote.image_path is not None and not await inputs.exists(quote.image_path):
        # The retention sweep removed it (it only does so once nothing seemed to need it).
        return [Reply((text("retention.quote_input_gone"),), edit=True)]
    return None


def new_job(quote: Quote, tier: Tier, deps: Deps) -> Job:
    """The job a press of ``tier`` on ``quote`` creates (not yet stored)."""
    generation = _generation(deps)
    return Job(
        job_id=deps.new_id(),
        quote_id=quote.quote_id,
        user=quote.user,
        chat=quote.chat,
        locale=quote.locale,
        tier=tier.key,
        model=tier.model,
        mode=tier.mode,
        resolution=tier.resolution,
        duration_s=quote.duration_s,
        price=tier.price(quote.duration_s),
        expected_wait_s=tier.expected_wait(quote.duration_s),
        prompt=quote.prompt,
        negative_prompt=quote.negative_prompt,
        image_path=quote.image_path,
        state="held",
        provider=generation.runner.provider.name,
    )


async def cancel_quote(
    command: CancelQuote, caller: Caller, deps: Deps, _request_id: str | None
) -> list[Reply]:
    """Close an open quote; nothing was charged."""
    store = _generation(deps).store
    quote = await store.get_quote(command.quote_id)
    if quote is None:
        raise UserError("error.stale_button")
    if quote.user != caller.user:
        return _private("quote.not_yours")
    if quote.retired_at is not None:
        return [_retired(deps)]
    if not await store.cancel_quote(quote.quote_id):
        return _private("quote.already_chosen")
    return [Reply((text("quote.cancelled"),), edit=True)]


def _retired(deps: Deps) -> Reply:
    """A newer quote of the member closed this one: say so in place of its buttons."""
    return Reply((text("quote.retired", count=_generation(deps).max_open_quotes),), edit=True)


async def _own_job(job_id: str, caller: Caller, deps: Deps) -> Job:
    """The job a button names, if it is the caller's or the caller is a moderator."""
    job = await _generation(deps).store.get_job(job_id)
    if job is None:
        raise UserError("error.stale_button")
    if job.user != caller.user and not is_moderator(caller, deps):
        raise UserError("job.not_yours")
    return job


async def cancel_job(
    command: CancelJob, caller: Caller, deps: Deps, _request_id: str | None
) -> list[Reply]:
    """Cancel a queued or running job with a refund, if the provider still allows it."""
    job = await _own_job(command.job_id, caller, deps)
    result = await _generation(deps).runner.cancel(job)
    if result == "cancelled":
        return []  # the runner already turned the status message into "cancelled, refunded"
    if result == "too_late":
        return _private("job.too_late_to_cancel")
    return _private("job.already_finished")


async def reroll(
    command: Reroll | OtherTier, caller: Caller, deps: Deps, _request_id: str | None
) -> list[Reply]:
    """A fresh quote for a finished job's inputs: the same tier (Reroll) or all (Other tier)."""
    generation = _generation(deps)
    job = await generation.store.get_job(command.job_id)
    if job is None:
        raise UserError("error.stale_button")
    if job.user != caller.user:
        return _private("quote.not_yours")
    image_path = job.image_path
    if image_path is not None and (
        job.input_removed_at is not None or not await generation.inputs.exists(image_path)
    ):
        # Kept for a while after the job (KLINGBOT_INPUT_RETENTION_H), then removed.
        return _private("retention.input_gone", job=job.short_id)
    all_tiers = tiers_for(deps, image_path)
    tiers = (job.tier,) if isinstance(command, Reroll) and job.tier in all_tiers else all_tiers
    if not tiers:
        raise UserError("error.stale_button")
    await _admit_quote(caller, deps)
    return await _offer(
        caller,
        deps,
        quote_id=deps.new_id()[:12],
        image_path=image_path,
        prompt=job.prompt,
        negative=job.negative_prompt,
        duration_s=job.duration_s,
        tiers=tiers,
    )


async def resend(
    command: Resend, caller: Caller, deps: Deps, _request_id: str | None
) -> list[Reply]:
    """Send again: try a made clip the platform did not take yet, at once."""
    job = await _own_job(command.job_id, caller, deps)
    result = await _generation(deps).runner.resend(job)
    key = {
        "sending": "delivery.resending",
        "busy": "delivery.already_sending",
        "finished": "delivery.already_delivered",
    }[result]
    return _private(key, job=job.short_id)


async def jobs(command: Jobs, caller: Caller, deps: Deps, _request_id: str | None) -> list[Reply]:
    """Recent jobs with their state and cost; moderators may name a user or ``all``."""
    store = _generation(deps).store
    user = caller.user
    if command.target and command.target.lower() != "me":
        if not is_moderator(caller, deps):
            raise NotModerator()
        if command.target.lower() == "all":
            user = None
        else:
            user = (await resolve_user(command.target, caller, deps)).user
    found = await store.jobs_of(user, JOBS_SHOWN)
    if not found:
        return [Reply((text("jobs.empty"),))]
    lines = [text("jobs.header", count=len(found))]
    for job in found:
        lines.append(
            text(
                "jobs.row",
                job=job.short_id,
                when=Timestamp(job.created_at),
                tier=TierName(deps.catalog.tier(job.tier)) if job.tier in _keys(deps) else job.tier,
                duration=job.duration_s,
                state=job_state(job),
                money=deps.money(job.price),
                who=str(job.user),
                refunded=text(
                    "retention.row_notes",
                    refunded=text("jobs.refunded") if job.refunded else "",
                    gone=text("retention.clip_gone") if job.clip_removed_at is not None else "",
                ),
            )
        )
    resend = tuple(
        Button(text("jobs.resend_button", job=job.short_id), f"resend:{job.job_id}")
        for job in found
        if job.state == "succeeded"
    )
    return [Reply(tuple(lines), buttons=resend)]


_DELIVERY_STATES = {
    "dm": "jobs.delivered_dm",
    "followup": "jobs.delivered_followup",
    "link": "jobs.delivered_link",
    "too_large": "jobs.delivered_too_large",
    "undeliverable": "jobs.undeliverable",
}
"""Delivered jobs whose member did not simply get the clip in their chat, and what /jobs says."""


def job_state(job: Job) -> Text:
    """The job's state as /jobs shows it; a delivered job says how it was delivered.

    A clip that went by another route says which; one the member never got
    (too large, or nothing could reach them) names the job, so they can ask
    a moderator for the file it keeps.
    """
    if job.state == "delivered" and job.delivery in _DELIVERY_STATES:
        return text(_DELIVERY_STATES[job.delivery], job=job.short_id)
    return text(f"state.{job.state}")


def _keys(deps: Deps) -> set[str]:
    return {t.key for t in deps.catalog.tiers}


async def refund(
    command: Refund, caller: Caller, deps: Deps, _request_id: str | None
) -> list[Reply]:
    """A moderator gives a delivered job's price back (an ``adjust`` entry, once).

    Delivered includes ``undeliverable``: the clip was made and paid for but no way
    of sending it worked for the whole retry window.
    """
    if not is_moderator(caller, deps):
        raise NotModerator()
    store = _generation(deps).store
    job = await store.get_job(command.job_id)
    if job is None:
        raise UserError("job.unknown", job=command.job_id[:32])
    if job.state != "delivered":
        # A ``succeeded`` job's clip is still being sent (delivery retries): the member
        # gets it, or, once every try failed, it is ``delivered`` as undeliverable.
        raise UserError("job.not_refundable", job=job.short_id, state=text(f"state.{job.state}"))
    outcome = await store.refund(
        job.job_id,
        actor=str(caller.user),
        reason=command.reason or reason("reason.refund", job=job.short_id),
        now=deps.clock.now(),
    )
    key = "refund.done" if outcome.applied else "refund.already"
    return [Reply((text(key, job=job.short_id, money=deps.money(job.price), who=str(job.user)),))]
