"""The side-by-side clip of a ``/compare``, sent once all of its jobs are over.

Each tier of a compare is a job of its own, delivered (or failed and
refunded) as usual. Whenever a job ends, the runner that ended it asks here
whether it was the last of a compare; if so, and it wins the compare's claim
in the database (a compare-and-set, so across replicas exactly one makes the
clip), it puts the clips that were made side by side, labelled with their
tiers in the member's language, and sends that. Fewer than two clips made:
the member is told there is nothing to compare (the failed tiers were
refunded with their jobs).

The clip is made with the local renderer's tools
(:mod:`bot.providers.local.sidebyside`) in a worker thread, and made smaller
until it fits the chat's upload limit (:meth:`bot.ports.Outbox.fits`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path

from bot.catalog import Catalog
from bot.clock import Clock
from bot.jobs.model import TERMINAL, Compare, CompareState, Job
from bot.jobs.store import JobStore
from bot.ports import Outbox
from bot.providers.base import Provider, ProviderError
from bot.replies import Money, Reply, TextList, TierName, text

log = logging.getLogger(__name__)

HEIGHTS = (720, 480, 360, 240, 144)
"""Panel heights tried in turn until the clip fits the chat's upload limit."""

RESUMED_AT_ONCE = 100
"""Unfinished compares a starting runner looks at (the oldest)."""

CLAIM_STALE_S = 600
"""A compare claimed this long ago (wall clock) by a runner that never finished it may be
taken over by the next runner that looks at it."""

Render = Callable[[list[tuple[Path, str]], Path, int], tuple[int, int]]
"""(clips with their labels, output path, panel height) -> the clip's (width, height)."""


def tier_names(catalog: Catalog, keys: Sequence[str]) -> TextList:
    """The compared tiers by name, as one list (the quote's buttons, its answers, the clip)."""
    return TextList(tuple(text("compare.tier", tier=TierName(catalog.tier(k))) for k in keys))


def render_side_by_side(
    panels: list[tuple[Path, str]], out: Path, max_height: int
) -> tuple[int, int]:
    """The local renderer's side-by-side (loaded only when a compare needs it)."""
    from bot.providers.local.sidebyside import Panel, side_by_side

    made = side_by_side([Panel(p, label) for p, label in panels], out, max_height=max_height)
    return made.width, made.height


