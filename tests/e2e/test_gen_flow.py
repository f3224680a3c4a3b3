"""/gen end to end through the console: quote, press, status edits, a real MP4, the ledger after."""

import asyncio
from pathlib import Path

import pytest

from storage.audit import audit
from tests.e2e.video import probe

PROMPT = "一个金属机器人专注地弹奏黑色钢琴，围绕主体运镜"


async def balance(gen, chat) -> str:
    return await gen.push(chat, "/balance")


@pytest.mark.parametrize(
    ("tier", "label", "price", "size"),
    [
        ("High Quality", "High Quality · 1080p · 35 credits (¥3.50)", 35, (1440, 1080)),
        ("Standard", "Standard · 720p · 20 credits (¥2.00)", 20, (960, 720)),
    ],
)
async def test_image_to_clip(gen, tier, label, price, size):
    chat = gen.chat()
    await gen.push(chat, "/topup me 100")
    quote = await gen.push(chat, f"/gen sample {PROMPT}")
    assert f"🎬 Quote for a 5 s clip of “{PROMPT}”. Pick a tier:" in quote
    assert "Master · 1080p · 100 credits (¥10.00)" in quote
    await gen.push(chat, gen.button(label))
    await gen.settle()

    text = gen.transcript()
    assert f"⏳ {tier} · 5 s · job " in text
    assert f"✅ {tier} chosen: {price} credits" in text
    assert f"🎬 {tier} · 5 s · job " in text and "elapsed · about" in text
    assert f"✅ {tier} · job " in text and f"{price} credits (¥{price / 10:.2f}) paid" in text
    [path] = gen.clips()
    clip = probe(path)
    assert (clip.codec, clip.width, clip.height) == ("h264", *size)
    assert abs(clip.duration_s - 5) <= 0.1 and clip.frames == 120
    assert (
        await balance(gen, chat)
        == f"Your balance: {100 - price} credits (¥{(100 - price) / 10:.2f})."
    )
    assert await audit(gen.deps.ledger.db) == []
    assert "🎲 Reroll" in text and "🔁 Other tier" in text


async def test_text_only_master_clip(gen):
    chat = gen.chat()
    await gen.push(chat, "/topup me 250")
    quote = await gen.push(chat, "/gen 一只猫在月球上跳舞，镜头缓缓推进 --duration 10")
    assert "Standard and High Quality start from an image" in quote
    assert "Standard ·" not in quote and "High Quality ·" not in quote
    await gen.push(chat, gen.button("Master · 1080p · 200 credits (¥20.00)"))
    await gen.settle()
    [path] = gen.clips()
    clip = probe(path)
    assert (clip.width, clip.height) == (1920, 1080)
    assert abs(clip.duration_s - 10) <= 0.1
    assert await balance(gen, chat) == "Your balance: 50 credits (¥5.00)."


async def test_reroll_and_other_tier_quote_the_same_inputs_again(gen):
    chat = gen.chat()
    await gen.push(chat, "/topup me 100")
    await gen.push(chat, "/gen sample a robot waves --duration 5")
    await gen.push(chat, gen.button("Standard ·"))
    await gen.settle()
    reroll = await gen.push(chat, gen.button("Reroll"))
    assert "a robot waves" in reroll and "Standard ·" in reroll and "Master ·" not in reroll
    other = await gen.push(chat, gen.button("Other tier"))
    assert all(tier in other for tier in ("Standard ·", "High Quality ·", "Master ·"))


async def test_buttons_belong_to_the_requester(gen):
    owner, stranger = gen.chat(), gen.chat(user="mallory")
    await gen.push(stranger, "/start")
    await gen.push(owner, "/topup me 100")
    await gen.push(owner, "/gen sample hello")
    number = gen.button("Standard ·")
    not_yours = "This is not your quote. Send /gen to get your own."
    assert await gen.press_as(stranger, owner, number) == not_yours
    assert await gen.press_as(stranger, owner, gen.button("Cancel", action="qcancel:")) == not_yours
    assert await balance(gen, owner) == "Your balance: 100 credits (¥10.00)."
    assert await gen.deps.generation.store.jobs_of(None, 10) == []


