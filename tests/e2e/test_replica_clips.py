"""A clip made on one replica and not delivered there is fetched or made again by the next owner.

Two "replicas" are two cores, one after the other, on one database (an
SQLite file, or PostgreSQL for the local renderer's case) with separate data
folders: the first makes the clip and cannot deliver it (its
platform refuses uploads), then stops, and its clips folder is lost with its
machine. The second, resuming the job, must deliver a clip that is on its
own disk: the local renderer renders it again from the member's image (the
MP4 read back shows that image), Kling's result is downloaded again, and a
result Kling no longer has makes the job undeliverable, with the member
told, never a send of a path that is not there.
"""

from __future__ import annotations

import asyncio
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.backend import runner_lease_for
from app.bootstrap import open_core
from storage.audit import audit
from tests.e2e.conftest import GenConsole, fast_settings
from tests.e2e.recovery_support import RefusingUploads, hold_entries, wait
from tests.providers.kling_support import kling_settings
from tests.support.video import probe

RED = (210, 30, 40)


def solid_png(path: Path, color: tuple[int, int, int]) -> Path:
    """A 640x480 picture of one colour, as a member would send it."""
    out = io.BytesIO()
    Image.new("RGB", (640, 480), color).save(out, "PNG")
    path.write_bytes(out.getvalue())
    return path


def mean_colour(clip: Path) -> np.ndarray:
    """The average colour of the middle half of the clip's middle frame."""
    pictures = probe(clip, pictures=True).pictures
    frame = pictures[len(pictures) // 2]
    h, w, _ = frame.shape
    return frame[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].reshape(-1, 3).mean(axis=0)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request) -> dict[str, str]:
    """The settings of the database both replicas use: an SQLite file, or this run's PostgreSQL."""
    if request.param == "sqlite":
        return {}
    return {"database_url": request.getfixturevalue("pg_database").url}


async def audit_of(deps) -> list[str]:
    if hasattr(deps.ledger.db, "pool"):
        from storage.postgres.audit import audit as postgres_audit

        return await postgres_audit(deps.ledger.db)
    return await audit(deps.ledger.db)


async def charges(deps, job_id: str) -> list[str]:
    """The kinds of the ledger entries of the job's hold, oldest first."""
    if hasattr(deps.ledger.db, "pool"):
        rows = await deps.ledger.db.fetch(
            "SELECT kind FROM ledger WHERE hold_id = $1 ORDER BY seq", job_id
        )
    else:
        rows = await deps.ledger.db.read(
            "SELECT kind FROM ledger WHERE hold_id = ? ORDER BY seq", (job_id,)
        )
    return [row["kind"] for row in rows]


def replica(settings):
    """A core as ``klingbot run`` opens it, with its runner lease: what a stopped one left (its
    delivery claims on SQLite, its jobs' leases on PostgreSQL) is the next one's to take."""
    return open_core(settings, runner_lease=runner_lease_for(settings))


async def made_but_not_delivered(settings, line: str) -> str:
    """On the first replica: order a clip, let it be made, refuse its upload, stop."""
    async with replica(settings) as deps:
        gen = GenConsole(settings, deps)
        refusing = RefusingUploads(gen.router)
        deps.generation.outboxes.register("console", refusing)
        await deps.generation.runner.start()
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.push(chat, line)
        await gen.push(chat, gen.button("Standard ·"))
        await wait(refusing.upload_started.wait())
        await wait(deps.generation.runner.between_steps())
        [job] = await deps.generation.store.jobs_of(None, 1)
        # Made, never delivered: the upload was refused (once, or again already: the
        # retry's delay is scaled to nothing here, so how many times depends on timing).
        assert job.state == "succeeded" and job.delivery_attempts >= 1, job
        assert Path(job.result_path).parent == settings.clips_dir
        assert Path(job.result_path).is_file()
    # That machine is gone with its clips (and, on PostgreSQL, with its whole data folder:
    # the image is in the database).
    shutil.rmtree(settings.data_dir if settings.postgres else settings.clips_dir)
    return job.job_id


