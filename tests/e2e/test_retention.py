"""Input images and clips are removed on schedule, and nothing still needed is.

The real core on a SQLite file, real files in the data folder, members on
the console chat, a scripted provider (its clip is a real MP4), and the
core's wall clock injected: the test moves it by days without waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from app.bootstrap import open_core
from bot.jobs.retention import DAY, HOUR, Retention, RetentionSettings
from bot.roles import Role
from storage.audit import audit
from tests.e2e.conftest import GenConsole, fast_settings
from tests.e2e.scripted_provider import Script, ScriptedProvider
from tests.support.clock import FakeClock
from tests.unit.fakes import InMemoryJobStore, InMemoryLedger

GUARD_S = 30.0


@asynccontextmanager
async def core(
    tmp_path: Path, tiny_clip: Path, clock: FakeClock, **overrides
) -> AsyncIterator[tuple[GenConsole, ScriptedProvider]]:
    """The core with its runner (and so its retention sweep) started."""
    settings = fast_settings(tmp_path, **overrides)
    provider = ScriptedProvider(tiny_clip)
    async with open_core(settings, clock=clock, provider=provider) as deps:
        gen = GenConsole(settings, deps)
        await deps.generation.runner.start()
        await first_sweep(gen)
        yield gen, provider


async def first_sweep(gen: GenConsole) -> None:
    retention = gen.deps.generation.runner.retention
    await asyncio.wait_for(retention.swept.wait(), GUARD_S)


async def sweep(gen: GenConsole):
    return await gen.deps.generation.runner.retention.sweep()


def files(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()} if folder.exists() else set()


async def job_of(gen: GenConsole, prompt: str):
    [job] = [j for j in await gen.deps.generation.store.jobs_of(None, 100) if j.prompt == prompt]
    return job


async def order(gen: GenConsole, chat, prompt: str, tier: str = "Standard ·") -> None:
    await gen.push(chat, f"/gen sample {prompt}")
    await gen.push(chat, gen.button(tier, chat))


async def test_nothing_still_needed_is_removed_and_old_files_are(tmp_path, tiny_clip):
    clock = FakeClock()
    async with core(tmp_path, tiny_clip, clock) as (gen, provider):
        inputs, clips = gen.settings.inputs_dir, gen.settings.clips_dir
        chat = gen.chat()
        await gen.push(chat, "/topup me 500")
        await order(gen, chat, "delivered")
        await gen.settle()
        delivered = await job_of(gen, "delivered")
        gate = asyncio.Event()
        provider.script("still running", Script(progress=(10,), gate=gate))
        await order(gen, chat, "still running")
        await provider.until(lambda: provider.is_blocked("still running"))
        running = await job_of(gen, "still running")
        await gen.push(chat, "/gen sample open quote")
        await gen.push(chat, "/gen sample cancelled quote")
        await gen.push(chat, gen.button("Cancel", chat, action="qcancel:"))
        [open_quote, cancelled_quote] = sorted(
            set(files(inputs)) - {Path(delivered.image_path).name, Path(running.image_path).name}
        )
        assert len(files(inputs)) == 4 and files(clips) == {f"{delivered.job_id}.mp4"}

        # At once: only the cancelled quote's image goes; nothing can use it.
        result = await sweep(gen)
        assert [Path(p).name for p in result.inputs] in ([open_quote], [cancelled_quote])
        removed_first = Path(result.inputs[0]).name
        kept_quote = open_quote if removed_first == cancelled_quote else cancelled_quote
        assert files(inputs) == {
            Path(delivered.image_path).name,
            Path(running.image_path).name,
            kept_quote,
        }

        # The open quote expires after 10 min; the delivered job's image stays for Reroll.
        clock.advance(601)
        assert [Path(p).name for p in (await sweep(gen)).inputs] == [kept_quote]
        reroll = await gen.push(chat, gen.button("Reroll", chat))
        assert "Standard · 720p · 20 credits (¥2.00)" in reroll

        # A day after delivery Reroll no longer has the image; the running job keeps its own.
        clock.advance(24 * HOUR)
        result = await sweep(gen)
        assert result.inputs == (delivered.image_path,) and result.clips == ()
        assert files(inputs) == {Path(running.image_path).name}
        delivered = await job_of(gen, "delivered")
        assert delivered.input_removed_at == clock.now()
        shown = await gen.push(chat, gen.button("Reroll", chat))
        assert shown == (
            f"The image of job {delivered.short_id} is no longer kept (images are deleted some"
            " time after their job), so it cannot be used again. Send /gen with the image to"
            " start afresh."
        )
        # The quote the earlier Reroll made expired with its image: pressing it says so.
        stale = await gen.push(chat, gen.button("Standard ·", chat))
        assert stale.endswith("This quote has expired. Send /gen again for a fresh one.")

        # Seven days after delivery the clip goes, and /jobs says so.
        clock.advance(5 * DAY)  # six days and 10 min since delivery
        assert (await sweep(gen)).clips == ()
        clock.advance(DAY)
        assert (await sweep(gen)).clips == (delivered.job_id,)
        assert files(clips) == set()
        assert (await job_of(gen, "delivered")).clip_removed_at == clock.now()
        listing = await gen.push(chat, "/jobs")
        [row] = [line for line in listing.splitlines() if line.startswith(delivered.short_id)]
        assert row.endswith("delivered · 20 credits (¥2.00) · console:local · clip deleted")
        assert (await job_of(gen, "still running")).state == "running"
        assert files(inputs) == {Path(running.image_path).name}  # eight days on: still running

        gate.set()
        await gen.settle()
        running = await job_of(gen, "still running")
        assert running.state == "delivered"
        clock.advance(24 * HOUR + 1)
        assert (await sweep(gen)).inputs == (running.image_path,)
        assert files(inputs) == set() and files(clips) == {f"{running.job_id}.mp4"}
        assert await audit(gen.deps.ledger.db) == []


async def test_a_restart_sweeps_from_the_database_and_finishes_an_interrupted_sweep(
    tmp_path, tiny_clip
):
    clock = FakeClock()
    async with core(tmp_path, tiny_clip, clock) as (gen, _):
        ming = gen.chat(user="ming", lang="zh-CN")
        await gen.push(ming, "/start")
        await gen.push(gen.chat(), "/topup ming 100")
        await order(gen, ming, "机器人", "标准 ·")
        await gen.settle()
        job = await job_of(gen, "机器人")
        # A sweep removed the image and was killed before it wrote the note.
        Path(job.image_path).unlink()

    clock.advance(8 * DAY)
    async with core(tmp_path, tiny_clip, clock) as (gen, _):  # the sweep at start does it all
        job = await job_of(gen, "机器人")
        assert (job.input_removed_at, job.clip_removed_at) == (clock.now(), clock.now())
        assert files(gen.settings.clips_dir) == set()
        ming = gen.chat(user="ming", lang="zh-CN")
        listing = await gen.push(ming, "/jobs")
        assert listing.splitlines()[1].endswith(" · 视频已删除")
        shown = await gen.press_action(ming, "m1", f"again:{job.job_id}")
        assert shown == (
            f"任务 {job.short_id} 的图片已不再保留（任务结束一段时间后图片会被删除），无法再次使用。"
            "请重新发送 /gen 并附上图片。"
        )


async def test_zero_days_keeps_clips_and_zero_hours_frees_inputs_at_once(tmp_path, tiny_clip):
    clock = FakeClock()
    async with core(tmp_path, tiny_clip, clock, clip_retention_days=0, input_retention_h=0) as (
        gen,
        _,
    ):
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await order(gen, chat, "kept")
        await gen.settle()
        job = await job_of(gen, "kept")
        clock.advance(1)
        assert (await sweep(gen)).inputs == (job.image_path,)
        clock.advance(3650 * DAY)
        assert (await sweep(gen)).clips == ()
        assert Path(job.result_path).exists()


async def test_the_sweep_runs_every_interval_survives_errors_and_stays_in_its_folders(
    tmp_path, caplog
):
    """The loop, on the in-memory store with real files: cheap, no provider."""
    inside, outside = tmp_path / "inputs", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    store = InMemoryJobStore(InMemoryLedger())
    sleeps: list[float] = []
    failures = [RuntimeError("database is locked")]

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise asyncio.CancelledError

    async def flaky(**kwargs):
        if failures:
            raise failures.pop()
        return [str(inside / "a.jpg"), str(outside / "b.jpg")]

    store.inputs_to_remove = flaky  # type: ignore[method-assign]
    for name in ("inputs/a.jpg", "elsewhere/b.jpg"):
        (tmp_path / name).write_bytes(b"jpeg")
    retention = Retention(
        store,
        FakeClock(),
        inputs_dir=inside,
        clips_dir=tmp_path / "clips",
        settings=RetentionSettings(interval_s=900, batch=10),
        sleep=sleep,
    )
    with caplog.at_level(logging.WARNING), suppress(asyncio.CancelledError):
        await retention.run()

    assert sleeps == [900, 900, 900] and retention.sweeps == 3
    assert "the retention sweep failed" in caplog.text and "database is locked" in caplog.text
    assert not (inside / "a.jpg").exists()
    assert (outside / "b.jpg").exists()  # named by a row, but not ours to delete


async def test_with_several_replicas_only_the_holder_of_the_role_sweeps(tmp_path, caplog):
    """Two replicas' sweeps on one store: the role's holder sweeps, a standby takes over,
    and a holder that loses the role mid-sweep stops there."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    asked: list[str] = []
    stuck = asyncio.Event()
    release = asyncio.Event()

    def store_of(name: str) -> InMemoryJobStore:
        """Each replica's view of the database, noting who asks it for due images."""
        store = InMemoryJobStore(InMemoryLedger())

        async def inputs_to_remove(**kwargs):
            asked.append(name)
            if name == "a" and asked.count("a") > 1:
                stuck.set()
                await release.wait()  # replica a's second sweep hangs on the database
            return []

        store.inputs_to_remove = inputs_to_remove  # type: ignore[method-assign]
        return store

    wake = {name: asyncio.Event() for name in "ab"}

    def sleeper(name: str):
        async def sleep(seconds: float) -> None:
            await wake[name].wait()  # the interval passes when the test says so
            wake[name].clear()

        return sleep

    roles = {name: Role("retention") for name in "ab"}
    sweeps = {
        name: Retention(
            store_of(name),
            FakeClock(),
            inputs_dir=inputs,
            clips_dir=tmp_path / "clips",
            settings=RetentionSettings(interval_s=3600, clip_keep_s=None),
            sleep=sleeper(name),
            role=roles[name],
        )
        for name in "ab"
    }
    roles["a"]._gain()
    tasks = {
        name: asyncio.create_task(retention.run(), name=name) for name, retention in sweeps.items()
    }
    try:
        await asyncio.wait_for(sweeps["a"].swept.wait(), GUARD_S)
        assert asked == ["a"] and sweeps["b"].sweeps == 0  # the standby waits for the role

        wake["a"].set()  # a's next sweep hangs; meanwhile a loses the role, b takes it over
        await asyncio.wait_for(stuck.wait(), GUARD_S)
        with caplog.at_level(logging.WARNING):
            roles["a"]._lose()
            roles["b"]._gain()
            await asyncio.wait_for(sweeps["b"].swept.wait(), GUARD_S)
        assert asked == ["a", "a", "b"]
        assert "retention: lost the role mid-sweep; another replica sweeps" in caplog.text
        sweeps["a"].swept.clear()
        wake["a"].set()  # a's interval passes: it does not sweep without the role
        release.set()
        wake["b"].set()
        sweeps["b"].swept.clear()
        await asyncio.wait_for(sweeps["b"].swept.wait(), GUARD_S)
        assert asked == ["a", "a", "b", "b"] and sweeps["a"].sweeps == 2
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


async def test_a_bot_stopping_mid_sweep_does_not_say_it_lost_the_role(tmp_path, caplog):
    """The holder stops (runner.stop cancels the sweep): the role was never lost, so
    the log does not claim another replica sweeps; the sweep stops with the bot."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    store = InMemoryJobStore(InMemoryLedger())
    stuck = asyncio.Event()
    cancelled = asyncio.Event()

    async def inputs_to_remove(**kwargs):
        stuck.set()
        try:
            await asyncio.Event().wait()  # the sweep hangs on the database
        except asyncio.CancelledError:
            cancelled.set()
            raise

    store.inputs_to_remove = inputs_to_remove  # type: ignore[method-assign]
    role = Role("retention")
    role._gain()
    retention = Retention(
        store,
        FakeClock(),
        inputs_dir=inputs,
        clips_dir=tmp_path / "clips",
        settings=RetentionSettings(interval_s=3600, clip_keep_s=None),
        role=role,
    )
    task = asyncio.create_task(retention.run())
    await asyncio.wait_for(stuck.wait(), GUARD_S)

    with caplog.at_level(logging.WARNING):
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert task.cancelled() and cancelled.is_set()
    assert "lost the role" not in caplog.text
