"""Members' input images and finished clips, removed once nothing can need them.

An input image (kept by the input store, :mod:`bot.inputs`: a file in
``<data>/inputs``, or a row of PostgreSQL's ``inputs`` table) is needed
while a quote naming it is open, while a job naming it is unfinished, and
for ``input_keep_s`` after such a job finished (its Reroll and Other tier
buttons quote the same image again).
A delivered clip (``<data>/clips``) is kept for ``clip_keep_s`` after its
delivery (None: for ever). :meth:`Retention.sweep` removes what is due and
notes it on the rows, so ``/jobs`` and Reroll can say the file is gone.

With several replicas on one database, only the holder of the role
``retention`` (:mod:`bot.roles`) sweeps: the others wait to take it over,
and a holder that loses the role stops its sweep where it is (which, as
above, is safe to take up anywhere).

Every decision comes from the database and the injected clock, never from
what this process remembers, so a sweep after a restart decides the same.
A file is removed first and noted second: a sweep stopped between the two
finds the file again next time, removes nothing more (it is gone) and writes
the note. Only files inside the two data folders are ever removed.

A clip is a file on the replica that made it (or fetched it again, see
``bot.jobs.delivery``): the sweep removes it from this replica's clips
folder if it is there, and notes it either way. Every replica of a shared
database also looks at its own clips folder on the same schedule, role or
not (:meth:`Retention.sweep_local_clips`), and removes the clips whose rows
say they are due or noted as removed, so a clip on a replica that does not
sweep goes too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bot.clock import Clock
from bot.inputs import FileInputStore, InputStore, unlink_inside
from bot.jobs.store import JobStore
from bot.roles import Role

log = logging.getLogger(__name__)

HOUR = 3600
DAY = 24 * HOUR


@dataclass(frozen=True)
class RetentionSettings:
    """How long files are kept, and how often the sweep looks."""

    input_keep_s: int = 24 * HOUR
    """After a job finished, its input image is kept this long for Reroll and Other tier."""
    clip_keep_s: int | None = 7 * DAY
    """A delivered clip is kept this long; None keeps clips for ever."""
    interval_s: float = float(HOUR)
    """Seconds between two sweeps (the first runs at start)."""
    batch: int = 500
    """Rows looked at per query: a sweep of a large backlog goes in batches."""


@dataclass(frozen=True)
class SweepResult:
    """What one sweep removed: input image references, and the ids of jobs whose clip went."""

    inputs: tuple[str, ...] = ()
    clips: tuple[str, ...] = ()
    unnamed: int = 0
    """Images no row named (a quote never saved), removed from the store."""


class Retention:
    """Removes input images and clips that are due; ``run()`` sweeps every ``interval_s``."""

    def __init__(
        self,
        store: JobStore,
        clock: Clock,
        *,
        inputs_dir: Path,
        clips_dir: Path,
        settings: RetentionSettings | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        role: Role | None = None,
        inputs: InputStore | None = None,
        replicas: bool = False,
    ) -> None:
        self.store = store
        self.role = role
        """Sweeps only while this is held (None: always, the one runner of SQLite)."""
        self.clock = clock
        self.inputs_dir = inputs_dir
        self.inputs = inputs or FileInputStore(inputs_dir)
        """Where the input images are (default: files in ``inputs_dir``)."""
        self.replicas = replicas
        """Other replicas share the database: :meth:`run` also looks at this one's own clips."""
        self.clips_dir = clips_dir
        self.settings = settings or RetentionSettings()
        self._sleep = sleep
        self.sweeps = 0
        """Sweeps :meth:`run` finished (failed ones included)."""
        self.swept = asyncio.Event()
        """Set after each sweep of :meth:`run`; clear it to wait for the next one."""

    async def run(self) -> None:
        """Sweep now, then every ``interval_s``, until cancelled; a failed sweep is logged.

        With a role, each sweep waits until this process holds it, and stops
        if the role is lost meanwhile. With ``replicas``, this replica's own
        clips folder is looked at every ``interval_s`` too, held or not.
        """
        if not self.replicas:
            await self._sweeps()
            return
        local = asyncio.ensure_future(self._local_sweeps())
        try:
            await self._sweeps()
        finally:
            local.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await local

    async def _local_sweeps(self) -> None:
        while True:
            try:
                await self.sweep_local_clips()
            except Exception:
                log.exception(
                    "the sweep of this replica's clips failed; it runs again in %g s",
                    self.settings.interval_s,
                )
            await self._sleep(self.settings.interval_s)

    async def _sweeps(self) -> None:
        while True:
            if self.role is not None and not self.role.held:
                await self.role.wait_held()
            try:
                await self._sweep_while_held()
            except Exception:
                log.exception(
                    "the retention sweep failed; it runs again in %g s", self.settings.interval_s
                )
            self.sweeps += 1
            self.swept.set()
            await self._sleep(self.settings.interval_s)

    async def _sweep_while_held(self) -> None:
        if self.role is None:
            await self.sweep()
            return
        sweeping = asyncio.ensure_future(self.sweep())
        lost = asyncio.ensure_future(self.role.wait_lost())
        try:
            await asyncio.wait((sweeping, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Only a lost role is worth a warning: when this task itself is
            # cancelled (the bot stopping), the sweep just stops with it.
            role_lost = lost.done() and not lost.cancelled()
            lost.cancel()
            if not sweeping.done():
                sweeping.cancel()
                if role_lost:
                    log.warning("retention: lost the role mid-sweep; another replica sweeps")
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeping
        if not sweeping.cancelled():
            sweeping.result()  # raises what the sweep raised

    async def sweep(self) -> SweepResult:
        """Remove every input image and clip that is due now; say what went."""
        inputs = await self._sweep_inputs()
        clips = await self._sweep_clips()
        await self.sweep_compare_clips()
        if inputs or clips:
            log.info("retention: removed %d input images and %d clips", len(inputs), len(clips))
        if unnamed := await self.inputs.remove_unnamed():
            log.info("retention: removed %d input images no quote or job names", unnamed)
        return SweepResult(tuple(inputs), tuple(clips), unnamed)

    async def _sweep_inputs(self) -> list[str]:
        removed: list[str] = []
        while True:
            now = self.clock.now()
            due = await self.store.inputs_to_remove(
                now=now, finished_before=now - self.settings.input_keep_s, limit=self.settings.batch
            )
            for path in due:
                await remove_input(self.store, self.inputs, path, now=now)
                removed.append(path)
            if len(due) < self.settings.batch:
                return removed

    async def _sweep_clips(self) -> list[str]:
        keep = self.settings.clip_keep_s
        if keep is None:
            return []
        removed: list[str] = []
        while True:
            now = self.clock.now()
            due = await self.store.clips_to_remove(
                delivered_before=now - keep, limit=self.settings.batch
            )
            for job in due:
                assert job.result_path is not None
                await self._remove(job.result_path, self.clips_dir)
                await self.store.note_clip_removed(job.job_id, now=now)
                removed.append(job.job_id)
            if len(due) < self.settings.batch:
                return removed

    async def sweep_local_clips(self) -> list[str]:
        """Remove the clips in this replica's folder that are due; the ids of their jobs.

        A clip is due when its row is noted as removed (the sweep of another
        replica noted it) or was delivered ``clip_keep_s`` ago (then it is
        noted here too). A file no row names, or one of an unfinished job, is
        left alone.
        """
        keep = self.settings.clip_keep_s
        if keep is None:
            return []
        await self.sweep_compare_clips()
        names = await asyncio.to_thread(_clip_names, self.clips_dir)
        removed: list[str] = []
        for job_id in names:
            job = await self.store.get_job(job_id)
            if job is None or job.job_id != job_id:
                continue
            now = self.clock.now()
            noted = job.clip_removed_at is not None
            due = job.state == "delivered" and (job.delivered_at or now) <= now - keep
            if not (noted or due):
                continue
            await self._remove(str(self.clips_dir / f"{job_id}.mp4"), self.clips_dir)
            if not noted:
                await self.store.note_clip_removed(job_id, now=now)
            removed.append(job_id)
        if removed:
            log.info("retention: removed %d clips from this replica's folder", len(removed))
        return removed

    async def sweep_compare_clips(self) -> int:
        """Remove this folder's side-by-side clips of /compare made ``clip_keep_s`` ago.

        No row names them (``compare-<id>.mp4``, made from the tiers' clips):
        their age is their file's. How many went.
        """
        keep = self.settings.clip_keep_s
        if keep is None:
            return 0
        due = await asyncio.to_thread(_compare_clips, self.clips_dir, self.clock.now() - keep)
        for path in due:
            await self._remove(str(path), self.clips_dir)
        if due:
            log.info("retention: removed %d side-by-side clips", len(due))
        return len(due)

    async def _remove(self, path: str, folder: Path) -> None:
        """Delete ``path`` if it lies inside ``folder``; a file already gone is fine."""
        await asyncio.to_thread(unlink_inside, Path(path), folder)


async def remove_input(store: JobStore, inputs: InputStore, reference: str, *, now: int) -> None:
    """Remove an input image nothing needs, then note it on every row naming it.

    The sweep calls this for what is due; ``bot.generation`` for the image of
    a quote a newer one retired, at once. Image first, note second (see above).
    """
    await inputs.remove(reference)
    await store.note_input_removed(reference, now=now)


def _clip_names(folder: Path) -> list[str]:
    """The job ids of the clips in ``folder`` (``<job id>.mp4``), sorted; none without it."""
    if not folder.is_dir():
        return []
    return sorted(path.stem for path in folder.glob("*.mp4") if path.is_file())


def _compare_clips(folder: Path, made_before: float) -> list[Path]:
    """The side-by-side clips in ``folder`` written at or before ``made_before``."""
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.glob("compare-*.mp4")
        if path.is_file() and path.stat().st_mtime <= made_before
    )
