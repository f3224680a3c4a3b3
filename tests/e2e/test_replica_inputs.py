"""Members' images across replicas on PostgreSQL: any replica reaches any image.

Two replicas are two real cores (``open_core`` with their runner leases,
as ``klingbot run`` opens them) on this run's PostgreSQL database, each with
its own data folder, so nothing reaches the other's disk. A member's image
arrives at one, the tier is pressed at the other, which makes and delivers
the clip from that image (the MP4 is read back: it shows the picture); a
job moved to another replica renders there from the image in the database;
the retention sweep deletes the image's bytes from the database.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.backend import runner_lease_for
from app.bootstrap import open_core
from bot.jobs.retention import HOUR
from storage.postgres.audit import audit
from tests.e2e.conftest import GenConsole, fast_settings
from tests.e2e.test_replica_clips import RED, mean_colour, solid_png
from tests.support.clock import FakeClock
from tests.support.postgres import emptied_database

GUARD_S = 60.0
BLUE = (30, 40, 210)


@pytest.fixture
async def pg(pg_url) -> AsyncIterator:
    async with emptied_database(pg_url) as database:  # the replicas open pools of their own
        yield database


def replica_settings(tmp_path: Path, pg_url: str, name: str, **overrides):
    return fast_settings(
        tmp_path,
        database_url=pg_url,
        replica_id=name,
        job_lease_s=1.0,
        data_dir=tmp_path / name,
        tiers={"standard": {"resolution": 360}},  # a quick render
        **overrides,
    )


@asynccontextmanager
async def replica(settings, clock: FakeClock) -> AsyncIterator[GenConsole]:
    """One replica as ``klingbot run`` opens it, its runner started, the console as its chat."""
    async with open_core(settings, clock=clock, runner_lease=runner_lease_for(settings)) as deps:
        gen = GenConsole(settings, deps)
        await deps.generation.runner.start()
        yield gen


async def wait(awaitable):
    return await asyncio.wait_for(awaitable, GUARD_S)


async def stored_images(pg) -> dict[str, int]:
    rows = await pg.fetch("SELECT name, octet_length(data) AS size FROM inputs ORDER BY name")
    return {row["name"]: row["size"] for row in rows}


async def hold_entries(pg, job_id: str) -> list[str]:
    rows = await pg.fetch("SELECT kind FROM ledger WHERE hold_id = $1 ORDER BY seq", job_id)
    return [row["kind"] for row in rows]


def tier_button(gen: GenConsole, tier: str = "Standard ·") -> tuple[str, str]:
    """(message, action) of the newest live ``tier`` button the member sees on ``gen``."""
    message, action, _ = gen.router.chats["local"].live_buttons()[int(gen.button(tier))]
    return message, action


async def input_gauges(gen: GenConsole) -> dict[str, float]:
    """``klingbot_input_files`` and ``_bytes`` as a scrape of this replica's /metrics shows them."""
    await gen.deps.metrics.refresh()  # what /metrics does before each scrape
    exposition = gen.deps.metrics.exposition().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name.startswith("klingbot_input_")
    }


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