async def test_a_local_clip_is_rendered_again_from_the_members_image_by_the_next_owner(
    tmp_path, database
):
    image = solid_png(tmp_path / "red.png", RED)
    tiers = {"standard": {"resolution": 360}}  # a quick render
    first = fast_settings(
        tmp_path, data_dir=tmp_path / "a", replica_id="a", tiers=tiers, **database
    )
    second = fast_settings(
        tmp_path, data_dir=tmp_path / "b", replica_id="b", tiers=tiers, **database
    )
    job_id = await made_but_not_delivered(first, f"/gen {image} a red square")

    async with replica(second) as deps:
        gen = GenConsole(second, deps)
        chat = gen.chat()
        await deps.generation.runner.start()
        await wait(deps.generation.runner.settled(job_id))
        job = await deps.generation.store.get_job(job_id)
        assert (job.state, job.delivery) == ("delivered", "uploaded")
        assert job.result_path == str(second.clips_dir / f"{job_id}.mp4")
        assert gen.clips() == [second.clips_dir / f"{job_id}.mp4"]
        assert await gen.push(chat, "/balance") == "Your balance: 80 credits (¥8.00)."
        assert await charges(deps, job_id) == ["hold", "capture"]
        assert await audit_of(deps) == []
        await wait(deps.generation.runner.between_steps())
        assert list((second.data_dir / "input-cache").glob("*")) == []
    red, green, blue = mean_colour(second.clips_dir / f"{job_id}.mp4")
    assert red > 150 and green < 90 and blue < 90, (red, green, blue)


async def test_a_kling_clip_is_downloaded_again_by_the_next_owner(tmp_path, standin):
    first = kling_settings(tmp_path, standin, data_dir=tmp_path / "a")
    second = kling_settings(tmp_path, standin, data_dir=tmp_path / "b")
    job_id = await made_but_not_delivered(first, "/gen sample a robot waves")
    assert standin.downloads == 1

    async with replica(second) as deps:
        gen = GenConsole(second, deps)
        gen.chat()
        await deps.generation.runner.start()
        await wait(deps.generation.runner.settled(job_id))
        job = await deps.generation.store.get_job(job_id)
        assert (job.state, job.delivery) == ("delivered", "uploaded")
        assert gen.clips() == [second.clips_dir / f"{job_id}.mp4"]
        assert (second.clips_dir / f"{job_id}.mp4").read_bytes() == standin.clip.read_bytes()
        assert await hold_entries(gen, job_id) == ["hold", "capture"]
    assert standin.downloads == 2 and len(standin.creates) == 1  # fetched again, never re-made


async def test_a_kling_clip_that_can_no_longer_be_had_is_undeliverable_and_said_so(
    tmp_path, standin
):
    first = kling_settings(tmp_path, standin, data_dir=tmp_path / "a")
    second = kling_settings(tmp_path, standin, data_dir=tmp_path / "b")
    job_id = await made_but_not_delivered(first, "/gen sample a robot waves")
    standin.tasks.clear()  # Kling forgot the task: no fresh link, nothing to download

    async with replica(second) as deps:
        gen = GenConsole(second, deps)
        chat = gen.chat()
        await deps.generation.runner.start()
        await wait(deps.generation.runner.settled(job_id))
        job = await deps.generation.store.get_job(job_id)
        assert (job.state, job.delivery) == ("delivered", "undeliverable")
        assert gen.clips() == []
        assert (
            f"⚠️ Job {job.short_id}: your clip was made, but it can no longer be fetched, so it"
            " cannot be sent. Ask a moderator for a refund." in gen.transcript()
        )
        assert await hold_entries(gen, job_id) == ["hold", "capture"]
        refunded = await gen.push(chat, f"/refund {job.short_id}")  # the operator is a moderator
        assert refunded == f"Refunded 20 credits (¥2.00) to console:local for job {job.short_id}."
        assert await gen.push(chat, "/balance") == "Your balance: 100 credits (¥10.00)."
        assert await audit(deps.ledger.db) == []
    assert len(standin.creates) == 1


async def test_a_runner_stopped_while_its_delivery_claim_is_written_leaves_no_claim(tmp_path):
    """The claim reached the database, its answer had not come back: the next owner may send."""
    settings = fast_settings(tmp_path, tiers={"standard": {"resolution": 360}})
    async with open_core(settings) as deps:
        gen = GenConsole(settings, deps)
        store = deps.generation.store
        claim = store.claim_delivery
        written = asyncio.Event()

        async def claim_then_hang(*args, **kwargs):
            assert await claim(*args, **kwargs)
            written.set()
            await asyncio.Event().wait()  # the answer never comes back before the stop

        store.claim_delivery = claim_then_hang  # type: ignore[method-assign]
        await deps.generation.runner.start()
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.push(chat, "/gen sample a robot waves")
        await gen.push(chat, gen.button("Standard ·"))
        await wait(written.wait())
        await deps.generation.runner.stop()
        [job] = await store.jobs_of(None, 1)
        assert job.state == "succeeded"
        # Another runner may claim it at once, not after the claim went stale (10 min).
        now = deps.clock.now()
        assert await claim(job.job_id, "the-next-runner", now=now, stale_before=now - 600)
