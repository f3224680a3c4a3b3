"""Quotes and jobs, and the states a job moves through.

```
quote --choose--> held --submit--> submitted --> running --> succeeded --> delivered
                                                               (made, not yet delivered)
                    |                  |            |
                    +--cancel----------+------------+--> cancelled / failed (hold released)
```

Every move is a compare-and-set in the store, in the same transaction as the
ledger change it implies: ``succeeded`` captures the hold, ``failed`` and
``cancelled`` release it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Literal

from bot.commands import ChatRef, UserRef

JobState = Literal["held", "submitted", "running", "succeeded", "delivered", "failed", "cancelled"]

ACTIVE: tuple[JobState, ...] = ("held", "submitted", "running")
"""States that count against a user's concurrency and queue limits."""

UNFINISHED: tuple[JobState, ...] = ("held", "submitted", "running", "succeeded")
"""States the runner resumes after a restart."""

TERMINAL: tuple[JobState, ...] = ("delivered", "failed", "cancelled")

QuoteState = Literal["open", "used", "cancelled"]


@dataclass(frozen=True, slots=True)
class Quote:
    """The prices offered for one set of inputs; pressing a tier turns it into a job."""

    quote_id: str
    user: UserRef
    chat: ChatRef
    locale: str
    image_path: str | None
    prompt: str
    negative_prompt: str
    duration_s: int
    tiers: tuple[str, ...]
    state: QuoteState
    created_at: int
    expires_at: int
    retired_at: int | None = None
    """When a newer quote of the member closed this one (its ``state`` is then ``cancelled``)."""


@dataclass(frozen=True, slots=True)
class Job:
    """One paid generation, from held credits to the delivered clip."""

    job_id: str
    quote_id: str
    user: UserRef
    chat: ChatRef
    locale: str
    tier: str
    model: str
    mode: str | None
    resolution: int
    duration_s: int
    price: int
    expected_wait_s: int
    """The tier's configured wait for this clip length (the provider scales it; status messages
    use ExpectedWaits)."""
    prompt: str
    negative_prompt: str
    image_path: str | None
    state: JobState
    provider: str
    task_id: str | None = None
    progress: int = 0
    attempts: int = 0
    error_kind: str | None = None
    error_detail: str | None = None
    result_path: str | None = None
    status_message: str | None = None
    delivery: str | None = None
    """How a ``delivered`` clip reached its member: ``uploaded`` in their chat, or by
    another route (``followup``, ``dm``), ``too_large`` (a notice instead), ``link``,
    or ``undeliverable`` (nothing reached them; the clip is kept and paid for)."""
    refunded: bool = False
    created_at: int = 0
    submitted_at: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    delivered_at: int | None = None
    input_removed_at: int | None = None
    """When the retention sweep removed the input image (None: kept, or there was none)."""
    clip_removed_at: int | None = None
    """When the retention sweep removed the delivered clip (None: kept)."""
    delivery_attempts: int = 0
    """Sends of the clip that failed so far (``bot.jobs.delivery`` retries them)."""
    delivery_failing_since: int | None = None
    """When the first of them failed: the retry window counts from here."""
    delivery_retry_at: int | None = None
    """When the clip is tried again (wall clock); a restart resumes the schedule from it."""

    @property
    def short_id(self) -> str:
        """The first eight characters, enough to name a job in chat."""
        return self.job_id[:8]


JobRecord = tuple[object, ...]
"""A :class:`Job` as a tuple of strings, numbers and None (see :func:`pack_job`)."""

_JOB_FIELDS = tuple(field.name for field in fields(Job))
_USER = _JOB_FIELDS.index("user")
_CHAT = _JOB_FIELDS.index("chat")
_job_values = attrgetter(*_JOB_FIELDS)


def pack_job(job: Job) -> JobRecord:
    """The job as a flat tuple of plain values, for keeping many jobs in memory.

    CPython's garbage collector stops tracking a tuple that holds only
    strings, numbers and None, so ten thousand jobs kept this way cost a
    full collection nothing; as :class:`Job` objects they would be thirty
    thousand objects to walk. :func:`unpack_job` gives the job back.
    """
    values = list(_job_values(job))
    values[_USER] = job.user.platform
    values[_CHAT] = job.chat.platform
    return (job.user.id, job.chat.id, *values)


def unpack_job(record: JobRecord) -> Job:
    """The :class:`Job` that :func:`pack_job` packed."""
    user_id, chat_id, *values = record
    values[_USER] = UserRef(values[_USER], user_id)  # type: ignore[arg-type]
    values[_CHAT] = ChatRef(values[_CHAT], chat_id)  # type: ignore[arg-type]
    return Job(*values)  # type: ignore[arg-type]


CompareState = Literal["open", "making", "sent", "too_few", "failed"]
"""``open`` while its jobs run; ``making`` once a runner claimed the side-by-side clip;
then ``sent``, ``too_few`` (fewer than two tiers succeeded: nothing to compare) or
``failed`` (the clip could not be made or sent)."""


@dataclass(frozen=True, slots=True)
class Compare:
    """One ``/compare`` press: the jobs of several tiers on the same inputs, in tier order."""

    compare_id: str
    quote_id: str
    user: UserRef
    chat: ChatRef
    locale: str
    job_ids: tuple[str, ...]
    state: CompareState = "open"
    claimed_by: str | None = None
    claimed_at: int | None = None
    created_at: int = 0
    finished_at: int | None = None