async def test_an_image_sent_to_one_replica_is_made_into_a_clip_by_another(pg, pg_url, tmp_path):
    red = solid_png(tmp_path / "red.png", RED)
    clock = FakeClock()
    a_settings = replica_settings(tmp_path, pg_url, "a")
    b_settings = replica_settings(tmp_path, pg_url, "b", metrics_listen="127.0.0.1:0")
    async with replica(a_settings, clock) as a, replica(b_settings, clock) as b:
        on_a, on_b = a.chat(), b.chat()
        await a.push(on_a, "/topup me 100")
        quote = await a.push(on_a, f"/gen {red} a red square")
        assert "Pick a tier" in quote
        [(name, size)] = (await stored_images(pg)).items()
        assert name.endswith(".png") and size == red.stat().st_size
        assert files_under(tmp_path / "a") == []  # the image is in the database, on no disk
        # Every replica's metrics count the table: b never saw the image.
        assert await input_gauges(b) == {"klingbot_input_files": 1, "klingbot_input_bytes": size}

        message, action = tier_button(a)
        chosen = await b.press_action(on_b, message, action)  # the press reaches replica b
        assert "✅ Standard chosen: 20 credits (¥2.00) held for job" in chosen
        [job] = await b.deps.generation.store.jobs_of(None, 1)
        assert job.image_path == f"pg:{name}"
        await wait(b.deps.generation.runner.settled(job.job_id))
        await wait(b.deps.generation.runner.between_steps())

        job = await b.deps.generation.store.get_job(job.job_id)
        clip = b_settings.clips_dir / f"{job.job_id}.mp4"
        assert (job.state, job.delivery, job.result_path) == ("delivered", "uploaded", str(clip))
        assert b.clips() == [clip] and a.clips() == []
        assert files_under(tmp_path / "a") == [] and files_under(tmp_path / "b") == [clip]
        red_level, green, blue = mean_colour(clip)
        assert red_level > 150 and green < 90 and blue < 90, (red_level, green, blue)
        assert await hold_entries(pg, job.job_id) == ["hold", "capture"]
        assert await a.push(on_a, "/balance") == "Your balance: 80 credits (¥8.00)."

        # Reroll on replica a quotes the same image, from the database.
        reroll = await a.press_action(on_a, "m", f"again:{job.job_id}")
        assert "Standard · 360p · 20 credits (¥2.00)" in reroll

        # A day after the job, the sweep (whichever replica runs it) deletes the bytes.
        clock.advance(24 * HOUR + 601)
        # And an image a replica killed before it saved the quote left, nothing names.
        await pg.execute("INSERT INTO inputs (name, data, created_at) VALUES ('x.png', 'x', 0)")
        swept = await b.deps.generation.runner.retention.sweep()
        assert (swept.inputs, swept.unnamed) == ((f"pg:{name}",), 1)
        assert await stored_images(pg) == {}
        assert await input_gauges(b) == {"klingbot_input_files": 0, "klingbot_input_bytes": 0}
        assert (await b.deps.generation.store.get_job(job.job_id)).input_removed_at == clock.now()
        gone = await a.press_action(on_a, "m", f"again:{job.job_id}")
        assert gone.startswith(f"The image of job {job.short_id} is no longer kept")

        # The clip is on b's disk alone. Not yet due: b's own look keeps it.
        a_retention = a.deps.generation.runner.retention
        b_retention = b.deps.generation.runner.retention
        stranger = b_settings.clips_dir / "not-a-job-of-this-database.mp4"
        stranger.write_bytes(b"left alone: no row names it")
        assert await b_retention.sweep_local_clips() == [] and clip.exists()
        # Seven days after delivery a's sweep notes it (a cannot reach b's disk) ...
        clock.advance(6 * 24 * HOUR)
        assert (await a_retention.sweep()).clips == (job.job_id,)
        assert clip.exists()
        # ... and b removes it at its own next look, whichever replica sweeps.
        assert await b_retention.sweep_local_clips() == [job.job_id]
        assert not clip.exists() and await b_retention.sweep_local_clips() == []
        assert stranger.exists()
        listing = await b.push(on_b, "/jobs")
        assert listing.splitlines()[1].endswith(" · clip deleted")
        assert await audit(pg) == []


async def test_a_job_moved_to_another_replica_renders_there_from_the_database(
    pg, pg_url, tmp_path
):
    blue = solid_png(tmp_path / "blue.png", BLUE)
    clock = FakeClock()
    # Replica a waits as long as a real Standard clip takes: it stops long before.
    a_settings = replica_settings(tmp_path, pg_url, "a", time_scale=1.0)
    b_settings = replica_settings(tmp_path, pg_url, "b")
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(replica(a_settings, clock))
        on_a = a.chat()
        await a.push(on_a, "/topup me 100")
        await a.push(on_a, f"/gen {blue} a blue square")
        await a.push(on_a, a.button("Standard ·"))
        [job] = await a.deps.generation.store.jobs_of(None, 1)
        await wait(a.deps.generation.runner.between_steps())
        assert (await a.deps.generation.store.get_job(job.job_id)).state == "running"
        [copy] = files_under(tmp_path / "a" / "input-cache")  # a's own copy, for its renderer
        assert copy.read_bytes() == blue.read_bytes()
        await stack.aclose()  # replica a stops: its job is left to the others

    shutil.rmtree(tmp_path / "a")  # and its machine is gone, data folder and all
    async with replica(b_settings, clock) as b:
        b.chat()
        await wait(b.deps.generation.runner.settled(job.job_id))
        await wait(b.deps.generation.runner.between_steps())
        job = await b.deps.generation.store.get_job(job.job_id)
        clip = b_settings.clips_dir / f"{job.job_id}.mp4"
        assert (job.state, job.delivery, job.result_path) == ("delivered", "uploaded", str(clip))
        assert b.clips() == [clip]
        red, green, blue_level = mean_colour(clip)
        assert blue_level > 150 and red < 90 and green < 90, (red, green, blue_level)
        assert files_under(tmp_path / "b" / "input-cache") == []  # let go once the clip is made
        assert await hold_entries(pg, job.job_id) == ["hold", "capture"]
        assert await audit(pg) == []