async def test_a_double_press_and_two_tiers_hold_once(gen):
    chat = gen.chat()
    await gen.push(chat, "/topup me 100")
    await gen.push(chat, "/gen sample hello")
    buttons = chat.live_buttons()
    standard = buttons[int(gen.button("Standard ·"))]
    high = buttons[int(gen.button("High Quality ·"))]
    await gen.press_action(chat, standard[0], standard[1])
    # The message already changed, but a fast second click still reaches the bot.
    again = await gen.press_action(chat, standard[0], standard[1])
    assert again == "A tier was already chosen for this quote; your credits were held once."
    assert "already chosen" in await gen.press_action(chat, high[0], high[1])
    await gen.settle()
    assert len(await gen.deps.generation.store.jobs_of(None, 10)) == 1
    assert await balance(gen, chat) == "Your balance: 80 credits (¥8.00)."


async def test_cancelling_a_quote_then_pressing_it(gen):
    chat = gen.chat()
    await gen.push(chat, "/topup me 100")
    await gen.push(chat, "/gen sample hello")
    message, action, _ = chat.live_buttons()[int(gen.button("Standard ·"))]
    cancel = gen.button("Cancel", action="qcancel:")
    assert "Quote cancelled. Nothing was charged." in await gen.push(chat, cancel)
    assert await gen.press_action(chat, message, action) == (
        "This quote was cancelled. Send /gen again for a fresh one."
    )
    assert await balance(gen, chat) == "Your balance: 100 credits (¥10.00)."


async def test_cannot_afford_then_balance_drops(gen):
    member, local = gen.chat(user="alice"), gen.chat()
    await gen.push(member, "/start")
    await gen.push(local, "/topup alice 30")
    quote = await gen.push(member, "/gen sample hello")
    assert "High Quality · 1080p · 35 credits (¥3.50) · not enough credits" in quote
    assert "Master · 1080p · 100 credits (¥10.00) · not enough credits" in quote
    refused = await gen.push(member, gen.button("High Quality ·"))
    assert refused == (
        "High Quality costs 35 credits (¥3.50), but your balance is 30 credits"
        " (¥3.00). Pick a cheaper tier or ask a moderator for a top-up."
    )
    assert await balance(gen, member) == "Your balance: 30 credits (¥3.00)."
    await gen.push(member, gen.button("Standard ·"))  # the quote is still open
    await gen.settle()
    assert await balance(gen, member) == "Your balance: 10 credits (¥1.00)."


async def test_an_expired_quote(tmp_path):
    from app.bootstrap import open_core
    from tests.e2e.conftest import GenConsole, fast_settings
    from tests.unit.fakes import FakeClock

    clock = FakeClock()
    settings = fast_settings(tmp_path, quote_ttl_s=60)
    async with open_core(settings, clock=clock) as deps:
        gen = GenConsole(settings, deps)
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.push(chat, "/gen sample hello")
        clock.advance(61)
        expired = await gen.push(chat, gen.button("Standard ·"))
        assert expired.endswith("This quote has expired. Send /gen again for a fresh one.")
        assert await balance(gen, chat) == "Your balance: 100 credits (¥10.00)."


async def test_jobs_and_refund(gen):
    member, local = gen.chat(user="alice"), gen.chat()
    await gen.push(member, "/start")
    await gen.push(local, "/topup alice 50")
    await gen.push(member, "/gen sample hello")
    await gen.push(member, gen.button("Standard ·"))
    await gen.settle()
    listing = await gen.push(member, "/jobs")
    assert "Standard · 5 s · delivered · 20 credits (¥2.00) · console:alice" in listing
    job = listing.splitlines()[1].split(" · ")[0]
    assert await gen.push(member, f"/refund {job}") == "Only moderators can do that."
    assert await gen.push(member, "/jobs all") == "Only moderators can do that."
    refunded = await gen.push(local, f"/refund {job} blurry hands")
    assert refunded == f"Refunded 20 credits (¥2.00) to console:alice for job {job}."
    assert await gen.push(local, f"/refund {job}") == f"Job {job} was already refunded."
    assert await balance(gen, member) == "Your balance: 50 credits (¥5.00)."
    assert "· refunded" in await gen.push(local, "/jobs alice")
    history = await gen.push(member, "/history 1")
    assert "adjustment +20 · balance 50 · blurry hands" in history
    assert await audit(gen.deps.ledger.db) == []


