"""One way to make a :class:`~bot.jobs.model.Job` in tests: a complete job, changed as asked."""

from __future__ import annotations

from bot.commands import ChatRef, UserRef
from bot.jobs.model import Job


def a_job(**changes: object) -> Job:
    """A Standard job of ``telegram:1`` held in its private chat; ``changes`` replace fields.

    A new ``user`` without a ``chat`` also moves the chat to that user's private chat.
    """
    user = changes.get("user", UserRef("telegram", "1"))
    assert isinstance(user, UserRef)
    values: dict[str, object] = dict(
        job_id="0123456789abcdef0123456789abcdef",
        quote_id="q-1",
        user=user,
        chat=ChatRef(user.platform, user.id),
        locale="en",
        tier="standard",
        model="kling-v2-1",
        mode="std",
        resolution=720,
        duration_s=5,
        price=20,
        expected_wait_s=45,
        prompt="a robot waves",
        negative_prompt="",
        image_path=None,
        state="held",
        provider="local",
    )
    values.update(changes)
    return Job(**values)  # type: ignore[arg-type]
