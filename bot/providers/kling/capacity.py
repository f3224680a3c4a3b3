"""How many Kling tasks this process may have at once: what Kling's 1303 taught it.

A Kling account runs a limited number of tasks in parallel (its resource
pack decides how many); a create beyond it is refused with 1303 and nothing
is made. :class:`Capacity` counts the tasks this process knows to be
unfinished at Kling (``active``) and the creates on their way (``sending``).
After a 1303 it lets no more creates through than were running at that
moment, each one waiting for a slot to free up (a task of ours finishing, or
a create refused), and forgets the limit once none of ours is left, so that
a limit learned while someone else used the account does not stay for good.
When Kling refuses a create while none of ours runs (the account's other
users hold every slot), there is nothing to wait for: the caller pauses and
tries again.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


class Capacity:
    """The tasks this process has at Kling, and the limit a 1303 set."""

    def __init__(self) -> None:
        self.active: dict[str, str] = {}
        """Kling task id -> our task id (``kind/id``), for the tasks seen unfinished."""
        self.sending = 0
        """Creates that passed :meth:`room` and have not been answered yet."""
        self.cap: int | None = None
        """After a 1303: at most this many tasks (active plus sending) at once."""
        self._changed = asyncio.Event()

    async def room(self) -> None:
        """Wait for a free slot under the learned limit, then take it for one create."""
        while self.cap is not None and len(self.active) + self.sending >= self.cap:
            changed = self._changed
            await changed.wait()
        self.sending += 1

    def sent(self, raw: str | None = None, task_id: str | None = None) -> None:
        """The create taken by :meth:`room` was answered: made ``raw`` (or nothing, if None)."""
        self.sending = max(0, self.sending - 1)
        if raw is not None and task_id is not None:
            self.active[raw] = task_id
        self._notify()

    def running(self, raw: str, task_id: str) -> None:
        """A poll saw the task unfinished."""
        self.active[raw] = task_id

    def finished(self, raw: str) -> None:
        """The task finished, failed, vanished or is no longer ours to follow."""
        if self.active.pop(raw, None) is not None:
            self._notify()

    def refused(self) -> bool:
        """Kling refused a create with 1303; True when a task of ours will free a slot.

        The limit becomes what is running now. With nothing of ours running
        there is no slot of ours to wait for: False, and the caller pauses.
        """
        if not self.active:
            return False
        if self.cap is None or len(self.active) < self.cap:
            self.cap = len(self.active)
            log.warning(
                "Kling runs no more parallel tasks for this account (1303): "
                "at most %d at once until ours are done",
                self.cap,
            )
        return True

    def _notify(self) -> None:
        if not self.active and not self.sending:
            self.cap = None
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
