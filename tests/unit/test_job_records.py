"""Jobs kept between polls as plain tuples: nothing lost, nothing for the collector to walk."""

from __future__ import annotations

import gc

from bot.commands import ChatRef, UserRef
from bot.jobs.model import Job, pack_job, unpack_job
from bot.jobs.polls import Watch
from tests.support.jobs import a_job


def a_running_job(**changes: object) -> Job:
    values: dict[str, object] = dict(
        user=UserRef("discord", "111"),
        chat=ChatRef("discord", "222:333"),
        locale="zh-CN",
        tier="high_quality",
        mode="pro",
        resolution=1080,
        duration_s=10,
        price=70,
        expected_wait_s=50,
        prompt="一个金属机器人弹钢琴",
        negative_prompt="blur",
        image_path="/data/inputs/abc.png",
        state="running",
        provider="kling",
        task_id="image2video/8800",
        progress=40,
        attempts=2,
        status_message="m-9",
        created_at=1_764_000_000,
        submitted_at=1_764_000_010,
        started_at=1_764_000_020,
    )
    values.update(changes)
    return a_job(**values)


def test_a_packed_job_unpacks_to_the_same_job():
    for job in (a_running_job(), a_running_job(image_path=None, mode=None, task_id=None, state="held")):
        assert unpack_job(pack_job(job)) == job


def test_the_garbage_collector_stops_tracking_packed_jobs_and_watches():
    watch = Watch(a_running_job(), started=5.0, elapsed_before=12.0, expected=50, deadline=400.0)
    watch.polls, watch.failures = 3, 1
    records = [pack_job(a_running_job()), watch.pack()]
    gc.collect()
    gc.collect()  # a tuple inside a tuple is untracked first, its holder at the next pass
    assert [gc.is_tracked(record) for record in records] == [False, False]

    back = Watch.unpack(records[1], due=42.0)
    assert (back.job, back.started, back.elapsed_before, back.expected) == (
        watch.job,
        5.0,
        12.0,
        50,
    )
    assert (back.deadline, back.polls, back.failures, back.due) == (400.0, 3, 1, 42.0)
