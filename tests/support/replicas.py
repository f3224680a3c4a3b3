"""Two or more job runners (replicas) on one database, in one process.

Each :class:`Replica` is a real :class:`~bot.jobs.runner.JobRunner` with its
own connection to the database (its own ``Database`` on the SQLite file, or
its own pool on PostgreSQL), its own chat outbox and its own replica id,
sharing one :class:`Service` (the remote video service, whose tasks outlive
any replica). :meth:`Replica.die` stops a replica the way SIGKILL does as far
as the database can tell: from that instant nothing it would write arrives
(no lease released, no claim given back, no state moved).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.commands import ChatRef, UserRef
from bot.errors import StorageUnavailable
from bot.jobs.leases import JobLeases
from bot.jobs.limits import RunnerSettings
from bot.jobs.model import Job, Quote
from bot.jobs.runner import JobRunner
from bot.jobs.store import JobStore
from bot.jobs.waits import ExpectedWaits
from bot.ports import Ledger, Outbox, UserProfile
from bot.providers.base import GenerationRequest
from bot.replies import Reply
from bot.settings import Settings
from tests.e2e.recovery_support import RemoteService

GUARD_S = 20.0
"""Real seconds any single wait may take before the test fails instead of hanging."""


class Pulse:
    """An event that wakes every waiter each time something changed."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def __call__(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def until(self, condition: Callable[[], bool], timeout: float = GUARD_S) -> None:
        async def waiting() -> None:
            while not condition():
                await self._event.wait()

        await asyncio.wait_for(waiting(), timeout)


class Service(RemoteService):
    """The remote video service: counts submits, and the tasks it renders at once."""

    def __init__(self, clip: Path) -> None:
        super().__init__(clip, running_polls=0)
        self.changed = Pulse()
        self.most_at_once = 0
        self.at_submits: list[set[str]] = []
        """The tasks rendering right after each submit."""
        self.polled_at: dict[str, list[float]] = {}
        """Task id -> when (monotonic) each poll of it came."""

    def rendering(self) -> int:
        return len(self.rendering_now())

    def rendering_now(self) -> set[str]:
        return {i for i, task in self.tasks.items() if not task.done and not task.cancelled}

    async def submit(self, request: GenerationRequest) -> str:
        task_id = await super().submit(request)
        self.most_at_once = max(self.most_at_once, self.rendering())
        self.at_submits.append(self.rendering_now())
        self.changed()
        return task_id

    async def poll(self, task_id: str):  # type: ignore[override]
        self.polled_at.setdefault(task_id, []).append(time.monotonic())
        self.changed()
        return await super().poll(task_id)

    def finish(self, task_id: str) -> None:
        super().finish(task_id)
        self.changed()

    def finish_all(self) -> None:
        for task_id, task in self.tasks.items():
            if not task.done:
                self.finish(task_id)


class Chats(Outbox):
    """The members' chats as one replica reaches them: every message kept, clips counted.

    With ``hang_uploads`` set, a clip upload never answers (the replica dies mid-send).
    """

    def __init__(self) -> None:
        self.sent: list[tuple[ChatRef, Reply]] = []
        self.edits: list[tuple[ChatRef, str, Reply]] = []
        self.clips: Counter[str] = Counter()
        self.hang_uploads = False
        self.uploading = asyncio.Event()
        self.changed = Pulse()

    async def send(self, chat: ChatRef, reply: Reply, locale: str) -> str:
        if reply.video is not None:
            self.uploading.set()
            if self.hang_uploads:
                await asyncio.Event().wait()
            self.clips[reply.video.stem] += 1
        self.sent.append((chat, reply))
        self.changed()
        return str(len(self.sent))

    async def edit(self, chat: ChatRef, message_id: str, reply: Reply, locale: str) -> None:
        self.edits.append((chat, message_id, reply))
        self.changed()

    def positions(self, job: Job) -> list[int]:
        """The queue positions shown for ``job``, in order."""
        shown = [reply for _, reply in self.sent] + [reply for _, _, reply in self.edits]
        return [
            reply.lines[0].params["position"]
            for reply in shown
            if reply.lines[0].key == "status.queued"
            and reply.lines[0].params["job"] == job.short_id
        ]


class Mortal:
    """A port whose calls fail once its replica died (a killed process writes nothing)."""

    def __init__(self, inner: Any, owner: Replica) -> None:
        self._inner = inner
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if not callable(value):
            return value

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self._owner.stalled and name == "renew":
                raise StorageUnavailable(f"replica {self._owner.name} stalls")
            if self._owner.dead:  # the process is gone: nothing it writes arrives
                raise StorageUnavailable(f"replica {self._owner.name} is dead")
            if name == "take_slot" and self._owner.failing_takes > 0:
                self._owner.failing_takes -= 1
                raise StorageUnavailable("the database does not answer")
            if name == "transition" and args[2:3] == ("delivered",):
                await self._owner.recording.wait()
            result = await value(*args, **kwargs)
            if self._owner.dead:  # it died while the database answered: the answer is lost
                raise StorageUnavailable(f"replica {self._owner.name} is dead")
            return result

        return call