async def test_cancel_while_queued_gives_the_credits_back(tmp_path):
    from app.bootstrap import open_core
    from tests.e2e.conftest import GenConsole, fast_settings

    settings = fast_settings(tmp_path, max_jobs_per_provider=1, time_scale=100.0)
    async with open_core(settings) as deps:
        gen = GenConsole(settings, deps)
        await deps.generation.runner.start()
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        for _ in range(2):
            await gen.push(chat, "/gen sample hello")
            await gen.push(chat, gen.button("Standard ·"))
        assert "queued, position 1" in gen.transcript()
        second = gen.button("Cancel", action="cancel:")  # the newest status: the queued job
        await gen.push(chat, second)
        assert "🚫 Standard · job" in gen.transcript()
        assert "20 credits (¥2.00) went back to your wallet." in gen.transcript()
        first = gen.button("Cancel", action="cancel:")
        await gen.push(chat, first)
        await asyncio.wait_for(deps.generation.runner.idle(), 30)
        assert await balance(gen, chat) == "Your balance: 100 credits (¥10.00)."
        assert await audit(deps.ledger.db) == []


async def test_a_clip_too_large_for_the_chat_is_recorded_as_such_and_still_paid(tmp_path):
    from app.bootstrap import open_core
    from tests.e2e.conftest import ChatsById, GenConsole, fast_settings

    class TinyUploads(ChatsById):
        """A platform that takes no clip over 1,000 bytes (its adapter sends a notice)."""

        def fits(self, chat, size_bytes):
            return size_bytes <= 1_000

    settings = fast_settings(tmp_path)
    async with open_core(settings) as deps:
        gen = GenConsole(settings, deps)
        gen.router = TinyUploads()
        deps.generation.outboxes.register("console", gen.router)
        await deps.generation.runner.start()
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.push(chat, "/gen sample hello")
        await gen.push(chat, gen.button("Standard ·"))
        await gen.settle()
        [job] = await deps.generation.store.jobs_of(None, 1)
        assert (job.state, job.delivery) == ("delivered", "too_large")
        # The member still gets the delivery message (the platform's adapter turns the
        # clip into its "too large to show" notice) with its buttons, and pays once.
        transcript = gen.transcript()
        assert f"✅ Standard · job {job.short_id} · done in" in transcript
        assert (
            f"🎞️ Standard · 720p · 5 s · 20 credits (¥2.00) · job {job.short_id}" in transcript
        )
        assert gen.clips() == [Path(job.result_path)] and Path(job.result_path).stat().st_size > 1_000
        assert "🎲 Reroll" in transcript and "🔁 Other tier" in transcript
        assert "could not upload" not in transcript  # not mistaken for a failed upload
        assert await gen.push(chat, "/balance") == "Your balance: 80 credits (¥8.00)."
        assert await audit(deps.ledger.db) == []


async def test_a_finished_render_is_delivered_at_once_not_at_the_next_poll(tmp_path):
    """The local renderer tells the runner when a clip is done; nobody waits for a poll."""
    from bot.providers.local.provider import LocalProvider
    from tests.support.clock import GatedTime
    from tests.support.runner_harness import harness

    provider = LocalProvider(tmp_path / "renders", time_scale=0.001)
    # The runner's clock stands still: no poll after the first can come from its timer.
    async with harness(tmp_path, provider, time=GatedTime()) as gen:
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.order(chat, "a quick sunrise")
        await asyncio.wait_for(gen.runner.idle(), 60)
        job = await gen.job("a quick sunrise")
        assert (job.state, job.delivery) == ("delivered", "uploaded")
        [path] = gen.clips()
        assert (probe(path).width, probe(path).height) == (960, 720)
        assert f"✅ Standard · job {job.short_id}" in gen.transcript()
        assert await gen.balance(chat) == "Your balance: 80 credits (¥8.00)."
