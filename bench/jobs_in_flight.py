"""Jobs in flight: memory per waiting job, and the event loop's lag while /price is answered.

Run ``.venv/bin/python bench/jobs_in_flight.py`` (10,000 jobs, about four
minutes on 2 cores) or ``--quick`` (1,000 jobs, a smoke run); ``--jobs N`` picks
the number and ``--window S`` the length of the measuring windows (60 s).
The process starts as ``klingbot run`` does with a Telegram token: the
renderer's and the Telegram adapter's modules are loaded, then frozen
(:func:`app.cli.freeze_modules`). Everything goes through the real core, opened with
:func:`app.bootstrap.open_core` on a fresh SQLite file in a temporary folder:

- members (``telegram:<n>``) say ``/start`` (their wallet opens) and a
  moderator tops each one up with ``/topup telegram:<n> 1000``;
- each member sends ``/gen``: every other quote is text-only and the member
  presses **Master**, the others carry the bundled sample picture (written to
  the inputs folder, as in production) and the member presses **High
  Quality**, through :func:`bot.service.respond_to_action`; so every job has a
  hold in the ledger and a status message sent, then edited, through the
  outbox;
- the outbox stands in for a chat platform: it renders each message with the
  real translator and keeps only the latest text of every message.

The local provider's waits are stretched (``time_scale`` 100: Master waits
about 5.5 hours, High Quality 1.7 hours), so no job finishes and nothing is
rendered; ``poll_interval_s`` is 0.02 so that the runner still polls every
job every 2 s of real time (0.02 x 100), as it does in production, and status
edits follow at most every 3 s. The per-provider limit is the number of jobs
and the per-user limit the jobs per member (queue 0), so every job is really
running: a record in the runner's poll heap and one in the local
provider's wait heap.

It reports:

- resident memory per waiting job: psutil RSS with all jobs running minus
  RSS before the first quote (members already made), divided by the number of
  jobs; and the same from a second pass under ``tracemalloc`` (Python
  allocations only; 2,000 jobs by default, ``--trace-jobs``), with the files
  that hold most of it;
- the event loop's worst lag: a ticker task sleeps 1 ms in a loop and keeps the
  largest overshoot, during a window in which ``/price`` is answered 100
  times a second (6,000 calls paced over 60 s);
- ``/price`` latency p50 / p99 in that window, each call timed from when it
  was due (so calls held up by a stalled loop count in full), the same with
  no job in flight (measured first, in the same process and the same
  database), and the ratio;
- what explains the lag: the share of the window the loop's thread was on a
  CPU, the longest run of each garbage-collector generation in the window
  (``gc.callbacks``), the objects the collector tracks per job, and the wall
  time of one full collection with and without the jobs.

Nothing forces a collection between making the jobs and the end of the
window: the collector runs when it would in production. A 60 s window does
not always contain a full (generation 2) collection, so the verdict on lag
takes the worse of the window's worst lag and a full collection timed right
after the window: the lag the bot shows at all times, not on a lucky run.

Targets: under 20 KB per waiting job, worst lag under 50 ms, ``/price`` p99
under 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import linecache
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from adapters.console.chat import sample_image  # noqa: E402
from app.bootstrap import open_core  # noqa: E402
from app.cli import freeze_modules  # noqa: E402
from bot.commands import Caller, ChatRef, ImageInput, UserRef  # noqa: E402
from bot.deps import Deps  # noqa: E402
from bot.i18n import Translator  # noqa: E402
from bot.parsing import parse_gen  # noqa: E402
from bot.ports import Outbox  # noqa: E402
from bot.replies import Reply  # noqa: E402
from bot.service import respond, respond_to_action, respond_to_text  # noqa: E402
from bot.settings import Settings  # noqa: E402

PLATFORM = "telegram"
MODERATOR = UserRef(PLATFORM, "1")
TIME_SCALE = 100.0
"""Stretches the local provider's waits (the settings' upper bound)."""
POLL_INTERVAL_S = 0.02
"""Times TIME_SCALE: the runner polls each job every 2 s of real time, as in production."""
TOP_UP = 1_000
"""Credits per member: enough for ten Master clips."""
CREATORS = 64
"""Members sending /gen and pressing tiers at the same time while jobs are made."""
TARGET_KB_PER_JOB = 20
TARGET_LAG_MS = 50
TARGET_PRICE_P99_MS = 10
CALLS_PER_S = 100
"""/price calls per second in a measuring window."""
PROMPT = "a metal robot plays a black piano, the camera circles it"


# --- the chat platform stand-in ----------------------------------------------------------


class LatestTextOutbox(Outbox):
    """Renders what the runner sends and keeps the latest text of each message."""

    def __init__(self) -> None:
        self.latest: dict[str, str] = {}
        self.sends = 0
        self.edits = 0
        self._translators: dict[str, Translator] = {}

    def _render(self, reply: Reply, locale: str) -> str:
        translator = self._translators.get(locale)
        if translator is None:
            translator = self._translators[locale] = Translator(locale)
        return translator.reply(reply).text

    async def send(self, chat: ChatRef, reply: Reply, locale: str) -> str:
        """A new message; its id is a counter, as on Telegram."""
        self.sends += 1
        message_id = str(self.sends)
        self.latest[message_id] = self._render(reply, locale)
        return message_id

    async def edit(self, chat: ChatRef, message_id: str, reply: Reply, locale: str) -> None:
        """Replace the text of message ``message_id``."""
        self.edits += 1
        self.latest[message_id] = self._render(reply, locale)


# --- members ---------------------------------------------------------------------------------


def member(n: int) -> Caller:
    user = UserRef(PLATFORM, str(100_000 + n))
    return Caller(user=user, display_name=f"member {n}", username=f"m{n}", locale="en")


MODERATOR_CALLER = Caller(user=MODERATOR, display_name="moderator", locale="en")


def first_text(replies: list[Reply]) -> str:
    return replies[0].lines[0].key if replies and replies[0].lines else "(nothing)"


async def make_members(deps: Deps, members: int) -> None:
    """``/start`` opens each wallet; the moderator tops each one up."""
    for n in range(members):
        caller = member(n)
        await respond_to_text("/start", caller, deps)
        replies = await respond_to_text(
            f"/topup {caller.user} {TOP_UP} bench", MODERATOR_CALLER, deps
        )
        if first_text(replies) != "topup.done":
            raise SystemExit(f"top-up of {caller.user} failed: {first_text(replies)}")


async def make_jobs(deps: Deps, members: int, per_member: int, image: bytes) -> None:
    """Every member asks for ``per_member`` quotes and presses a tier on each."""
    gate = asyncio.Semaphore(CREATORS)

    async def one_member(n: int) -> None:
        caller = member(n)
        async with gate:
            for i in range(per_member):
                if i % 2 == 0:
                    quote = await respond_to_text(f"/gen {PROMPT} #{n}-{i}", caller, deps)
                    tier = "master"
                else:
                    picture = ImageInput.of(image, "sample.jpg")
                    quote = await respond(
                        lambda: parse_gen(f"{PROMPT} #{n}-{i}", picture),  # noqa: B023
                        caller,
                        deps,
                    )
                    tier = "high_quality"
                actions = [b.action for r in quote for b in r.buttons]
                [action] = [a for a in actions if a.startswith("tier:") and a.endswith(f":{tier}")]
                chosen = await respond_to_action(action, caller, deps)
                if first_text(chosen) != "quote.chosen":
                    raise SystemExit(f"pressing {action} failed: {first_text(chosen)}")

    await asyncio.gather(*(one_member(n) for n in range(members)))


# --- measurements -------------------------------------------------------------------------------


@dataclass
class Window:
    """What one /price window measured."""

    latencies_ms: list[float] = field(default_factory=list)
    worst_lag_ms: float = 0.0
    lags_ms: list[float] = field(default_factory=list)
    loop_cpu: float = 0.0
    """Share of the window the event loop's thread spent on a CPU."""
    gc_ms: dict[int, float] = field(default_factory=lambda: {0: 0.0, 1: 0.0, 2: 0.0})
    """The longest collection of each generation (wall time)."""
    gc_runs: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0, 2: 0})

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def lag_p(self, q: float) -> float:
        ordered = sorted(self.lags_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def ticker(stop: asyncio.Event, window: Window) -> None:
    """Sleep 1 ms again and again; keep how late each wake-up was."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(0.001)
        lag_ms = (loop.time() - before - 0.001) * 1000
        window.lags_ms.append(lag_ms)
        window.worst_lag_ms = max(window.worst_lag_ms, lag_ms)


class GcWatch:
    """Times the garbage collector's runs (``gc.callbacks``) into a window."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        elapsed_ms = (time.perf_counter() - self._started) * 1000
        self.window.gc_runs[generation] += 1
        self.window.gc_ms[generation] = max(self.window.gc_ms[generation], elapsed_ms)


async def price_window(deps: Deps, calls: int, seconds: float, members: int) -> Window:
    """Answer ``calls`` /price commands paced over ``seconds`` while the ticker watches.

    Call ``i`` is due at ``start + i * gap``; its latency runs from then, so a
    call that had to wait for a stalled loop is counted with the wait.
    """
    window = Window()
    stop = asyncio.Event()
    watch = GcWatch(window)
    gc.callbacks.append(watch)
    cpu_before, wall_before = time.thread_time(), time.perf_counter()
    watcher = asyncio.create_task(ticker(stop, window))
    translator = Translator("en")
    gap = seconds / calls
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(calls):
        due = start + i * gap
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        caller = member(i % members)
        replies = await respond_to_text("/price", caller, deps)
        rendered = translator.reply(replies[0]).text  # what the adapter would post
        window.latencies_ms.append((loop.time() - due) * 1000)
        if "Your balance" not in rendered:
            raise SystemExit(f"/price did not show the balance: {rendered!r}")
    stop.set()
    await watcher
    window.loop_cpu = (time.thread_time() - cpu_before) / (time.perf_counter() - wall_before)
    gc.callbacks.remove(watch)
    return window


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def tracked_objects() -> int:
    """Objects the cyclic garbage collector has to visit in a full collection."""
    gc.collect()
    return len(gc.get_objects())


def full_collection_ms() -> float:
    """Wall time of one full collection (the loop's pause), median of three."""
    times = []
    for _ in range(3):
        before = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - before) * 1000)
    return statistics.median(times)