@dataclass
class Backend:
    """How to open one more connection to the shared database, and what lives on it."""

    name: str
    connect: Callable[[], Any]
    """An async context manager: one replica's connection (a Database, a PgDatabase)."""
    store: Callable[[Any], JobStore]
    leases: Callable[[Any], JobLeases]
    ledger: Callable[[Any], Ledger]
    audit: Callable[[Any], Awaitable[list[str]]]
    kinds: Callable[[Any, str], Awaitable[list[str]]]
    """The kinds of the ledger entries of one hold, oldest first."""


@dataclass
class Replica:
    """One replica: its runner, its chats, its connection."""

    name: str
    runner: JobRunner
    chats: Chats
    store: JobStore
    leases: JobLeases
    ledger: Ledger
    connection: Any
    adopted: list[tuple[float, int]] = field(default_factory=list)
    """(monotonic time, jobs) of every adoption that took jobs."""
    dead: bool = False
    stalled: bool = False
    """Its lease renewals fail (a long pause, a network partition): it goes on otherwise."""
    renewals: Pulse = field(default_factory=Pulse)
    renewed: int = 0
    """How many lease renewals it attempted."""
    failing_takes: int = 0
    """How many of its next requests for a slot fail (the database away for a moment)."""
    recording: asyncio.Event = field(default_factory=asyncio.Event)
    """Its writes that record a delivery wait for this (set: they go at once)."""

    def __post_init__(self) -> None:
        self.recording.set()

    async def die(self) -> None:
        """Stop at once, as SIGKILL does: the database hears nothing more from this replica."""
        self.dead = True
        await self.runner.stop()


