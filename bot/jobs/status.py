"""The status message of a job, and the message that delivers its clip.

Pure functions from a job's facts to a :class:`Reply`; the runner decides
when to send or edit.
"""

from __future__ import annotations

from pathlib import Path

from bot.catalog import Catalog
from bot.jobs.model import Job
from bot.replies import Button, Money, Reply, TierName, text

BAR_CELLS = 10


def clock_time(seconds: float) -> str:
    """``75`` -> ``1:15``."""
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def progress_bar(percent: int) -> str:
    """``40`` -> ``▓▓▓▓░░░░░░ 40%``."""
    percent = min(100, max(0, percent))
    filled = round(percent * BAR_CELLS / 100)
    return f"{'▓' * filled}{'░' * (BAR_CELLS - filled)} {percent}%"


def _cancel(job: Job) -> Button:
    return Button(text("status.cancel_button"), f"cancel:{job.job_id}")


def queued(job: Job, catalog: Catalog, position: int) -> Reply:
    """Waiting for a free slot."""
    tier = TierName(catalog.tier(job.tier))
    return Reply(
        (
            text(
                "status.queued",
                tier=tier,
                duration=job.duration_s,
                position=position,
                job=job.short_id,
            ),
            text("status.held", money=Money.of(catalog, job.price)),
        ),
        buttons=(_cancel(job),),
    )


def generating(job: Job, catalog: Catalog, elapsed: float, expected: int, percent: int) -> Reply:
    """Rendering: elapsed, expected remaining, a progress bar."""
    tier = TierName(catalog.tier(job.tier))
    remaining = max(0, expected - int(elapsed))
    return Reply(
        (
            text("status.generating", tier=tier, duration=job.duration_s, job=job.short_id),
            text("status.timing", elapsed=clock_time(elapsed), remaining=clock_time(remaining)),
            text("status.bar", bar=progress_bar(percent)),
        ),
        buttons=(_cancel(job),),
    )


def done(job: Job, catalog: Catalog, elapsed: float) -> Reply:
    """Finished; the clip follows in its own message."""
    return Reply(
        (
            text(
                "status.done",
                tier=TierName(catalog.tier(job.tier)),
                elapsed=clock_time(elapsed),
                money=Money.of(catalog, job.price),
                job=job.short_id,
            ),
        )
    )


def failed(job: Job, catalog: Catalog, reason_key: str, **params: object) -> Reply:
    """Did not work; the credits came back."""
    return Reply(
        (
            text("status.failed", tier=TierName(catalog.tier(job.tier)), job=job.short_id),
            text(reason_key, **params),
            text("status.refunded", money=Money.of(catalog, job.price)),
        )
    )


def cancelled(job: Job, catalog: Catalog) -> Reply:
    """Cancelled by the member; the credits came back."""
    return Reply(
        (
            text("status.cancelled", tier=TierName(catalog.tier(job.tier)), job=job.short_id),
            text("status.refunded", money=Money.of(catalog, job.price)),
        )
    )


def video(job: Job, catalog: Catalog, path: Path) -> Reply:
    """The clip, with Reroll and Other tier buttons."""
    tier = catalog.tier(job.tier)
    return Reply(
        (
            text(
                "delivery.caption",
                tier=TierName(tier),
                resolution=f"{job.resolution}p",
                duration=job.duration_s,
                money=Money.of(catalog, job.price),
                job=job.short_id,
            ),
        ),
        buttons=(
            Button(text("delivery.reroll_button"), f"reroll:{job.job_id}"),
            Button(text("delivery.other_tier_button"), f"again:{job.job_id}"),
        ),
        video=path,
    )


def resend_button(job: Job) -> Button:
    """Send again: try to deliver a made, not yet delivered clip at once."""
    return Button(text("status.resend_button"), f"resend:{job.job_id}")


def not_yet_delivered(job: Job, catalog: Catalog) -> Reply:
    """Made and paid for, but the platform did not take it yet: it comes as soon as it does."""
    return Reply(
        (
            text(
                "status.not_yet_delivered",
                tier=TierName(catalog.tier(job.tier)),
                money=Money.of(catalog, job.price),
                job=job.short_id,
            ),
        ),
        buttons=(resend_button(job),),
    )


def undelivered(job: Job) -> Reply:
    """Every way of sending the clip failed for the whole retry window."""
    return Reply((text("status.undelivered", job=job.short_id),))


def clip_lost(job: Job) -> Reply:
    """The clip was made, but is not on this machine and the provider no longer has it."""
    return Reply((text("status.clip_lost", job=job.short_id),))


def signed_link(job: Job, url: str, hours: int) -> Reply:
    """The clip is too large for this chat (or the chat kept refusing it): our own link."""
    return Reply((text("delivery.signed_link", job=job.short_id, url=url, hours=hours),))


def remote_link(job: Job, url: str) -> Reply:
    """The clip is too large for this chat: where to download it from the provider."""
    return Reply((text("kling.result_link", job=job.short_id, url=url),))
