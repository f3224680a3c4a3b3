"""The input store port's contract (bot.inputs), on files, the in-memory fake and PostgreSQL.

What every store promises: a saved image is kept under the reference it
returned until it is removed; a job gets it as a file on this machine with
the same bytes; letting that file go never loses the image; a removed or
unknown reference is "gone" everywhere. PostgreSQL's own rules (the 10 MB
limit in the table, a replica's cache) follow at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bot.inputs import FileInputStore, InputGone, InputStore, InputUsage
from bot.media import MAX_IMAGE_BYTES
from tests.unit.fakes import InMemoryInputStore

IMAGE = bytes(range(256)) * 40  # every byte value, 10 KiB
OTHER = b"\x89PNG\r\n\x1a\n" + b"\x00\xff" * 700


@pytest.fixture(params=("files", "memory", "postgresql"))
async def inputs(request, tmp_path) -> AsyncIterator[InputStore]:
    if request.param == "files":
        yield FileInputStore(tmp_path / "inputs")
    elif request.param == "memory":
        yield InMemoryInputStore(tmp_path / "input-cache")
    else:
        from storage.postgres.inputs import PgInputStore
        from tests.support.postgres import emptied_database

        async with emptied_database(request.getfixturevalue("pg_url")) as database:
            yield PgInputStore(
                database, cache=tmp_path / "input-cache", files=FileInputStore(tmp_path / "inputs")
            )


async def test_a_saved_image_is_kept_and_materialized_with_its_bytes(inputs):
    reference = await inputs.save("q1", ".jpg", IMAGE)
    assert await inputs.exists(reference)
    path = await inputs.materialize(reference, "job-1")
    assert path.read_bytes() == IMAGE
    assert path.name.endswith(".jpg")  # what a provider sees keeps the image's extension
    again = await inputs.materialize(reference, "job-1")
    assert again.read_bytes() == IMAGE


async def test_two_jobs_of_one_image_each_keep_theirs_while_the_other_lets_go(inputs):
    reference = await inputs.save("q1", ".png", OTHER)
    first = await inputs.materialize(reference, "job-1")
    second = await inputs.materialize(reference, "job-2")
    inputs.release("job-1")
    assert second.read_bytes() == OTHER
    inputs.release("job-2")
    inputs.release("job-2")  # twice, or never made: nothing happens
    inputs.release("never")
    assert await inputs.exists(reference)  # letting copies go never loses the image
    assert (await inputs.materialize(reference, "job-3")).read_bytes() == OTHER
    assert first == second or not first.exists()  # the image itself, or a copy let go


async def test_saving_a_quote_again_replaces_its_bytes(inputs):
    first = await inputs.save("q1", ".jpg", IMAGE)
    second = await inputs.save("q1", ".jpg", OTHER)
    assert first == second
    assert (await inputs.materialize(second, "job-1")).read_bytes() == OTHER
    assert await inputs.usage() == InputUsage(1, len(OTHER))


async def test_a_removed_image_is_gone_everywhere_and_removing_again_is_fine(inputs):
    kept = await inputs.save("kept", ".jpg", IMAGE)
    removed = await inputs.save("removed", ".png", OTHER)
    await inputs.remove(removed)
    await inputs.remove(removed)
    assert not await inputs.exists(removed)
    with pytest.raises(InputGone) as gone:
        await inputs.materialize(removed, "job-1")
    assert gone.value.reference == removed
    assert await inputs.exists(kept)
    assert await inputs.usage() == InputUsage(1, len(IMAGE))


async def test_an_unknown_reference_is_gone(inputs, tmp_path):
    unknown = await inputs.save("known", ".jpg", IMAGE)
    unknown = unknown.replace("known", "never-saved")
    assert not await inputs.exists(unknown)
    with pytest.raises(InputGone):
        await inputs.materialize(unknown, "job-1")


async def test_usage_counts_images_and_bytes(inputs):
    assert await inputs.usage() == InputUsage(0, 0)
    for n in range(3):
        await inputs.save(f"q{n}", ".jpg", IMAGE[: 1000 * (n + 1)])
    assert await inputs.usage() == InputUsage(3, 6000)


async def test_many_saves_and_materializations_at_once(inputs):
    references = await asyncio.gather(
        *(inputs.save(f"q{n}", ".jpg", bytes([n]) * 500) for n in range(20))
    )
    paths = await asyncio.gather(
        *(inputs.materialize(reference, f"job-{n}") for n, reference in enumerate(references))
    )
    assert [path.read_bytes() for path in paths] == [bytes([n]) * 500 for n in range(20)]


# --- PostgreSQL's own rules -----------------------------------------------------------


@pytest.fixture
async def pg_inputs(pg_database, tmp_path):
    from storage.postgres.inputs import PgInputStore

    return PgInputStore(
        pg_database, cache=tmp_path / "input-cache", files=FileInputStore(tmp_path / "inputs")
    )


async def test_postgres_keeps_the_bytes_in_its_table_up_to_the_image_limit(pg_inputs, pg_database):
    largest = b"\xff" * MAX_IMAGE_BYTES
    reference = await pg_inputs.save("large", ".jpg", largest)
    assert reference == "pg:large.jpg"
    assert await pg_database.fetchval("SELECT octet_length(data) FROM inputs") == MAX_IMAGE_BYTES
    with pytest.raises(ValueError, match="1 to 10485760 bytes"):
        await pg_inputs.save("larger", ".jpg", largest + b"\xff")
    with pytest.raises(ValueError):
        await pg_inputs.save("empty", ".jpg", b"")
    # The table itself refuses what the code would not send.
    for data in (largest + b"\xff", b""):
        with pytest.raises(asyncpg.CheckViolationError):
            await pg_database.execute("INSERT INTO inputs (name, data) VALUES ('raw', $1)", data)
    assert await pg_inputs.usage() == InputUsage(1, MAX_IMAGE_BYTES)


async def test_a_replica_copies_into_its_own_cache_and_clears_what_a_dead_process_left(
    pg_inputs, tmp_path
):
    cache = tmp_path / "input-cache"
    cache.mkdir()
    (cache / "old-job-q0.jpg").write_bytes(b"left by a killed process")
    reference = await pg_inputs.save("q1", ".jpg", IMAGE)
    path = await pg_inputs.materialize(reference, "job-1")
    assert path.parent == cache and sorted(p.name for p in cache.iterdir()) == [path.name]
    assert pg_inputs.cache.held() == {"job-1"}
    pg_inputs.release("job-1")
    assert list(cache.iterdir()) == [] and await pg_inputs.exists(reference)


async def test_an_image_saved_before_the_move_to_postgres_is_served_from_its_file(
    pg_inputs, tmp_path
):
    old = tmp_path / "inputs" / "before.jpg"
    old.parent.mkdir()
    old.write_bytes(IMAGE)
    assert await pg_inputs.exists(str(old))
    assert await pg_inputs.materialize(str(old), "job-1") == old
    await pg_inputs.remove(str(old))
    assert not old.exists() and not await pg_inputs.exists(str(old))


async def test_postgres_removes_images_no_row_names_an_hour_after_they_were_saved(
    pg_inputs, pg_database
):
    """A process stopped between saving an image and its quote leaves a row nothing names."""
    from storage.postgres.jobs import PgJobStore
    from tests.contracts.test_job_store import quote

    named = await pg_inputs.save("named", ".jpg", IMAGE)
    await PgJobStore(pg_database).save_quote(quote("named", image_path=named))
    orphan = await pg_inputs.save("orphan", ".jpg", IMAGE)
    fresh = await pg_inputs.save("fresh", ".jpg", IMAGE)  # its quote may be on its way
    assert await pg_inputs.remove_unnamed() == 0
    await pg_database.execute(
        "UPDATE inputs SET created_at = created_at - 3600 WHERE name <> 'fresh.jpg'"
    )
    assert await pg_inputs.remove_unnamed() == 1
    assert [await pg_inputs.exists(r) for r in (named, orphan, fresh)] == [True, False, True]
