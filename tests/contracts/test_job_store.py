"""The JobStore port's contract, on SQLite and the in-memory fake (see conftest).

Quotes become jobs once; every transition is a compare-and-set with the
ledger entry it implies; lookups, listings and the retention queries agree.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.commands import ChatRef, UserRef
from bot.errors import InsufficientCredits, NoWallet
from bot.jobs.model import Job, Quote
from bot.jobs.store import QueueFull, QuoteTaken, SlowDown
from bot.ports import UserProfile, Wallet
from tests.support.jobs import a_job

NOW = 1_764_000_000
ALICE = UserRef("telegram", "1")
BOB = UserRef("telegram", "2")
DAY = 86_400


def quote(quote_id: str, user: UserRef = ALICE, **fields) -> Quote:
    values = dict(
        quote_id=quote_id,
        user=user,
        chat=ChatRef(user.platform, user.id),
        locale="en",
        image_path=f"/data/inputs/{quote_id}.jpg",
        prompt="a robot waves",
        negative_prompt="",
        duration_s=5,
        tiers=("standard", "master"),
        state="open",
        created_at=NOW,
        expires_at=NOW + 600,
    )
    values.update(fields)
    return Quote(**values)


def job(job_id: str, quote_id: str, user: UserRef = ALICE, **fields) -> Job:
    values: dict[str, object] = {"image_path": f"/data/inputs/{quote_id}.jpg", **fields}
    return a_job(job_id=job_id, quote_id=quote_id, user=user, **values)


async def wallet_of(storage, user: UserRef, credits: int) -> None:
    await storage.ledger.open_wallet(UserProfile(user, user.id), welcome_credits=0, now=NOW)
    if credits:
        await storage.ledger.top_up(
            user, credits, key=f"fund:{user}", actor="t", reason="", now=NOW
        )


async def made(storage, job_id: str, *, user: UserRef = ALICE, at: int = NOW, **fields) -> Job:
    """A quote and the job pressed on it, ``at`` that time."""
    quote_id = f"q-{job_id}"
    image = fields.pop("image_path", f"/data/inputs/{quote_id}.jpg")
    await storage.jobs.save_quote(quote(quote_id, user, image_path=image, created_at=at))
    return await storage.jobs.create_job(
        job(job_id, quote_id, user, image_path=image, **fields), max_active=100, now=at
    )


# --- quotes ---------------------------------------------------------------------------


async def test_a_quote_round_trips_and_cancels_once(jobs):
    text_only = quote("q2", image_path=None, tiers=("master",), negative_prompt="blur")
    await jobs.save_quote(quote("q1"))
    await jobs.save_quote(text_only)

    assert await jobs.get_quote("q1") == quote("q1")
    assert await jobs.get_quote("q2") == text_only
    assert await jobs.get_quote("nope") is None
    assert await jobs.cancel_quote("q1") is True
    assert await jobs.cancel_quote("q1") is False
    assert await jobs.cancel_quote("nope") is False
    assert (await jobs.get_quote("q1")).state == "cancelled"


# --- floods: open quotes and the quote rate ----------------------------------------------


async def test_a_new_quote_retires_the_oldest_beyond_the_limit_and_frees_its_image(storage):
    jobs = storage.jobs
    for n in range(3):
        assert await jobs.save_quote(quote(f"q{n}", created_at=NOW + n), max_open=3) == ()
    await jobs.save_quote(quote("bob", BOB, created_at=NOW), max_open=3)  # Bob's own count
    # A reroll quote shares its job's image: retiring it frees nothing.
    await wallet_of(storage, ALICE, 100)
    await made(storage, "job-1", image_path="/data/inputs/shared.jpg")
    await jobs.save_quote(quote("reroll", image_path="/data/inputs/shared.jpg", created_at=NOW))
    text_only = quote("text", image_path=None, created_at=NOW)
    await jobs.save_quote(text_only)

    freed = await jobs.save_quote(quote("q3", created_at=NOW + 3), max_open=3)

    # Alice had q0, q1, q2, reroll and text open; q3, q2 and q1 are her three newest.
    assert freed == ("/data/inputs/q0.jpg",)
    retired = [q for q in ("q0", "reroll", "text") if (await jobs.get_quote(q)).state != "open"]
    assert retired == ["q0", "reroll", "text"]
    for quote_id in retired:
        found = await jobs.get_quote(quote_id)
        assert (found.state, found.retired_at) == ("cancelled", NOW + 3)
    for quote_id in ("q1", "q2", "q3"):
        assert (await jobs.get_quote(quote_id)).state == "open"
        assert (await jobs.get_quote(quote_id)).retired_at is None
    assert (await jobs.get_quote("bob")).state == "open"


async def test_quotes_created_in_the_same_second_retire_in_the_order_they_came(jobs):
    for n in range(4):
        freed = await jobs.save_quote(quote(f"q{n}"), max_open=2)
    assert freed == ("/data/inputs/q1.jpg",)
    states = [(await jobs.get_quote(f"q{n}")).state for n in range(4)]
    assert states == ["cancelled", "cancelled", "open", "open"]


async def test_a_retired_image_an_open_quote_still_names_is_kept(jobs):
    shared = "/data/inputs/shared.jpg"
    await jobs.save_quote(quote("old", image_path=shared, created_at=NOW))
    await jobs.save_quote(quote("newer", image_path=shared, created_at=NOW + 1))
    assert await jobs.save_quote(quote("newest", created_at=NOW + 2), max_open=2) == ()
    assert (await jobs.get_quote("old")).state == "cancelled"


async def test_the_quote_rate_counts_a_sliding_minute_per_member(jobs):
    for second in (0, 10, 20):
        await jobs.admit_quote_request(ALICE, per_minute=3, now=NOW + second)
    with pytest.raises(SlowDown) as refused:
        await jobs.admit_quote_request(ALICE, per_minute=3, now=NOW + 30)
    assert refused.value.retry_after_s == 30  # the request at NOW leaves the minute at NOW + 60
    await jobs.admit_quote_request(BOB, per_minute=3, now=NOW + 30)  # Bob has his own minute
    with pytest.raises(SlowDown) as refused:
        await jobs.admit_quote_request(ALICE, per_minute=3, now=NOW + 59)
    assert refused.value.retry_after_s == 1
    await jobs.admit_quote_request(ALICE, per_minute=3, now=NOW + 60)  # NOW's request left
    with pytest.raises(SlowDown) as refused:  # refusals were not counted: 10, 20, 60 remain
        await jobs.admit_quote_request(ALICE, per_minute=3, now=NOW + 61)
    assert refused.value.retry_after_s == 9


# --- a quote becomes a job once -------------------------------------------------------------


async def test_pressing_a_tier_uses_the_quote_and_holds_the_price(storage):
    await wallet_of(storage, ALICE, 100)
    await storage.jobs.save_quote(quote("q1"))

    created = await storage.jobs.create_job(job("job-0001", "q1"), max_active=7, now=NOW + 5)

    assert created == job("job-0001", "q1", created_at=NOW + 5)
    assert await storage.jobs.get_job("job-0001") == created
    assert (await storage.jobs.get_quote("q1")).state == "used"
    assert await storage.ledger.wallet(ALICE) == Wallet(ALICE, 80, 20, 1)
    [hold, _] = await storage.ledger.history(ALICE, 10)
    assert (hold.kind, hold.hold_id, hold.actor) == ("hold", "job-0001", "telegram:1")
    with pytest.raises(QuoteTaken):  # a second press, even of another tier
        await storage.jobs.create_job(job("job-0002", "q1"), max_active=7, now=NOW + 6)
    with pytest.raises(QuoteTaken):
        await storage.jobs.create_job(job("job-0003", "no-quote"), max_active=7, now=NOW)
    await storage.jobs.save_quote(quote("q2"))
    await storage.jobs.cancel_quote("q2")
    with pytest.raises(QuoteTaken):
        await storage.jobs.create_job(job("job-0004", "q2"), max_active=7, now=NOW)
    assert await storage.ledger.wallet(ALICE) == Wallet(ALICE, 80, 20, 1)
    assert [j.job_id for j in await storage.jobs.jobs_of(None, 10)] == ["job-0001"]


@pytest.mark.parametrize("refusal", ["queue_full", "too_poor", "no_wallet"])
async def test_a_refused_press_changes_nothing_and_the_quote_stays_open(storage, refusal):
    await wallet_of(storage, BOB, 100)
    if refusal != "no_wallet":
        await wallet_of(storage, ALICE, 100 if refusal == "queue_full" else 19)
    if refusal == "queue_full":
        await made(storage, "job-a")
        await made(storage, "job-b")
        await made(storage, "job-c", state="held")
        await storage.jobs.transition("job-c", ("held",), "failed", now=NOW)  # not active
    await storage.jobs.save_quote(quote("q1"))
    before = await storage.ledger.wallet(ALICE)
    expected = {"queue_full": QueueFull, "too_poor": InsufficientCredits, "no_wallet": NoWallet}

    with pytest.raises(expected[refusal]) as refused:
        await storage.jobs.create_job(job("job-x", "q1"), max_active=2, now=NOW)

    if refusal == "queue_full":
        assert refused.value.active == 2
    assert (await storage.jobs.get_quote("q1")).state == "open"
    assert await storage.jobs.get_job("job-x") is None
    assert await storage.ledger.wallet(ALICE) == before
    assert await storage.ledger.get_hold("job-x") is None
    # Another member's jobs never count against this one's queue.
    await made(storage, "job-bob", user=BOB)


# --- finding jobs -----------------------------------------------------------------------


async def test_a_job_is_found_by_its_id_or_a_unique_prefix(storage):
    await wallet_of(storage, ALICE, 1000)
    for job_id in ("abcd1234ff", "abcd1234ee", "abcd1234", "abce0000", "x_y%z000"):
        await made(storage, job_id)
    find = storage.jobs.get_job

    assert (await find("abcd1234")).job_id == "abcd1234"  # exact, though a prefix of another
    assert (await find("abcd1234f")).job_id == "abcd1234ff"
    assert await find("abcd1234e") is not None and await find("abcd12345") is None
    assert (await find("ABCE")).job_id == "abce0000"  # ASCII case does not matter
    assert await find("abcd") is None  # two jobs start so
    assert await find("abc") is None  # too short to name one
    assert await find("a%") is None and await find("____") is None  # no wildcards
    assert await find("nothing") is None


async def test_listings_are_newest_first_and_unfinished_oldest_first(storage):
    await wallet_of(storage, ALICE, 1000)
    await wallet_of(storage, BOB, 1000)
    await made(storage, "job-1", at=NOW)
    await made(storage, "job-2", at=NOW + 10, user=BOB)
    await made(storage, "job-3", at=NOW + 10)
    await made(storage, "job-4", at=NOW + 20)
    await storage.jobs.transition("job-1", ("held",), "submitted", now=NOW, task_id="t1")
    await storage.jobs.transition("job-4", ("held",), "cancelled", now=NOW + 21)

    assert [j.job_id for j in await storage.jobs.jobs_of(None, 10)] == [
        "job-4", "job-3", "job-2", "job-1"
    ]  # fmt: skip
    assert [j.job_id for j in await storage.jobs.jobs_of(ALICE, 2)] == ["job-4", "job-3"]
    assert [j.job_id for j in await storage.jobs.jobs_of(BOB, 10)] == ["job-2"]
    assert [j.job_id for j in await storage.jobs.unfinished_jobs()] == ["job-1", "job-2", "job-3"]


# --- transitions ------------------------------------------------------------------------


async def test_transitions_are_compare_and_set_with_their_ledger_entry(storage):
    await wallet_of(storage, ALICE, 100)
    for job_id in ("job-ok", "job-bad", "job-off"):
        await made(storage, job_id)
    move = storage.jobs.transition

    submitted = await move("job-ok", ("held",), "submitted", now=NOW, task_id="t", attempts=1)
    assert (submitted.state, submitted.task_id, submitted.attempts) == ("submitted", "t", 1)
    assert await move("job-ok", ("held",), "cancelled", now=NOW) is None  # moved on already
    assert await move("nope", ("held",), "cancelled", now=NOW) is None
    running = await move("job-ok", ("submitted",), "running", now=NOW, started_at=NOW + 1)
    done = await move(
        "job-ok", ("running",), "succeeded", now=NOW + 9, finished_at=NOW + 9, result_path="/c"
    )
    assert running.started_at == NOW + 1 and (done.state, done.result_path) == ("succeeded", "/c")
    assert (await storage.ledger.get_hold("job-ok")).state == "captured"
    failed = await move("job-bad", ("held",), "failed", now=NOW, error_kind="provider")
    cancelled = await move("job-off", ("held", "submitted"), "cancelled", now=NOW)
    assert (failed.state, failed.error_kind, cancelled.state) == ("failed", "provider", "cancelled")
    assert (await storage.ledger.get_hold("job-bad")).state == "released"
    assert await storage.ledger.wallet(ALICE) == Wallet(ALICE, 80, 0, 0)
    kinds = [(e.kind, e.hold_id, e.actor) for e in await storage.ledger.history(ALICE, 3)]
    assert kinds == [
        ("release", "job-off", "runner"),
        ("release", "job-bad", "runner"),
        ("capture", "job-ok", "runner"),
    ]
    assert await storage.jobs.get_job("job-ok") == done
    with pytest.raises(ValueError):
        await move("job-ok", ("succeeded",), "delivered", now=NOW, state="held")
    with pytest.raises(ValueError):
        await move("job-ok", ("succeeded",), "delivered", now=NOW, colour="red")
    assert (await storage.jobs.get_job("job-ok")).state == "succeeded"


async def test_update_sets_bookkeeping_only_in_the_named_state(storage):
    await wallet_of(storage, ALICE, 100)
    await made(storage, "job-1")

    assert await storage.jobs.update("job-1", "held", status_message="m-7", progress=5) is True
    assert await storage.jobs.update("job-1", "running", progress=50) is False
    assert await storage.jobs.update("nope", "held", progress=50) is False
    with pytest.raises(ValueError):
        await storage.jobs.update("job-1", "held", user_id="2")
    current = await storage.jobs.get_job("job-1")
    assert (current.status_message, current.progress, current.state) == ("m-7", 5, "held")


async def test_recent_durations_come_from_successful_runs_newest_first(storage):
    await wallet_of(storage, ALICE, 1000)
    runs = [("a", "standard", 10, 30), ("b", "standard", 20, 100), ("c", "master", 0, 50)]
    for name, tier, started, finished in runs:
        await made(storage, f"job-{name}", tier=tier)
        await storage.jobs.transition(
            f"job-{name}", ("held",), "running", now=NOW, started_at=NOW + started
        )
        await storage.jobs.transition(
            f"job-{name}", ("running",), "succeeded", now=NOW, finished_at=NOW + finished
        )
    await storage.jobs.transition("job-a", ("succeeded",), "delivered", now=NOW)
    await made(storage, "job-d")
    await storage.jobs.transition("job-d", ("held",), "running", now=NOW, started_at=NOW)
    await storage.jobs.transition("job-d", ("running",), "failed", now=NOW, finished_at=NOW + 999)

    assert await storage.jobs.recent_durations("standard", 10) == [(80, 5), (20, 5)]
    assert await storage.jobs.recent_durations("standard", 1) == [(80, 5)]
    assert await storage.jobs.recent_durations("master", 10) == [(50, 5)]
    assert await storage.jobs.recent_durations("high_quality", 10) == []


async def test_a_refund_is_an_adjustment_made_once(storage):
    await wallet_of(storage, ALICE, 100)
    await made(storage, "job-1")
    await storage.jobs.transition("job-1", ("held",), "succeeded", now=NOW)

    first = await storage.jobs.refund("job-1", actor="telegram:9", reason="blurry", now=NOW + 1)
    again = await storage.jobs.refund("job-1", actor="telegram:9", reason="again", now=NOW + 2)

    assert first.applied and not again.applied and again.entry == first.entry
    assert (first.entry.kind, first.entry.amount, first.entry.key) == ("adjust", 20, "refund:job-1")
    assert first.entry.reason == "blurry"
    assert (await storage.jobs.get_job("job-1")).refunded is True
    assert await storage.ledger.wallet(ALICE) == Wallet(ALICE, 100, 0, 0)
    with pytest.raises(KeyError):
        await storage.jobs.refund("nope", actor="x", reason="", now=NOW)


# --- retention --------------------------------------------------------------------------


async def test_inputs_are_due_once_nothing_can_need_them(storage):
    await wallet_of(storage, ALICE, 1000)
    store = storage.jobs
    later = NOW + 10 * DAY
    keep = DAY
    await store.save_quote(quote("open", expires_at=later + 1))  # still pressable
    await store.save_quote(quote("expired", expires_at=later - 1))
    await store.save_quote(quote("cancelled"))
    await store.cancel_quote("cancelled")
    await store.save_quote(quote("text", image_path=None))
    await made(storage, "running")
    await store.transition("running", ("held",), "running", now=NOW)
    await made(storage, "waiting-redelivery")
    await store.transition("waiting-redelivery", ("held",), "succeeded", now=NOW, finished_at=NOW)
    await made(storage, "old")
    await store.transition(
        "old", ("held",), "succeeded", now=NOW, finished_at=NOW, result_path="/c/old.mp4"
    )
    await store.transition("old", ("succeeded",), "delivered", now=NOW, delivered_at=NOW)
    await made(storage, "recent")
    await store.transition("recent", ("held",), "failed", now=later, finished_at=later - keep + 1)
    # An old job and a fresh quote (a Reroll) share one image: the quote keeps it.
    await made(storage, "shared", image_path="/data/inputs/shared.jpg")
    await store.transition("shared", ("held",), "cancelled", now=NOW, finished_at=NOW)
    await store.save_quote(quote("reroll", image_path="/data/inputs/shared.jpg", expires_at=later))

    due = await store.inputs_to_remove(now=later, finished_before=later - keep, limit=100)

    assert due == [
        "/data/inputs/cancelled.jpg",
        "/data/inputs/expired.jpg",
        "/data/inputs/q-old.jpg",
    ]
    assert await store.inputs_to_remove(now=later, finished_before=later - keep, limit=2) == due[:2]
    assert await store.note_input_removed("/data/inputs/q-old.jpg", now=later) == 2  # quote + job
    assert await store.note_input_removed("/data/inputs/q-old.jpg", now=later) == 0
    assert (await store.get_job("old")).input_removed_at == later
    assert (await store.get_job("recent")).input_removed_at is None
    assert (
        await store.inputs_to_remove(now=later, finished_before=later - keep, limit=100)
        == (due[:2])
    )
    # Once the Reroll quote expires, the shared image is due too.
    after = later + 1
    assert "/data/inputs/shared.jpg" in await store.inputs_to_remove(
        now=after, finished_before=after - keep, limit=100
    )


async def test_clips_are_due_after_their_delivery(storage):
    await wallet_of(storage, ALICE, 1000)
    store = storage.jobs
    for name, delivered in (("b", NOW + 20), ("a", NOW + 10), ("c", NOW + 30)):
        await made(storage, f"job-{name}")
        await store.transition(
            f"job-{name}", ("held",), "succeeded", now=NOW, result_path=f"/c/{name}.mp4"
        )
        await store.transition(
            f"job-{name}", ("succeeded",), "delivered", now=NOW, delivered_at=delivered
        )
    await made(storage, "job-undelivered")
    await store.transition("job-undelivered", ("held",), "succeeded", now=NOW, result_path="/c/u")

    due = await store.clips_to_remove(delivered_before=NOW + 20, limit=10)
    assert [j.job_id for j in due] == ["job-a", "job-b"]
    assert due[0] == await store.get_job("job-a")
    assert [j.job_id for j in await store.clips_to_remove(delivered_before=NOW + 99, limit=1)] == [
        "job-a"
    ]
    assert await store.note_clip_removed("job-a", now=NOW + 50) is True
    assert await store.note_clip_removed("job-a", now=NOW + 60) is False
    assert await store.note_clip_removed("nope", now=NOW + 60) is False
    assert (await store.get_job("job-a")).clip_removed_at == NOW + 50
    remaining = await store.clips_to_remove(delivered_before=NOW + 99, limit=10)
    assert [j.job_id for j in remaining] == ["job-b", "job-c"]


async def test_a_new_job_keeps_what_the_caller_gave_it(storage):
    await wallet_of(storage, ALICE, 100)
    await storage.jobs.save_quote(quote("q1"))
    given = job("job-1", "q1", mode=None, negative_prompt="blur", image_path=None, locale="zh-CN")
    created = await storage.jobs.create_job(given, max_active=1, now=NOW)
    assert created == replace(given, created_at=NOW)


async def test_a_delivery_is_claimed_by_one_runner_at_a_time(storage):
    await wallet_of(storage, ALICE, 100)
    await made(storage, "job-1")
    claim, release = storage.jobs.claim_delivery, storage.jobs.release_delivery
    fresh = NOW - 600  # claims taken after this are held

    assert await claim("job-1", "runner-a", now=NOW, stale_before=fresh) is False  # not made yet
    move = storage.jobs.transition
    await move("job-1", ("held",), "running", now=NOW)
    await move("job-1", ("running",), "succeeded", now=NOW, result_path="/c")
    assert await claim("job-1", "runner-a", now=NOW, stale_before=fresh) is True
    assert await claim("job-1", "runner-b", now=NOW + 1, stale_before=fresh + 1) is False
    assert await claim("job-1", "runner-a", now=NOW + 2, stale_before=fresh + 2) is True  # again
    assert await release("job-1", "runner-b") is False  # not b's to give up
    assert await release("job-1", "runner-a") is True
    assert await release("job-1", "runner-a") is False
    assert await claim("job-1", "runner-b", now=NOW + 3, stale_before=fresh + 3) is True
    # Runner b died mid-send: once its claim is stale, a later runner takes the job over.
    assert await claim("job-1", "runner-c", now=NOW + 500, stale_before=NOW + 2) is False
    assert await claim("job-1", "runner-c", now=NOW + 603, stale_before=NOW + 3) is True
    await move("job-1", ("succeeded",), "delivered", now=NOW + 604, delivery="uploaded")
    assert await claim("job-1", "runner-c", now=NOW + 605, stale_before=NOW + 5) is False
    assert await claim("nope", "runner-c", now=NOW, stale_before=fresh) is False


async def test_a_runner_alone_on_the_database_clears_the_claims_dead_runners_left(storage):
    await wallet_of(storage, ALICE, 100)
    for job_id in ("job-1", "job-2"):
        await made(storage, job_id)
        await storage.jobs.transition(job_id, ("held",), "running", now=NOW)
        await storage.jobs.transition(job_id, ("running",), "succeeded", now=NOW, result_path="/c")
    claim = storage.jobs.claim_delivery
    assert await claim("job-1", "killed", now=NOW, stale_before=NOW - 600) is True
    assert await claim("job-2", "killed", now=NOW, stale_before=NOW - 600) is True
    assert await claim("job-1", "next", now=NOW + 1, stale_before=NOW - 599) is False

    assert await storage.jobs.clear_delivery_claims() == 2
    assert await claim("job-1", "next", now=NOW + 1, stale_before=NOW - 599) is True
    assert await storage.jobs.clear_delivery_claims() == 1
    assert await storage.jobs.clear_delivery_claims() == 0
