"""The local renderer as a provider: the tier's wait, the render, cancel, and its word when done.

The render is real (a text-only clip: the title card, 16:9); the tier's wait
is scaled down, and the tests wait on the provider's own "task changed"
call, never on a timer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.providers.base import GenerationRequest
from bot.providers.local.provider import LocalProvider
from tests.support.video import probe

GUARD_S = 60.0


def request(job_id: str, *, expected_wait_s: int = 180, attempt: int = 1) -> GenerationRequest:
    return GenerationRequest(
        external_id=job_id,
        tier="standard",
        model="local",
        mode=None,
        resolution=720,
        duration_s=5,
        prompt="a paper boat on a quiet lake",
        negative_prompt="",
        image_path=None,
        expected_wait_s=expected_wait_s,
        attempt=attempt,
    )


class Changes:
    """The provider's "this task changed" calls, as events a test can wait on."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._events: dict[str, asyncio.Event] = {}

    def __call__(self, task_id: str) -> None:
        self.seen.append(task_id)
        self._events.setdefault(task_id, asyncio.Event()).set()

    async def of(self, task_id: str) -> None:
        await asyncio.wait_for(self._events.setdefault(task_id, asyncio.Event()).wait(), GUARD_S)


async def test_a_task_waits_then_renders_and_says_so(tmp_path: Path):
    provider = LocalProvider(tmp_path / "work", time_scale=0.0001)
    changes = Changes()
    provider.listen(changes)
    try:
        task_id = await provider.submit(request("job-1"))
        assert await provider.submit(request("job-1", attempt=2)) == task_id  # the same task
        await changes.of(task_id)
        status = await provider.poll(task_id)
        assert (status.state, status.progress) == ("succeeded", 100)
        clip = await provider.fetch(task_id, tmp_path / "clips" / "job-1.mp4")
        shown = probe(clip)
        assert (shown.width, shown.height) == (1280, 720)
        assert abs(shown.duration_s - 5) <= 0.1
        assert changes.seen == [task_id]  # one render, one word
    finally:
        await provider.close()


async def test_waiting_progress_then_cancel_then_a_new_submit_starts_again(tmp_path: Path):
    now = [100.0]
    provider = LocalProvider(tmp_path / "work", time_scale=1.0, monotonic=lambda: now[0])
    try:
        task_id = await provider.submit(request("job-2", expected_wait_s=180))
        now[0] += 90  # half the wait, by the provider's clock
        status = await provider.poll(task_id)
        assert (status.state, status.progress) == ("running", 40)  # waiting fills 80 %

        assert await provider.cancel(task_id) is True
        status = await provider.poll(task_id)
        assert status.state == "failed" and "cancelled" in str(status.error)

        assert await provider.submit(request("job-2", attempt=2)) == task_id
        status = await provider.poll(task_id)
        assert (status.state, status.progress) == ("running", 0)  # waiting from the start
    finally:
        await provider.close()
    assert not (tmp_path / "work" / "job-2.mp4").exists()  # nothing was rendered


async def test_a_thousand_waiting_tasks_cost_no_asyncio_task(tmp_path: Path):
    provider = LocalProvider(tmp_path / "work", time_scale=1.0)
    before = len(asyncio.all_tasks())
    try:
        for n in range(1_000):
            await provider.submit(request(f"job-{n}"))
        assert len(asyncio.all_tasks()) == before
        statuses = [await provider.poll(f"job-{n}") for n in (0, 999)]
        assert [s.state for s in statuses] == ["running", "running"]
    finally:
        await provider.close()
    assert (await provider.poll("job-0")).state == "lost"  # closed: a restart forgets tasks


async def test_files_an_earlier_process_left_are_removed_at_the_first_submit(tmp_path: Path):
    work = tmp_path / "work"
    work.mkdir()
    leftovers = [work / f"{'a' * 32}.mp4", work / f".{'b' * 32}.mp4.x1y2z3.part"]
    for path in leftovers:
        path.write_bytes(b"half a clip")
    unrelated = work / "README.txt"
    unrelated.write_text("an operator's note")
    provider = LocalProvider(work, time_scale=1.0)
    try:
        await provider.submit(request("job-3"))
        assert [path.exists() for path in leftovers] == [False, False]
        assert unrelated.exists()
    finally:
        await provider.close()
