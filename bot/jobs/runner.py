"""The job runner: who runs next (queues and limits), cancels, restart recovery.

A started job moves in steps (``bot.jobs.lifecycle``): a submit with its
first poll, then one poll at a time, then the delivery, each step a short
task. Between two polls a job is a packed record in ``bot.jobs.polls``,
whose one loop starts each poll when it is due: 10,000 jobs in flight are
10,000 small records, not 10,000 waiting coroutines for the garbage
collector to walk. Every state change is a compare-and-set in the store (with its ledger
entry), so a cancel racing a completion, a second runner or a restart each
find the state already moved and stand down. Nothing here sleeps for real in
tests: waits are multiplied by ``time_scale`` and tests await
:meth:`JobRunner.settled`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import functools
import itertools
import logging
import math
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from bot.catalog import Catalog
from bot.clock import Clock
from bot.inputs import InputStore
from bot.jobs import status
from bot.jobs.board import StatusBoard
from bot.jobs.compares import CompareFinisher
from bot.jobs.leases import Adopted, JobLeases, Refusal
from bot.jobs.lifecycle import JobLifecycle
from bot.jobs.limits import RunnerSettings
from bot.jobs.links import ClipLinks
from bot.jobs.model import TERMINAL, Job, JobRecord, pack_job, unpack_job
from bot.jobs.polls import Polls, Watch
from bot.jobs.replica import LeaseKeeper
from bot.jobs.retention import Retention
from bot.jobs.store import JobStore
from bot.jobs.waits import ExpectedWaits
from bot.metrics import job_context
from bot.ports import Outbox, Undeliverable
from bot.providers.base import (
    Provider,
)

log = logging.getLogger(__name__)

RECORD_PATIENCE_S = 5.0
"""How long a stop waits for the deliveries of clips that went out to be recorded."""

CancelResult = Literal["cancelled", "too_late", "finished", "unknown"]
ResendResult = Literal["sending", "busy", "finished"]

__all__ = ["CancelResult", "JobRunner", "ResendResult", "RunnerSettings"]


class JobRunner:
    """Drives jobs: ``load`` the unfinished ones, ``admit`` new ones, ``start`` to run them."""

    def __init__(
        self,
        *,
        store: JobStore,
        provider: Provider,
        outbox: Outbox,
        catalog: Catalog,
        clock: Clock,
        waits: ExpectedWaits,
        clips_dir: Path,
        settings: RunnerSettings | None = None,
        retention: Retention | None = None,
        links: ClipLinks | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        leases: JobLeases | None = None,
        replica_id: str | None = None,
        lease_s: float = 30.0,
        wall: Callable[[], float] = time.time,
        inputs: InputStore | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.outbox = outbox
        self.catalog = catalog
        self.clock = clock
        self.waits = waits
        self.clips_dir = clips_dir
        self.settings = settings or RunnerSettings()
        self.retention = retention
        self.links = links
        """Signs the clip links the bot's HTTP server serves (None: no ``KLINGBOT_PUBLIC_URL``)."""
        """Removes old input images and clips; swept from :meth:`start` until :meth:`stop`."""
        self._monotonic = monotonic
        self._sleep = sleep
        self.leases = leases
        """Job ownership shared with other replicas (None: the only runner on its database)."""
        self.replica_id = replica_id or uuid.uuid4().hex
        """This runner's name on the jobs it owns; ``klingbot run`` passes ``KLINGBOT_REPLICA_ID``,
        a runner built without one (tests) gets a new name of its own."""
        self.lease_s = lease_s
        self._wall = wall
        if leases is not None:
            # A delivery claim is a lease too: fresh for one lease, renewed while the clip goes.
            self.settings = replace(self.settings, delivery_claim_s=max(1, math.ceil(lease_s)))
        self.runner_id = self.replica_id if leases is not None else uuid.uuid4().hex
        """This runner's name on the delivery claims it takes (one per process run, or the
        replica's id with leases, so an adopter drops the claims of the replica it adopts from)."""
        self._replica = _ReplicaQueue()
        """With leases: the queue's order, slots refused, and positions counted in the database."""
        self._keeper: LeaseKeeper | None = None
        if leases is not None:
            self._keeper = LeaseKeeper(
                leases,
                self.replica_id,
                lease_s=lease_s,
                tick_s=max(self.settings.poll_interval_s * self.settings.time_scale, 0.001),
                wall=wall,
                sleep=sleep,
                monotonic=monotonic,
                local_jobs=self._local_jobs,
                lost=self._lost,
                adopted=self._adopt,
                tick=self._tick,
            )
        self._waiting: list[tuple[str, str, JobRecord]] = []
        """Jobs paid for and waiting for a slot, in order: (job id, member, packed job).

        Packed (:func:`~bot.jobs.model.pack_job`): a long queue is plain values
        the garbage collector stops tracking, like the jobs between polls."""
        self._running: dict[str, str] = {}
        """Started job id -> its member (``platform:id``), until the job leaves the provider."""
        self._running_users: Counter[str] = Counter()
        self._tasks: dict[str, asyncio.Task[Watch | None]] = {}
        """The step under way of a started job (a submit, a poll, a delivery), if any."""
        self._no_steps = asyncio.Event()
        self._no_steps.set()
        self._polls = Polls(
            start=lambda watch: self._step(watch.job, self._life.step(watch)),
            busy=self._tasks.__contains__,
            sleep=sleep,
            monotonic=monotonic,
        )
        """Started jobs between two polls, and the loop that polls them."""
        provider.listen(self._polls.poke)
        self._board = StatusBoard(store, outbox, self.settings.status_interval_s, monotonic)
        self._life = JobLifecycle(
            store=store,
            provider=provider,
            outbox=outbox,
            catalog=catalog,
            clock=clock,
            waits=waits,
            clips_dir=clips_dir,
            settings=self.settings,
            board=self._board,
            sleep=sleep,
            monotonic=monotonic,
            running_count=lambda: len(self._running),
            on_settled=self._settle,
            claimant=self.runner_id,
            links=links,
            claim_refresh_s=lease_s / 3 if leases is not None else None,
            inputs=inputs,
        )
        self._delivery = self._life.delivery
        self.compares = CompareFinisher(
            store=store,
            outbox=outbox,
            catalog=catalog,
            clock=clock,
            clips_dir=clips_dir,
            claimant=self.runner_id,
            provider=provider,
        )
        """Sends a ``/compare``'s side-by-side clip once the last of its jobs is over."""
        self._settled: dict[str, asyncio.Event] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._positions: dict[str, int] = {}
        """Job id -> the queue position its member was last shown."""
        self._stopping = False
        self._loaded = False
        self._undelivered: list[str] = []
        """Made, not yet delivered jobs :meth:`load` found: their sends resume at :meth:`start`."""
        self._started = False
        self._background: set[asyncio.Task[None]] = set()

    # --- public -----------------------------------------------------------------

    async def load(self) -> None:
        """Queue every unfinished job found in the store, once; nothing starts before :meth:`start`.

        Called before any adapter takes input (``app.bootstrap.open_core``
        does), so the snapshot holds only jobs of earlier runs: a press that
        arrives afterwards, even one from a platform's backlog handed over
        while another adapter is still connecting, makes a job this snapshot
        cannot contain, which :meth:`admit` queues behind them. Each job is
        therefore queued once and launched once, by :meth:`_schedule`, and
        only after :meth:`start`, when every adapter's outbox can reach its chats.

        Jobs the provider already has (submitted, running) go first, then the
        queued ones in the order they were paid for; all of them wait for a
        slot like new jobs, so a restart
        never starts more than ``per_provider`` at once nor more than
        ``per_user`` for one member. A queued job was paid for and never
        sent anywhere: it is queued again, not refunded, and its member sees
        their queue position again. A clip made but not yet delivered needs
        no slot: it is tried again at once, and on its schedule after that.
        """
        if self._loaded:
            return
        self._loaded = True
        if self._keeper is not None:
            # Shared database: the jobs of this replica's earlier run (same id), of replicas
            # whose leases lapsed, and unowned ones; those of live replicas stay theirs.
            self._adopt(await self._keeper.adopt_all(own=True))
            # Renewed from now on, not from start(): adapters may take long to connect.
            keeping = asyncio.create_task(self._keeper.run(), name="job-leases")
            self._background.add(keeping)
            keeping.add_done_callback(self._background.discard)
            return
        unfinished = await self.store.unfinished_jobs()  # in the order they were created
        known = {job_id for job_id, _, _ in self._waiting} | set(self._running)
        self._undelivered = [job.job_id for job in unfinished if job.state == "succeeded"]
        unfinished = [job for job in unfinished if job.state != "succeeded"]
        in_flight = [job for job in unfinished if job.state != "held" or job.attempts > 0]
        queued = [job for job in unfinished if job.state == "held" and job.attempts == 0]
        for job in (*in_flight, *queued):
            if job.job_id in known:  # admitted in this process already (a caller loaded late)
                continue
            log.info("resuming job %s in state %s", job.job_id, job.state)
            self._idle.clear()
            self._waiting.append(_queued(job))
            if job.state == "held" and job.status_message:
                self._positions[job.job_id] = 0  # not shown since the restart: show it

    async def start(self) -> None:
        """Start driving jobs: those :meth:`load` queued and those admitted since, in order.

        Loads first if nothing did. Called once every adapter has registered
        its outbox, so resumed jobs can reach their chats.
        """
        self.clips_dir.mkdir(parents=True, exist_ok=True)
        await self.load()
        if self._started:
            return
        self._started = True
        self._schedule()
        for job_id in self._undelivered:
            log.info("resuming the delivery of job %s", job_id)
            self._delivery.resume(job_id)
        self._undelivered.clear()
        if not self._stopping:  # alone on the database (no leases): every claim is a dead one's
            self.compares.resume(sole=self.leases is None)
        if self.retention is not None and not self._stopping:
            sweeping = asyncio.create_task(self.retention.run(), name="retention")
            self._background.add(sweeping)
            sweeping.add_done_callback(self._background.discard)

    async def admit(self, job: Job) -> None:
        """A member pressed a tier and the hold is made: show its status, then queue it.

        The status message is sent and stored before the job can start, so a
        job never ends up with two status messages. Nothing here may leave a
        paid job behind: if the platform or the store fails, the job is
        queued all the same.
        """
        self._idle.clear()
        position = len(self._waiting) + 1
        if self.leases is not None:
            try:
                if not await self.leases.claim(
                    job.job_id, self.replica_id, now=self._wall(), lease_s=self.lease_s
                ):
                    # Another replica adopted it in the instant since it was made: it drives it.
                    log.info("job %s is driven by another replica", job.job_id)
                    self._schedule()
                    return
                position = await self.leases.position(job.job_id) or position
                self._replica.positions[job.job_id] = position
            except Exception:  # paid for: queued here all the same, adopted if this replica dies
                log.exception("could not claim job %s", job.job_id)
        try:
            message_id = await self.outbox.send(
                job.chat, status.queued(job, self.catalog, position), job.locale
            )
        except Undeliverable as refused:  # the platform refuses this chat for good: no traceback
            log.warning("no status message for job %s: %s", job.job_id, refused)
        except Exception:
            log.exception("could not send the status message of job %s", job.job_id)
        else:
            try:
                if await self.store.update(job.job_id, "held", status_message=message_id):
                    job = await self._life.reload(job)
            except Exception:  # paid for: it runs even if its status message was not noted
                log.exception("could not note the status message of job %s", job.job_id)
                job = replace(job, status_message=message_id)
        if job.state != "held":  # cancelled while its status message was on its way
            self._schedule()
            return
        self._enqueue(job)
        self._positions[job.job_id] = position
        self._schedule()

    async def cancel(self, job: Job) -> CancelResult:
        """Cancel a queued or running job, releasing its credits, if the provider allows."""
        now = self.clock.now()
        step = self._tasks.get(job.job_id)
        sending = job.state == "held" and step is not None and step is not asyncio.current_task()
        if sending and not self.provider.stops_tasks:
            assert step is not None
            return await self._cancel_sending(job, step)
        if job.state == "held":
            moved = await self.store.transition(
                job.job_id, ("held",), "cancelled", now=now, finished_at=now
            )
            if moved is not None:
                # A job already launched is inside provider.submit: its own
                # compare-and-set fails next and it cancels the task at the
                # provider, so it is left to finish that step.
                self._waiting = [w for w in self._waiting if w[0] != job.job_id]
                self._positions.pop(job.job_id, None)
                await self._board.show(moved, status.cancelled(moved, self.catalog), force=True)
                self._settle(job.job_id)
                self._schedule()
                return "cancelled"
            job = await self._life.reload(job)
        if job.state in ("submitted", "running") and job.task_id:
            if not await self._life.provider_cancel(job.task_id):
                return "too_late"
            moved = await self.store.transition(
                job.job_id, ("submitted", "running"), "cancelled", now=now, finished_at=now
            )
            if moved is None:
                return "finished"
            self._stop_task(job.job_id)
            await self._board.show(moved, status.cancelled(moved, self.catalog), force=True)
            self._settle(job.job_id)
            return "cancelled"
        return "finished" if job.state in (*TERMINAL, "succeeded") else "unknown"

    async def _cancel_sending(self, job: Job, step: asyncio.Task[Watch | None]) -> CancelResult:
        """Cancel a job whose submit is under way, with a provider that cannot stop tasks.

        The provider may already have the job's task, and would bill it. The
        submit is stopped (a create already sent still gets its answer,
        inside the provider); then, as before any refund of a job that was
        sent, the provider is asked for the job's task. A task it has is
        followed: the job goes on and is paid for, and the member hears that
        it is too late, as for any task the provider cannot stop. Without
        one, the job is cancelled and its credits released.
        """
        step.cancel()
        await asyncio.wait({step})  # its slot is freed once it has stopped
        job = await self._life.reload(job)
        if job.state == "held":
            task_id = await self._life.last_look(job)
            if task_id is not None:
                now = self.clock.now()
                moved = await self.store.transition(
                    job.job_id, ("held",), "submitted", now=now, task_id=task_id, submitted_at=now
                )
                job = moved or await self._life.reload(job)
        # No step any more: a held job is cancelled and refunded, a started one asks the provider.
        result = await self.cancel(job)
        current = await self._life.reload(job)
        going_on = current.state in ("submitted", "running", "succeeded")
        if going_on and current.job_id not in self._running and not self._stopping:
            self._launch(current)  # the stopped step's work goes on
        return result

    async def resend(self, job: Job) -> ResendResult:
        """Send again: try a made, not yet delivered clip at once (never twice at the same time)."""
        current = await self.store.get_job(job.job_id)
        if current is None or current.state != "succeeded":
            return "finished"
        if self._delivery.sending(job.job_id) or not self.alive:
            return "busy"
        self._delivery.retries.now(job.job_id)
        return "sending"

    async def settled(self, job_id: str) -> None:
        """Wait until the job is delivered, failed or cancelled (for tests and shutdown)."""
        event = self._settled.setdefault(job_id, asyncio.Event())
        job = await self.store.get_job(job_id)
        if job is None or job.state in TERMINAL:
            if self._settled.get(job_id) is event and not event.is_set():
                del self._settled[job_id]
            return
        await event.wait()

    async def idle(self) -> None:
        """Wait until nothing is left to do.

        No job queued or running, no made clip waiting for its next send, and
        no compare's side-by-side clip being made.
        """
        while True:
            await self._idle.wait()
            await self._delivery.retries.drained()
            await self.compares.drained()
            if self._idle.is_set():
                return

    async def between_steps(self) -> None:
        """Wait until no step of any job is under way: every started job waits for its next poll."""
        await self._no_steps.wait()

    def polling_count(self) -> int:
        """Started jobs waiting for their next poll (a record each, no task)."""
        return len(self._polls)

    def position(self, job_id: str) -> int | None:
        """1-based place in the queue, or None if the job is not waiting.

        With leases, the place among every replica's queued jobs as last counted.
        """
        if self.leases is not None:
            waiting = any(waiting_id == job_id for waiting_id, _, _ in self._waiting)
            return self._replica.positions.get(job_id) if waiting else None
        for index, (waiting_id, _, _) in enumerate(self._waiting, start=1):
            if waiting_id == job_id:
                return index
        return None

    def active_count(self) -> int:
        """Jobs queued or running in this process."""
        return len(self._waiting) + len(self._running)

    def waiting_count(self) -> int:
        """Jobs paid for and waiting for a slot (the queue's length)."""
        return len(self._waiting)

    def running_count(self) -> int:
        """Jobs started and not yet settled in this process."""
        return len(self._running)

    @property
    def alive(self) -> bool:
        """Started and not stopping: new and resumed jobs get driven (for health checks)."""
        return self._started and not self._stopping

    async def stop(self) -> None:
        """Stop driving jobs; their state stays in the store for the next start."""
        self._stopping = True
        self._waiting.clear()  # nothing new may start while the running ones stop
        await self._polls.stop()  # nor any poll
        await self._delivery.retries.stop()  # nor any retried send: the rows keep the schedule
        await self.compares.stop()
        tasks = [*self._tasks.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A clip that went out is recorded as delivered before anything is let go.
        await self._delivery.recorded(RECORD_PATIENCE_S)
        self._tasks.clear()
        self._no_steps.set()
        self._waiting.clear()
        self._running.clear()
        self._running_users.clear()
        if self.leases is not None and self._loaded:
            try:  # other replicas adopt them at their next look, not a lease later
                released = await self.leases.release(self.replica_id, now=self._wall())
            except Exception as error:
                log.warning("the job leases of replica %s stay: %s", self.replica_id, error)
            else:
                if released:
                    log.info("replica %s let go of %d jobs", self.replica_id, released)

    # --- scheduling -------------------------------------------------------------

    def _schedule(self) -> None:
        if self._stopping or not self._started:  # before start(): admitted jobs wait in order
            return
        limit = self.settings
        for entry in list(self._waiting):
            if len(self._running) >= limit.per_provider or self._replica.provider_full:
                break
            job_id, user, record = entry
            if self._running_users[user] >= limit.per_user or user in self._replica.users_full:
                continue
            if job_id in self._replica.after_older:
                continue
            self._waiting.remove(entry)
            if self.leases is None:  # with leases, once the database gave it a slot
                self._positions.pop(job_id, None)
            self._launch(unpack_job(record))
        self._show_positions()
        if not self._waiting and not self._running:
            self._polls.forget_early()
            self._idle.set()
        else:
            self._idle.clear()

    def _show_positions(self) -> None:
        """Tell waiting members their new place in the queue when it moved.

        Throttled like any status edit, and checked here before a task is made,
        so a long queue moving by one costs a dictionary look-up per job.
        With leases the places are counted in the database, among every
        replica's queued jobs (:meth:`_count_positions`).
        """
        if self.leases is not None:
            self._count_positions()
            return
        now = self._monotonic()
        for position, (job_id, _, record) in enumerate(self._waiting, start=1):
            shown = self._positions.get(job_id)
            if shown is not None and shown != position:
                self._show_place(job_id, record, position, now)

    def _show_place(self, job_id: str, record: JobRecord, position: int, now: float) -> None:
        """Edit a waiting job's status if its place differs from the one its member saw."""
        shown = self._positions.get(job_id)
        if shown is None or shown == position or not self._board.due(job_id, now):
            return
        job = unpack_job(record)
        if not job.status_message:
            return
        self._positions[job_id] = position
        reply = status.queued(job, self.catalog, position)
        self._background_task(self._board.show(job, reply), f"position-{job_id}")

    def _launch(self, job: Job) -> None:
        self._idle.clear()
        self._board.forget(job.job_id)  # "generating" must show at once
        user = str(job.user)
        self._running[job.job_id] = user
        self._running_users[user] += 1
        if self.leases is None:
            self._step(job, self._life.begin(job), starting=True)
            return
        self._replica.starting[job.job_id] = _queued(job)
        self._step(job, self._begin_in_slot(job))  # "starts" is logged once it has its slot

    async def _begin_in_slot(self, job: Job) -> Watch | None:
        """Take the job's slot in the database (limits of all replicas), then begin it."""
        assert self.leases is not None
        user = str(job.user)
        async with self._replica.taking:  # one at a time, in queue order: the oldest asks first
            if self._replica.provider_full or user in self._replica.users_full:
                taken: Job | Refusal = "provider"  # an older job was just refused: wait with it
            else:
                try:
                    taken = await self.leases.take_slot(
                        job.job_id,
                        self.replica_id,
                        per_provider=self.settings.per_provider,
                        per_user=self.settings.per_user,
                        now=self._wall(),
                    )
                except Exception as error:  # the database is away: the job waits in its place
                    log.warning("no slot for job %s now: %s", job.job_id, error)
                    taken = "provider"
                if taken == "user":
                    self._replica.users_full.add(user)
                elif taken == "provider":
                    self._replica.provider_full = True
                elif taken == "older":
                    # Its turn comes after another replica's job; the next one here may be
                    # older than that (each replica's queue is in its own order).
                    self._replica.after_older.add(job.job_id)
        if isinstance(taken, str):
            log.debug("job %s gets no slot yet (%s)", job.job_id, taken)
            raise _NoSlot(taken)
        log.info("job %s starts in state %s", taken.short_id, taken.state)
        self._replica.starting.pop(job.job_id, None)
        self._positions.pop(job.job_id, None)
        return await self._life.begin(taken)

    def _step(
        self, job: Job, work: Coroutine[object, object, Watch | None], *, starting: bool = False
    ) -> None:
        """Run one step of a started job as a task; :meth:`_stepped` takes its outcome."""
        # The step logs with the job's id, tier, platform and user (``app.logs``).
        context = contextvars.copy_context()
        context.run(
            job_context.set,
            {
                "job": job.job_id,
                "tier": job.tier,
                "platform": job.user.platform,
                "user": str(job.user),
            },
        )
        if starting:
            context.run(log.info, "job %s starts in state %s", job.short_id, job.state)
        task = asyncio.create_task(work, name=f"job-{job.job_id}", context=context)
        self._tasks[job.job_id] = task
        self._no_steps.clear()
        # The id, not the Job: a finished Job copy must not stay alive with the task.
        task.add_done_callback(functools.partial(self._stepped, job.job_id))

    def _stepped(self, job_id: str, task: asyncio.Task[Watch | None]) -> None:
        if self._tasks.get(job_id) is task:
            del self._tasks[job_id]
        if not self._tasks:
            self._no_steps.set()
        watch = None
        entry = self._replica.starting.pop(job_id, None)
        if not task.cancelled() and isinstance(task.exception(), _NoSlot):
            self._no_slot(job_id, entry, task.exception())  # type: ignore[arg-type]
            return
        if not task.cancelled():
            if task.exception() is not None:
                log.error("job %s step failed", job_id, exc_info=task.exception())
            else:
                watch = task.result()
        if watch is None or self._stopping or job_id not in self._running:
            self._leave(job_id)
            return
        self._polls.put(watch)

    def _leave(self, job_id: str) -> None:
        """The job no longer needs the provider: free its slot and its image's local copy."""
        self._polls.remove(job_id)
        self._life.inputs.release(job_id)
        user = self._running.pop(job_id, None)
        if user is None:
            return
        self._running_users[user] -= 1
        if self._running_users[user] <= 0:
            del self._running_users[user]
        self._board.forget(job_id)
        if self.leases is not None and not self._stopping:
            self._background_task(self._free_slot(job_id), f"free-{job_id}")
        self._schedule()

    def _stop_task(self, job_id: str) -> None:
        """Stop a cancelled job: its step under way, or its place in the poll loop."""
        task = self._tasks.get(job_id)
        if task is not None and task is not asyncio.current_task():
            task.cancel()  # its done callback frees the slot
        elif task is None:
            self._leave(job_id)

    def _settle(self, job_id: str) -> None:
        if not self._stopping:
            self.compares.settled(job_id)
        event = self._settled.pop(job_id, None)
        if event is not None:
            event.set()

    def _background_task(self, work: Coroutine[object, object, object], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)  # type: ignore[arg-type]
        task.add_done_callback(self._background.discard)  # type: ignore[arg-type]

    # --- jobs across replicas (with leases) -----------------------------------------

    def _enqueue(self, job: Job, *, resumed: bool = False) -> None:
        """Queue a job: at the end, or with leases in its place (resumed ones first, then age)."""
        entry = _queued(job)
        if self.leases is None:
            self._waiting.append(entry)
            return
        key = (0 if resumed else 1, job.created_at, next(self._replica.order))
        self._replica.keys[job.job_id] = key
        self._insert(entry)

    def _insert(self, entry: tuple[str, str, JobRecord]) -> None:
        keys = [self._replica.keys.get(job_id, _LAST) for job_id, _, _ in self._waiting]
        index = bisect.bisect_right(keys, self._replica.keys.get(entry[0], _LAST))
        self._waiting.insert(index, entry)

    def _no_slot(self, job_id: str, entry: tuple[str, str, JobRecord] | None, no: _NoSlot) -> None:
        """The database gave a starting job no slot: back to its place, or forgotten if gone."""
        user = self._running.pop(job_id, None)
        if user is not None:
            self._running_users[user] -= 1
            if self._running_users[user] <= 0:
                del self._running_users[user]
        if no.reason == "gone" or entry is None or self._stopping:
            # Finished, cancelled, or another replica's now: nothing more to do here.
            self._replica.keys.pop(job_id, None)
            self._positions.pop(job_id, None)
        else:  # back to its place until the next tick (the refusal marked what is full)
            self._insert(entry)
        self._schedule()

    async def _free_slot(self, job_id: str) -> None:
        assert self.leases is not None
        try:
            await self.leases.free_slot(job_id, self.replica_id)
        except Exception as error:
            log.warning("the slot of job %s stays taken: %s", job_id, error)
        self._tick()

    def _tick(self) -> None:
        """Try the queue again: a slot may have been freed here or by another replica."""
        self._replica.provider_full = False
        self._replica.users_full.clear()
        self._replica.after_older.clear()
        self._schedule()

    def _local_jobs(self) -> set[str]:
        """Jobs this replica drives: queued or started."""
        return {job_id for job_id, _, _ in self._waiting} | set(self._running)

    async def _lost(self, job_ids: set[str]) -> None:
        """Jobs whose lease this replica lost (it stalled, another adopted them): let them go.

        A job finished meanwhile is not lost, only done.
        """
        for job_id in job_ids:
            job = await self.store.get_job(job_id)
            if job is None or job.state in TERMINAL:
                continue
            log.warning("replica %s lost job %s to another replica", self.replica_id, job_id)
            self._waiting = [entry for entry in self._waiting if entry[0] != job_id]
            self._replica.keys.pop(job_id, None)
            self._positions.pop(job_id, None)
            task = self._tasks.get(job_id)
            if task is not None:
                task.cancel()  # its done callback frees the local slot
            else:
                self._leave(job_id)
        self._schedule()

    def _adopt(self, adopted: list[Adopted]) -> None:
        """Drive the jobs this replica took over, exactly as after a restart (:meth:`load`)."""
        known = self._local_jobs()
        for taken in adopted:
            job = taken.job
            if job.job_id in known:  # renewed late, adopted back: still driven here
                continue
            if job.state == "succeeded":
                if self._started:
                    log.info("resuming the delivery of job %s", job.job_id)
                    self._delivery.resume(job.job_id)
                else:
                    self._undelivered.append(job.job_id)
                continue
            log.info("resuming job %s in state %s", job.job_id, job.state)
            self._idle.clear()
            self._enqueue(job, resumed=job.state != "held" or job.attempts > 0)
            if job.state == "held" and job.status_message:
                self._positions[job.job_id] = 0  # not shown by this replica yet: show it
        self._schedule()

    def _count_positions(self) -> None:
        """Count the waiting jobs' places in the database (one count at a time), then show them."""
        if self._replica.counting is not None:
            self._replica.count_again = True
            return
        if not self._waiting or self._stopping:
            return
        counting = asyncio.create_task(self._counted(), name="positions")
        self._replica.counting = counting
        self._background.add(counting)
        counting.add_done_callback(self._background.discard)

    async def _counted(self) -> None:
        assert self.leases is not None
        try:
            while True:
                self._replica.count_again = False
                try:
                    places = await self.leases.positions(self.replica_id)
                except Exception as error:
                    log.warning("queue positions not counted: %s", error)
                    return
                self._replica.positions = places
                now = self._monotonic()
                for job_id, _, record in self._waiting:
                    position = places.get(job_id)
                    if position is not None:
                        self._show_place(job_id, record, position, now)
                if not self._replica.count_again:
                    return
        finally:
            self._replica.counting = None


_LAST = (2, 0, 0)
"""The order key of a queue entry that has none (it goes last)."""


class _NoSlot(Exception):
    """The database refused a starting job a slot (:data:`bot.jobs.leases.Refusal`)."""

    def __init__(self, reason: Refusal) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _ReplicaQueue:
    """The runner's queue bookkeeping when replicas share the database."""

    keys: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """Waiting job id -> its order: resumed jobs first, then by age, then by arrival."""
    order: itertools.count[int] = field(default_factory=itertools.count)
    starting: dict[str, tuple[str, str, JobRecord]] = field(default_factory=dict)
    """Launched jobs asking for their slot: their queue entry, to go back to on a refusal."""
    provider_full: bool = False
    """The provider's slots are all taken: wait a tick."""
    after_older: set[str] = field(default_factory=set)
    """Jobs refused because an older job of another replica goes first: they wait a tick,
    while the jobs behind them here still ask. Stopping at the first of them instead, two
    replicas could each wait forever on a job the other one queued behind its own."""
    users_full: set[str] = field(default_factory=set)
    """Members whose slots are all taken across replicas: their jobs wait a tick."""
    positions: dict[str, int] = field(default_factory=dict)
    """This replica's queued jobs -> their place among every replica's, as last counted."""
    counting: asyncio.Task[None] | None = None
    count_again: bool = False
    taking: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while a slot is asked for: a replica's jobs ask in the order they were launched."""


def _queued(job: Job) -> tuple[str, str, JobRecord]:
    """A job's entry in the queue: its id, its member, the job packed."""
    return (job.job_id, str(job.user), pack_job(job))