async def count(deps: Deps, sql: str) -> int:
    assert deps.generation is not None
    row = await deps.generation.store.db.read_one(sql)  # type: ignore[attr-defined]
    assert row is not None
    return int(row[0])


async def check_in_flight(deps: Deps, outbox: LatestTextOutbox, jobs: int) -> None:
    """Every job is running at the provider, holds its credits and shows a status message."""
    assert deps.generation is not None
    runner = deps.generation.runner
    running = await count(deps, "SELECT count(*) FROM jobs WHERE state = 'running'")
    other = await count(deps, "SELECT count(*) FROM jobs WHERE state != 'running'")
    holds = await count(deps, "SELECT count(*) FROM holds WHERE state = 'open'")
    with_status = await count(deps, "SELECT count(*) FROM jobs WHERE status_message IS NOT NULL")
    generating = sum(1 for text in outbox.latest.values() if text.startswith("🎬"))
    problems = []
    if runner.active_count() != jobs:
        problems.append(f"runner has {runner.active_count()} active jobs")
    if (running, other, holds, with_status) != (jobs, 0, jobs, jobs):
        problems.append(
            f"{running} running, {other} in other states, {holds} open holds,"
            f" {with_status} with a status message"
        )
    if generating != jobs:
        problems.append(f"{generating} status messages show generation in progress")
    if problems:
        raise SystemExit(f"not all {jobs} jobs are in flight: " + "; ".join(problems))