class CompareFinisher:
    """Sends each compare's side-by-side clip once its last job is over."""

    def __init__(
        self,
        *,
        store: JobStore,
        outbox: Outbox,
        catalog: Catalog,
        clock: Clock,
        clips_dir: Path,
        claimant: str,
        provider: Provider | None = None,
        render: Render = render_side_by_side,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.catalog = catalog
        self.clock = clock
        self.clips_dir = clips_dir
        self.claimant = claimant
        self.provider = provider
        """Fetches a tier's clip made on another replica again (None: such a tier is left out)."""
        self.render = render
        self._tasks: set[asyncio.Task[None]] = set()
        self._finishing: set[str] = set()
        """Compares this process is finishing: a job's end reported twice starts one."""
        self._drained = asyncio.Event()
        self._drained.set()

    def settled(self, job_id: str) -> None:
        """A job ended here: if it was the last of its compare, finish the compare (a task)."""
        self._track(self._guarded(job_id), f"compare-{job_id}")

    def resume(self, *, sole: bool) -> None:
        """At start: finish the compares whose last job ended while no runner could (a task).

        ``sole``: this runner is the only one on its database, so a compare
        left ``making`` is one a runner killed mid-clip left behind, taken at once.
        """
        self._track(self._resume(sole), "compares-resume")

    def _track(self, work: Coroutine[object, object, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        self._drained.clear()
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._drained.set()

    async def drained(self) -> None:
        """Wait until no compare is being looked at or finished here."""
        await self._drained.wait()

    async def stop(self) -> None:
        """Stop the compares under way (a claim left behind goes stale and may be taken over)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _resume(self, sole: bool) -> None:
        try:
            unfinished = await self.store.unfinished_compares(RESUMED_AT_ONCE)
        except Exception:
            log.exception("the unfinished compares could not be listed")
            return
        for compare in unfinished:
            try:
                await self._finish_compare(compare, take_over=sole)
            except Exception:
                log.exception("compare %s could not be finished", compare.compare_id)

    async def _guarded(self, job_id: str) -> None:
        try:
            await self.finish(job_id)
        except Exception:
            log.exception("the compare of job %s could not be finished", job_id)

    async def finish(self, job_id: str) -> bool:
        """Finish the job's compare if all its jobs are over and the claim is ours; True if so."""
        compare = await self.store.compare_of(job_id)
        if compare is None:
            return False
        return await self._finish_compare(compare)

    async def _finish_compare(self, compare: Compare, *, take_over: bool = False) -> bool:
        if compare.state not in ("open", "making"):
            return False
        jobs = [await self.store.get_job(member) for member in compare.job_ids]
        if any(job is None or job.state not in TERMINAL for job in jobs):
            return False  # the last job to end does it
        if compare.compare_id in self._finishing:
            return False
        self._finishing.add(compare.compare_id)
        try:
            return await self._finish(
                compare, [job for job in jobs if job is not None], take_over=take_over
            )
        finally:
            self._finishing.discard(compare.compare_id)

    async def _finish(self, compare: Compare, jobs: list[Job], *, take_over: bool) -> bool:
        now = self.clock.now()
        stale_before = now if take_over else now - CLAIM_STALE_S
        if not await self.store.claim_compare(
            compare.compare_id, self.claimant, now=now, stale_before=stale_before
        ):
            return False
        clips = [(job, await self._clip_of(compare, job)) for job in jobs]
        made = [(job, path) for job, path in clips if path is not None]
        state: CompareState = "failed"
        try:
            if len(made) < 2:
                await self.outbox.send(
                    compare.chat,
                    Reply((text("compare.too_few_made", count=len(made), total=len(jobs)),)),
                    compare.locale,
                )
                state = "too_few"
            else:
                try:
                    await self._send(compare, made)
                finally:  # the copies fetched for it only
                    for _, path in made:
                        if path.name.startswith(f"compare-{compare.compare_id}-"):
                            await asyncio.to_thread(path.unlink, missing_ok=True)
                state = "sent"
        except asyncio.CancelledError:
            # Stopped mid-clip: the compare stays claimed ("making"), and is finished by the
            # next start (or, with replicas, once the claim is stale).
            raise
        except Exception:
            log.exception("the side-by-side clip of compare %s was not sent", compare.compare_id)
            try:
                await self.outbox.send(
                    compare.chat, Reply((text("compare.not_sent"),)), compare.locale
                )
            except Exception as error:
                log.warning(
                    "compare %s: nor could the member be told: %s", compare.compare_id, error
                )
        await asyncio.shield(
            self.store.finish_compare(
                compare.compare_id, self.claimant, state, now=self.clock.now()
            )
        )
        return True

    async def _clip_of(self, compare: Compare, job: Job) -> Path | None:
        """Where the job's clip is on this machine; None when none was made or it is gone.

        A clip another replica made is fetched again from the provider where it
        keeps results (Kling); one it cannot give (the local renderer's) is left out.
        """
        if job.state != "delivered" or not job.result_path or job.clip_removed_at is not None:
            return None
        path = Path(job.result_path)
        if await asyncio.to_thread(path.is_file):
            return path
        if self.provider is not None and job.task_id is not None:
            destination = self.clips_dir / f"compare-{compare.compare_id}-{job.job_id}.mp4"
            try:
                return await self.provider.fetch(job.task_id, destination)
            except ProviderError as error:
                log.warning("the clip of job %s could not be fetched again: %s", job.job_id, error)
        log.warning("job %s: its clip is not on this machine; left out of its compare", job.job_id)
        return None

    async def _send(self, compare: Compare, made: list[tuple[Job, Path]]) -> None:
        panels = [(path, self.catalog.tier(job.tier).name(compare.locale)) for job, path in made]
        made_jobs = [job for job, _ in made]
        out = self.clips_dir / f"compare-{compare.compare_id}.mp4"
        self.clips_dir.mkdir(parents=True, exist_ok=True)
        for height in HEIGHTS:
            await asyncio.to_thread(self.render, panels, out, height)
            size = (await asyncio.to_thread(out.stat)).st_size
            if self.outbox.fits(compare.chat, size):
                break
            log.info(
                "compare %s: %d bytes at %dp do not fit; smaller", compare.compare_id, size, height
            )
        paid = sum(job.price for job in made_jobs)
        caption = text(
            "compare.video",
            tiers=tier_names(self.catalog, [job.tier for job in made_jobs]),
            duration=made_jobs[0].duration_s,
            money=Money.of(self.catalog, paid),
        )
        await self.outbox.deliver(compare.chat, Reply((caption,), video=out), compare.locale)
