"""The job store port: quotes, jobs and their compare-and-set transitions.

``storage.jobs.SqliteJobStore`` (on the same SQLite writer as the ledger)
and ``storage.postgres.jobs.PgJobStore`` implement it, so a job's state
change and its ledger entry commit together in one transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from bot.commands import UserRef
from bot.jobs.model import Compare, CompareState, Job, JobState, Quote
from bot.ports import Outcome


class QuoteTaken(Exception):
    """The quote already became a job (a second press) or was cancelled."""


class QueueFull(Exception):
    """The user already has as many active jobs as the queue allows."""

    def __init__(self, active: int) -> None:
        super().__init__(f"{active} active jobs")
        self.active = active


class SlowDown(Exception):
    """The member asked for as many quotes as the rate allows; ``retry_after_s`` until the next."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


QUOTE_RATE_WINDOW_S = 60
"""The quote rate counts a member's quote requests over this many seconds (a sliding minute)."""


class JobStore(ABC):
    """Quotes and jobs, with every job transition atomic with its ledger entry."""

    @abstractmethod
    async def admit_quote_request(self, user: UserRef, *, per_minute: int, now: int) -> None:
        """Count one quote request of ``user``, or raise SlowDown if the rate is used up.

        In one transaction: the requests of the last :data:`QUOTE_RATE_WINDOW_S`
        seconds are counted; at ``per_minute`` or more nothing is recorded and
        SlowDown says when the oldest of them leaves the window; otherwise
        this request is recorded. Older requests are forgotten.
        """

    @abstractmethod
    async def save_quote(self, quote: Quote, *, max_open: int | None = None) -> tuple[str, ...]:
        """Record a new open quote; with ``max_open``, retire the member's oldest beyond it.

        In one transaction: the quote is inserted, and every open quote of
        the member but the ``max_open`` newest (the new one included; expired
        ones count too, as their images are still on disk) becomes
        ``cancelled`` with ``retired_at`` set. Returns the input images of
        the retired quotes that nothing else names (no open quote, no job):
        the caller removes them and notes it (:meth:`note_input_removed`).
        """

    @abstractmethod
    async def get_quote(self, quote_id: str) -> Quote | None:
        """The quote called ``quote_id``."""

    @abstractmethod
    async def cancel_quote(self, quote_id: str) -> bool:
        """Close an open quote; False if it was no longer open."""

    @abstractmethod
    async def create_job(self, job: Job, *, max_active: int, now: int) -> Job:
        """In one transaction: use the quote, hold the price, insert the job in state ``held``.

        Raises QuoteTaken, QueueFull (the user has ``max_active`` active jobs),
        InsufficientCredits or NoWallet; then nothing changed.
        """

    @abstractmethod
    async def get_job(self, job_id: str) -> Job | None:
        """The job called ``job_id`` (or whose id starts with it, if unique)."""

    @abstractmethod
    async def transition(
        self,
        job_id: str,
        from_states: tuple[JobState, ...],
        to_state: JobState,
        *,
        now: int,
        **fields: Any,
    ) -> Job | None:
        """Move a job if it is in one of ``from_states``; None if it had moved on.

        Entering ``succeeded`` captures the job's hold; entering ``failed`` or
        ``cancelled`` releases it, in the same transaction.
        """

    @abstractmethod
    async def claim_delivery(
        self, job_id: str, claimant: str, *, now: int, stale_before: int
    ) -> bool:
        """Take the right to send a ``succeeded`` job's clip (compare-and-set); False if not.

        True when the job is ``succeeded`` and unclaimed, already claimed by
        ``claimant``, or claimed at or before ``stale_before`` (a runner that
        died mid-send). False when another claimant's claim is fresh or the
        job is no longer ``succeeded``: then nothing may be sent.
        """

    @abstractmethod
    async def release_delivery(self, job_id: str, claimant: str) -> bool:
        """Give up ``claimant``'s claim (the send failed or stopped); False if it held none."""

    @abstractmethod
    async def clear_delivery_claims(self) -> int:
        """Drop every delivery claim; how many there were.

        Only for a runner that holds the database's runner lease, at its
        start: no other runner lives, so every claim is one that a runner
        killed mid-send left behind.
        """

    @abstractmethod
    async def update(self, job_id: str, state: JobState, **fields: Any) -> bool:
        """Set bookkeeping fields (progress, status message) while the job is in ``state``."""

    @abstractmethod
    async def unfinished_jobs(self) -> list[Job]:
        """Jobs a restarted runner must resume, oldest first."""

    @abstractmethod
    async def jobs_of(self, user: UserRef | None, limit: int) -> list[Job]:
        """A user's newest jobs (everyone's if ``user`` is None)."""

    @abstractmethod
    async def recent_durations(self, tier: str, limit: int) -> list[tuple[int, int]]:
        """(seconds from start to finish, clip seconds) of the tier's last successful jobs."""

    @abstractmethod
    async def inputs_to_remove(self, *, now: int, finished_before: int, limit: int) -> list[str]:
        """Input images nothing can need any more, not yet noted as removed (at most ``limit``).

        An image is needed while a quote naming it is open and not expired
        (``expires_at >= now``), while a job naming it is unfinished, and
        while a job naming it finished (delivered, failed or cancelled) after
        ``finished_before``: its Reroll and Other tier buttons may still be
        pressed. Paths come in order, each once.
        """

    @abstractmethod
    async def note_input_removed(self, path: str, *, now: int) -> int:
        """Note on every quote and job naming ``path`` that its image is gone; rows changed."""

    @abstractmethod
    async def clips_to_remove(self, *, delivered_before: int, limit: int) -> list[Job]:
        """Delivered jobs whose clip is still kept, delivered at or before ``delivered_before``.

        Oldest delivery first, at most ``limit``.
        """

    @abstractmethod
    async def note_clip_removed(self, job_id: str, *, now: int) -> bool:
        """Note that the job's clip is gone; False if it was noted already (or no such job)."""

    @abstractmethod
    async def refund(self, job_id: str, *, actor: str, reason: str, now: int) -> Outcome:
        """Give a delivered job's price back as an ``adjust`` entry, once."""

    # --- /compare: several tiers' jobs on one press ---------------------------------

    @abstractmethod
    async def create_compare(
        self, compare: Compare, jobs: list[Job], *, max_active: int, now: int
    ) -> list[Job]:
        """In one transaction: use the quote, hold every job's price, insert them and the compare.

        All or nothing: raises QuoteTaken, QueueFull (the member's active jobs
        plus these would pass ``max_active``), InsufficientCredits (the
        balance does not cover the sum; its ``needed`` is the sum) or
        NoWallet, and then no hold, job or compare exists.
        ``compare.job_ids`` name ``jobs`` in order.
        """

    @abstractmethod
    async def get_compare(self, compare_id: str) -> Compare | None:
        """The compare called ``compare_id``."""

    @abstractmethod
    async def compare_of(self, job_id: str) -> Compare | None:
        """The compare the job is part of (None: a job of its own)."""

    @abstractmethod
    async def unfinished_compares(self, limit: int) -> list[Compare]:
        """Compares still ``open`` or ``making``, oldest first (at most ``limit``).

        A restarted runner looks at them: one whose last job ended while no
        runner was there to finish it, or whose finisher died, is finished then.
        """

    @abstractmethod
    async def claim_compare(
        self, compare_id: str, claimant: str, *, now: int, stale_before: int
    ) -> bool:
        """Take the right to make and send the side-by-side clip (compare-and-set).

        True when the compare is ``open``, or ``making`` under a claim of
        ``claimant`` or one made at or before ``stale_before`` (a runner that
        died meanwhile): it is then ``making`` under ``claimant``'s claim.
        """

    @abstractmethod
    async def finish_compare(
        self, compare_id: str, claimant: str, state: CompareState, *, now: int
    ) -> bool:
        """End a compare ``claimant`` claimed with ``state`` (sent, too_few, failed).

        False if the claim is not theirs.
        """