async def wait_for_running(deps: Deps, outbox: LatestTextOutbox, jobs: int, limit_s: float) -> None:
    """The last jobs made need one poll (and one status edit) to show as running."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        running = await count(deps, "SELECT count(*) FROM jobs WHERE state = 'running'")
        generating = sum(1 for text in outbox.latest.values() if text.startswith("🎬"))
        if running == jobs and generating == jobs:
            return
        await asyncio.sleep(0.2)


def settings_for(folder: Path, jobs: int, per_member: int) -> Settings:
    folder.mkdir(parents=True, exist_ok=True)
    return Settings(
        db=folder / "bench.db",
        data_dir=folder / "data",
        moderators=(MODERATOR,),
        time_scale=TIME_SCALE,
        poll_interval_s=POLL_INTERVAL_S,
        max_jobs_per_provider=jobs,
        max_jobs_per_user=per_member,
        max_queue_per_user=0,
        quotes_per_minute=max(5, per_member),  # each member asks for all its quotes at once
    )


@dataclass
class Result:
    jobs: int
    members: int
    make_s: float
    rss_before: int
    rss_after: int
    objects_before: int
    objects_after: int
    gc_before_ms: float
    gc_after_ms: float
    baseline: Window
    loaded: Window
    stop_s: float
    sends: int
    edits: int


@asynccontextmanager
async def started_core(folder: Path, jobs: int, per_member: int):
    """The real core on a fresh database, its runner started, messages kept by a bench outbox."""
    outbox = LatestTextOutbox()
    async with open_core(settings_for(folder, jobs, per_member)) as deps:
        assert deps.generation is not None
        deps.generation.outboxes.register(PLATFORM, outbox)
        await deps.generation.runner.start()
        yield deps, outbox


async def run_measured(folder: Path, jobs: int, per_member: int, calls: int, seconds: float):
    """The main pass: RSS per job, the ticker and /price, without tracemalloc."""
    members = -(-jobs // per_member)
    image = sample_image()
    async with started_core(folder, jobs, per_member) as (deps, outbox):
        runner = deps.generation.runner
        try:
            await make_members(deps, members)
            baseline = await price_window(deps, calls, seconds, members)
            objects_before, gc_before_ms = tracked_objects(), full_collection_ms()
            rss_before = rss()
            started = time.perf_counter()
            await make_jobs(deps, members, per_member, image)
            make_s = time.perf_counter() - started
            await wait_for_running(deps, outbox, jobs, limit_s=30)
            await check_in_flight(deps, outbox, jobs)
            # No forced collection before the window: the collector runs when it would.
            loaded = await price_window(deps, calls, seconds, members)
            await check_in_flight(deps, outbox, jobs)  # and none finished during the window
            rss_after = rss()
            objects_after, gc_after_ms = tracked_objects(), full_collection_ms()
        finally:
            stopping = time.perf_counter()
            await runner.stop()
            await runner.provider.close()
            stop_s = time.perf_counter() - stopping
    return Result(
        jobs, members, make_s, rss_before, rss_after, objects_before, objects_after,
        gc_before_ms, gc_after_ms, baseline, loaded, stop_s, outbox.sends, outbox.edits,
    )  # fmt: skip


async def run_traced(folder: Path, jobs: int, per_member: int) -> tuple[int, list[str]]:
    """A second pass under tracemalloc: Python bytes held by the jobs in flight, by file."""
    members = -(-jobs // per_member)
    image = sample_image()
    async with started_core(folder, jobs, per_member) as (deps, outbox):
        runner = deps.generation.runner
        try:
            await make_members(deps, members)
            gc.collect()
            tracemalloc.start(1)
            before = tracemalloc.take_snapshot()
            await make_jobs(deps, members, per_member, image)
            await wait_for_running(deps, outbox, jobs, limit_s=60)
            await check_in_flight(deps, outbox, jobs)
            gc.collect()
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
        finally:
            await runner.stop()
            await runner.provider.close()
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    diff = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "filename")
    total = sum(stat.size_diff for stat in diff)
    top = []
    for stat in diff[:8]:
        name = stat.traceback[0].filename
        short = name.replace(str(ROOT) + os.sep, "").replace(sys.prefix + os.sep, "")
        share = stat.size_diff / jobs
        top.append(f"    {share:>7,.0f} B/job  {short}")
    linecache.clearcache()
    return total, top


# --- the table ---------------------------------------------------------------------------------


TARGET_JOBS = 10_000
"""The targets are set for this many jobs; with fewer, fixed costs (SQLite's page caches,
the allocator's arenas) dominate the RSS per job and the lag has little to show."""


def verdict(ok: bool, jobs: int) -> str:
    if jobs < TARGET_JOBS:
        return f"not judged below {TARGET_JOBS:,} jobs"
    return "met" if ok else "MISSED"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in flight (10,000)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1,000 jobs, 3 s windows")
    parser.add_argument(
        "--window", type=float, default=60.0, help="seconds of each measuring window (60)"
    )
    parser.add_argument(
        "--per-member", type=int, default=10, help="jobs per member (the per-user limit; 10)"
    )
    parser.add_argument(
        "--trace-jobs",
        type=int,
        default=2_000,
        help="jobs in the tracemalloc pass (2,000; the figure per job does not depend on it;"
        " 0 skips the pass)",
    )
    args = parser.parse_args(argv)
    jobs = 1_000 if args.quick and args.jobs == 10_000 else args.jobs
    seconds = 3.0 if args.quick else args.window
    calls = int(CALLS_PER_S * seconds)
    per_member = min(args.per_member, jobs)
    trace_jobs = min(args.trace_jobs, jobs, 500 if args.quick else jobs)
    for name in [n for n in os.environ if n.startswith(("KLINGBOT_", "TELEGRAM_", "DISCORD_"))]:
        del os.environ[name]  # the defaults, whatever this shell has set

    print(
        f"jobs in flight: {jobs:,} jobs ({-(-jobs // per_member):,} members x {per_member}),"
        f" local provider time_scale {TIME_SCALE:g}, runner polls every"
        f" {POLL_INTERVAL_S * TIME_SCALE:g} s; {os.cpu_count()} CPUs,"
        f" load average {os.getloadavg()[0]:.2f}; Python {sys.version.split()[0]}",
        flush=True,
    )
    folder = Path(tempfile.mkdtemp(prefix="klingbot-inflight-"))
    began = time.perf_counter()
    # As `klingbot run` does at start with a Telegram token: load, then freeze.
    freeze_modules(render=True, telegram=True, discord=False)
    try:
        result = asyncio.run(run_measured(folder / "measured", jobs, per_member, calls, seconds))
        shutil.rmtree(folder / "measured", ignore_errors=True)
        traced_total, traced_top = (0, [])
        if trace_jobs:
            traced_total, traced_top = asyncio.run(
                run_traced(folder / "traced", trace_jobs, per_member)
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    per_job_kb = (result.rss_after - result.rss_before) / jobs / 1024
    objects_per_job = (result.objects_after - result.objects_before) / jobs
    base, loaded = result.baseline, result.loaded
    print(
        f"made {jobs:,} jobs in {result.make_s:.1f} s ({jobs / result.make_s:,.0f}/s);"
        f" outbox: {result.sends:,} messages sent, {result.edits:,} edits;"
        f" runner.stop + provider.close took {result.stop_s:.1f} s;"
        f" whole run {time.perf_counter() - began:.0f} s"
    )
    print(
        f"RSS {result.rss_before / 2**20:,.1f} MiB before the first quote,"
        f" {result.rss_after / 2**20:,.1f} MiB with the jobs in flight; objects tracked by the"
        f" garbage collector {result.objects_before:,} -> {result.objects_after:,}"
        f" ({objects_per_job:.0f} per job)"
    )
    print()
    print(f"{'measure':<36} {'no jobs':>10} {f'{jobs:,} jobs':>12} {'ratio':>6}  target")
    print(
        f"{'memory per waiting job (RSS)':<36} {'':>10} {per_job_kb:>9.1f} KB {'':>6}"
        f"  < {TARGET_KB_PER_JOB} KB: {verdict(per_job_kb < TARGET_KB_PER_JOB, jobs)}"
    )
    if trace_jobs:
        traced = f"memory per job (tracemalloc, {trace_jobs:,})"
        print(f"{traced:<36} {'':>10} {traced_total / trace_jobs / 1024:>9.1f} KB")
    print(
        f"{'event loop worst lag':<36} {base.worst_lag_ms:>7.1f} ms {loaded.worst_lag_ms:>9.1f} ms"
    )
    worst = max(loaded.worst_lag_ms, result.gc_after_ms)
    print(
        f"{'  worse of it and a full collection':<36} {'':>10} {worst:>9.1f} ms {'':>6}"
        f"  < {TARGET_LAG_MS} ms: {verdict(worst < TARGET_LAG_MS, jobs)}"
    )
    print(f"{'event loop lag p99':<36} {base.lag_p(0.99):>7.1f} ms {loaded.lag_p(0.99):>9.1f} ms")
    for label, q in (("p50", 0.50), ("p99", 0.99)):
        ratio = loaded.p(q) / base.p(q)
        target = ""
        if label == "p99":
            met = loaded.p(q) < TARGET_PRICE_P99_MS
            target = f"  < {TARGET_PRICE_P99_MS} ms: {verdict(met, jobs)}"
        print(
            f"{'/price latency ' + label + ' (from due)':<36} {base.p(q):>7.2f} ms"
            f" {loaded.p(q):>9.2f} ms {ratio:>6.2f}{target}"
        )
    print(f"{'/price latency max (from due)':<36} {base.p(1):>7.2f} ms {loaded.p(1):>9.2f} ms")
    print(f"{'event loop thread busy (CPU)':<36} {base.loop_cpu:>9.0%} {loaded.loop_cpu:>12.0%}")
    print(
        f"{'full collection (gc.collect, wall)':<36} {result.gc_before_ms:>7.1f} ms"
        f" {result.gc_after_ms:>9.1f} ms"
    )
    for generation in (0, 1, 2):
        label = f"longest gen-{generation} collection (runs)"
        before = f"{base.gc_ms[generation]:.1f} ms ({base.gc_runs[generation]})"
        after = f"{loaded.gc_ms[generation]:.1f} ms ({loaded.gc_runs[generation]})"
        print(f"{label:<36} {before:>10} {after:>12}")
    print(
        f"\n/price: {calls:,} calls paced over {seconds:g} s in each window;"
        f" mean {statistics.fmean(base.latencies_ms):.2f} ms without jobs,"
        f" {statistics.fmean(loaded.latencies_ms):.2f} ms with them"
    )
    if traced_top:
        print("tracemalloc, the files that hold the most per job:")
        print("\n".join(traced_top))


if __name__ == "__main__":
    main()