class Recording:
    """A JobLeases that notes when adoptions took jobs (for failover times)."""

    def __init__(self, inner: JobLeases, replica: Replica, pulse: Pulse) -> None:
        self._inner = inner
        self._replica = replica
        self._adopted = replica.adopted
        self._pulse = pulse

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def renew(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self._inner.renew(*args, **kwargs)
        finally:
            self._replica.renewed += 1
            self._replica.renewals()

    async def adopt(self, *args: Any, **kwargs: Any) -> Any:
        taken = await self._inner.adopt(*args, **kwargs)
        if taken:
            self._adopted.append((time.monotonic(), len(taken)))
            self._pulse()
        return taken


class Cluster:
    """Replicas on one database, one service, one ledger of the members' money."""

    def __init__(self, backend: Backend, service: Service, clips: Path, **settings: Any) -> None:
        self.backend = backend
        self.service = service
        self.clips = clips
        self.lease_s: float = settings.pop("lease_s", 0.3)
        self.settings = RunnerSettings(
            **{
                "per_user": 2,
                "per_provider": 3,
                "status_interval_s": 0.0,
                "poll_interval_s": 0.02,
                "backoff_s": 0.01,
                **settings,
            }
        )
        self.catalog = Settings().catalog()
        self.adoptions = Pulse()
        self._stack = AsyncExitStack()
        self.replicas: list[Replica] = []
        self._users = 0

    async def __aenter__(self) -> Cluster:
        await self._stack.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for replica in self.replicas:
            if not replica.dead:
                await replica.runner.stop()
        await self._stack.__aexit__(*exc)

    async def replica(
        self, name: str, *, start: bool = True, lease_s: float | None = None
    ) -> Replica:
        """Open a replica called ``name`` (its replica id), loaded and, with ``start``, started."""
        connection = await self._stack.enter_async_context(self.backend.connect())
        chats = Chats()
        adopted: list[tuple[float, int]] = []
        replica = Replica(
            name,
            None,  # type: ignore[arg-type]
            chats,
            self.backend.store(connection),
            self.backend.leases(connection),
            self.backend.ledger(connection),
            connection,
            adopted,
        )
        leases = Recording(Mortal(replica.leases, replica), replica, self.adoptions)  # type: ignore[arg-type]
        replica.runner = JobRunner(
            store=Mortal(replica.store, replica),  # type: ignore[arg-type]
            provider=self.service,
            outbox=chats,
            catalog=self.catalog,
            clock=_Clock(),
            waits=ExpectedWaits(self.catalog, 1.0),
            clips_dir=self.clips / name,
            settings=self.settings,
            leases=leases,  # type: ignore[arg-type]
            replica_id=name,
            lease_s=lease_s or self.lease_s,
        )
        self.replicas.append(replica)
        await replica.runner.load()
        if start:
            await replica.runner.start()
        return replica

    async def order(self, replica: Replica, user: str | None = None) -> Job:
        """A member pays for a Standard clip at ``replica``: the hold, the job, its admission."""
        self._users += 1
        n = self._users
        member = UserRef("telegram", user or f"member-{n}")
        now = int(time.time())
        await replica.ledger.open_wallet(UserProfile(member, member.id), welcome_credits=0, now=now)
        await replica.ledger.top_up(
            member, 100, key=f"fund:{member}:{n}", actor="t", reason="", now=now
        )
        job = await self.create(replica, member, now)
        await replica.runner.admit(job)
        return job

    async def create(self, replica: Replica, member: UserRef, now: int) -> Job:
        """The hold and the job, not yet admitted by any runner (a press mid-way)."""
        self._users += 1
        n = self._users  # the counter moves on while this press awaits
        quote_id = f"q-{n}-{member.id}"
        tier = self.catalog.tier("standard")
        chat = ChatRef(member.platform, member.id)
        await replica.store.save_quote(
            Quote(
                quote_id,
                member,
                chat,
                "en",
                None,
                "a robot waves",
                "",
                5,
                ("standard",),
                "open",
                now,
                now + 600,
            )
        )
        job = Job(
            job_id=f"job-{n:04d}-{member.id}",
            quote_id=quote_id,
            user=member,
            chat=chat,
            locale="en",
            tier=tier.key,
            model=tier.model,
            mode=tier.mode,
            resolution=tier.resolution,
            duration_s=5,
            price=tier.price(5),
            expected_wait_s=tier.expected_wait(5),
            prompt="a robot waves",
            negative_prompt="",
            image_path=None,
            state="held",
            provider=self.service.name,
        )
        return await replica.store.create_job(job, max_active=100, now=now)

    def clips_sent(self) -> Counter[str]:
        """Clips every member got, per job, from any replica."""
        total: Counter[str] = Counter()
        for replica in self.replicas:
            total += replica.chats.clips
        return total


class _Clock:
    def now(self) -> int:
        return int(time.time())


@asynccontextmanager
async def cluster(
    backend: Backend, service: Service, clips: Path, **settings: Any
) -> AsyncIterator[Cluster]:
    async with Cluster(backend, service, clips, **settings) as made:
        yield made


def submits_per_job(service: Service) -> Counter[str]:
    return Counter(service.submits)


async def all_settled(replica: Replica, jobs: list[Job]) -> None:
    await asyncio.wait_for(
        asyncio.gather(*(replica.runner.settled(job.job_id) for job in jobs)), GUARD_S
    )


async def settled_anywhere(replicas: list[Replica], jobs: list[Job]) -> None:
    """Wait until every job is delivered, failed or cancelled, by whichever replica drove it."""

    async def one(job: Job) -> None:
        waits = [asyncio.ensure_future(r.runner.settled(job.job_id)) for r in replicas]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    await asyncio.wait_for(asyncio.gather(*(one(job) for job in jobs)), GUARD_S)


def sqlite_backend(path: Path) -> Backend:
    """Every replica opens its own ``Database`` on the one SQLite file (as processes would)."""
    from storage.audit import audit
    from storage.database import Database
    from storage.jobs import SqliteJobStore
    from storage.leases import SqliteJobLeases
    from storage.ledger import SqliteLedger

    async def kinds(database: Database, hold_id: str) -> list[str]:
        rows = await database.read(
            "SELECT kind FROM ledger WHERE hold_id = ? ORDER BY seq", (hold_id,)
        )
        return [row["kind"] for row in rows]

    return Backend(
        "sqlite",
        lambda: Database(path),
        SqliteJobStore,
        SqliteJobLeases,
        SqliteLedger,
        audit,
        kinds,
    )


def postgres_backend(url: str) -> Backend:
    """Every replica opens its own pool on the one PostgreSQL database."""
    from storage.postgres.audit import audit
    from storage.postgres.database import PgDatabase
    from storage.postgres.jobs import PgJobStore
    from storage.postgres.leases import PgJobLeases
    from storage.postgres.ledger import PgLedger

    async def kinds(database: PgDatabase, hold_id: str) -> list[str]:
        rows = await database.fetch(
            "SELECT kind FROM ledger WHERE hold_id = $1 ORDER BY seq", hold_id
        )
        return [row["kind"] for row in rows]

    return Backend(
        "postgres",
        lambda: PgDatabase(url, min_size=1, max_size=3),
        PgJobStore,
        PgJobLeases,
        PgLedger,
        audit,
        kinds,
    )


__all__ = [
    "GUARD_S",
    "Backend",
    "Chats",
    "Cluster",
    "Replica",
    "Service",
    "all_settled",
    "cluster",
    "postgres_backend",
    "settled_anywhere",
    "sqlite_backend",
    "submits_per_job",
]
