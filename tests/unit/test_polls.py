"""The poll schedule: jobs polled in order of due time, and at once when their provider speaks."""

from __future__ import annotations

import asyncio

from bot.jobs.polls import Polls, Watch
from tests.support.clock import GatedTime
from tests.support.jobs import a_job

GUARD_S = 10.0


class Recorder:
    """Plays the runner: records each poll the schedule starts, and which jobs are mid-poll."""

    def __init__(self) -> None:
        self.started: list[tuple[str, float]] = []
        self.busy: set[str] = set()
        self.changed = asyncio.Event()

    def start(self, watch: Watch) -> None:
        self.started.append((watch.job.job_id, watch.due))
        self.changed.set()

    async def until(self, count: int) -> None:
        async def wait() -> None:
            while len(self.started) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), GUARD_S)


def watch(job_id: str, due: float, task_id: str | None = None) -> Watch:
    job = a_job(job_id=job_id, task_id=task_id or f"task-{job_id}")
    return Watch(job, started=0.0, elapsed_before=0.0, expected=60, deadline=1e9, due=due)


def polls_on(time: GatedTime, recorder: Recorder) -> Polls:
    return Polls(
        start=recorder.start,
        busy=recorder.busy.__contains__,
        sleep=time.sleep,
        monotonic=time.monotonic,
    )


async def test_jobs_are_polled_in_order_of_due_time():
    time, recorder = GatedTime(), Recorder()
    polls = polls_on(time, recorder)
    for job_id, due in (("c", 30.0), ("a", 10.0), ("b", 20.0)):
        polls.put(watch(job_id, due))
    time.gate.set()  # the clock moves only when the loop sleeps
    await recorder.until(3)
    assert recorder.started == [("a", 10.0), ("b", 20.0), ("c", 30.0)]
    await polls.stop()


async def test_a_poke_polls_a_waiting_job_at_once():
    time, recorder = GatedTime(), Recorder()  # the gate stays shut: no time passes
    polls = polls_on(time, recorder)
    polls.put(watch("a", 600.0))
    polls.poke("task-a")
    await recorder.until(1)
    assert recorder.started == [("a", 0.0)]
    await polls.stop()


async def test_a_poke_during_a_poll_or_before_the_first_one_ends_is_kept():
    time, recorder = GatedTime(), Recorder()
    polls = polls_on(time, recorder)
    polls.poke("task-new")  # the job's first poll is still under way: not known yet
    polls.put(watch("new", 600.0, task_id="task-new"))
    await recorder.until(1)
    assert recorder.started == [("new", 0.0)]

    recorder.busy.add("new")  # its next poll is under way now
    polls.poke("task-new")
    recorder.busy.discard("new")
    polls.put(watch("new", 600.0, task_id="task-new"))  # that poll ends: polled again at once
    await recorder.until(2)
    assert recorder.started[1] == ("new", 0.0)
    await polls.stop()


async def test_a_removed_job_is_not_polled_and_pokes_for_it_are_ignored():
    time, recorder = GatedTime(), Recorder()
    polls = polls_on(time, recorder)
    polls.put(watch("gone", 5.0))
    polls.put(watch("kept", 6.0))
    polls.remove("gone")
    polls.poke("task-gone")
    time.gate.set()
    await recorder.until(1)
    assert recorder.started == [("kept", 6.0)] and len(polls) == 1
    await polls.stop()
