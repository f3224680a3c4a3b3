"""What a newcomer tripped over in the console, each case as the member sees it.

Every case asserts the exact message shown and that nothing was charged;
messages that read differently in Chinese are checked in Chinese too.
"""

import logging
import re

import pytest

from app.bootstrap import open_core
from bot.commands import UserRef
from tests.e2e.conftest import GenConsole, fast_settings
from tests.unit import images
from tests.unit.fakes import FakeClock

LONG_CHINESE = "一个金属机器人专注地弹奏黑色钢琴围绕主体缓缓运镜" * 4  # 96 characters, 288 bytes


async def balance_line(gen, chat) -> str:
    return (await gen.push(chat, "/balance")).splitlines()[0]


# --- 1. a long first word is a prompt, never a crash ----------------------------------


@pytest.mark.parametrize("word", [LONG_CHINESE, "x" * 300, "é" * 200, "a/" * 3000])
async def test_a_long_first_word_is_never_mistaken_for_a_crash(gen, caplog, word):
    caplog.set_level(logging.WARNING)
    chat = gen.chat()
    await gen.push(chat, "/topup me 100")
    answer = await gen.push(chat, f"/gen {word}")
    assert "Something went wrong" not in answer
    if "/" in word:  # it looks like a path: said to be missing, not a crash
        assert answer.startswith("I can't read the file a/a/a/")
    else:
        assert answer.startswith("🎬 Quote for a 5 s clip of “")
        assert "Master · 1080p · 100 credits (¥10.00)" in answer
    assert "Traceback" not in caplog.text and "File name too long" not in caplog.text
    assert await balance_line(gen, chat) == "Your balance: 100 credits (¥10.00)."


async def test_a_long_chinese_prompt_after_an_image_is_quoted_whole(gen):
    chat = gen.chat(lang="zh-CN")
    answer = await gen.push(chat, f"/gen sample {LONG_CHINESE}")
    assert answer.startswith("🎬 5 秒视频报价：“" + LONG_CHINESE[:20])
    assert "…”。请选择档位：\n" in answer
    assert "标准 · 720p · 20 灵感值（¥2.00）" in answer


# --- 2. options anywhere, quoted paths, ~, unknown options refused --------------------


@pytest.fixture
def pictures(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "photo.jpg").write_bytes(images.jpeg(800, 600))
    (tmp_path / "my sun.jpg").write_bytes(images.jpeg(800, 600))
    (tmp_path / "home" / "x.png").write_bytes(images.png(600, 800))
    (tmp_path / "noext").write_bytes(images.png(600, 600))
    return tmp_path


@pytest.mark.parametrize(
    ("line", "header"),
    [
        (
            '/gen --duration 10 --negative "blurry, text" photo.jpg a sun rises',
            "🎬 Quote for a 10 s clip of “a sun rises”. Pick a tier:",
        ),
        (
            '/gen photo.jpg a sun rises --negative "blurry, text" --duration=10',
            "🎬 Quote for a 10 s clip of “a sun rises”. Pick a tier:",
        ),
        ('/gen "my sun.jpg" a sun rises', "🎬 Quote for a 5 s clip of “a sun rises”. Pick a tier:"),
        (
            "/gen ~/x.png a sun rises -d 10",
            "🎬 Quote for a 10 s clip of “a sun rises”. Pick a tier:",
        ),
        ("/gen noext the dog's tail wags", "🎬 Quote for a 5 s clip of “the dog's tail wags”."),
        ('/gen sample "a sun rises"', "🎬 Quote for a 5 s clip of “a sun rises”. Pick a tier:"),
        ("/gen sample -- --duration is a word here", "of “--duration is a word here”."),
    ],
)
async def test_options_go_anywhere_and_images_are_found(gen, pictures, line, header):
    chat = gen.chat()
    answer = await gen.push(chat, line)
    assert answer.startswith("🎬 Quote for a ") and header in answer, answer
    assert "Standard · 720p" in answer  # an image was read: every tier is offered


async def test_the_negative_prompt_reaches_the_quote(gen, pictures):
    chat = gen.chat()
    await gen.push(chat, '/gen photo.jpg a sun rises --negative "blurry, text"')
    [quote] = await _quotes(gen)
    assert (quote.prompt, quote.negative_prompt) == ("a sun rises", "blurry, text")


async def _quotes(gen):
    rows = await gen.deps.ledger.db.read("SELECT quote_id FROM quotes")
    return [await gen.deps.generation.store.get_quote(row["quote_id"]) for row in rows]


@pytest.mark.parametrize(
    ("line", "english", "chinese"),
    [
        (
            "/gen sample --dur 10 a cat",
            "/gen has no option --dur. Its options are --duration, --negative.",
            "/gen 没有选项 --dur。可用的选项是 --duration, --negative。",
        ),
        (
            "/gen sample a cat --negative",
            '--negative needs a value, for example --duration 10 or --negative "blurry, text".',
            '--negative 后面需要一个值，例如 --duration 10 或 --negative "模糊, 文字"。',
        ),
        (
            "/gen sample --negative --duration 10 a cat",
            '--negative needs a value, for example --duration 10 or --negative "blurry, text".',
            '--negative 后面需要一个值，例如 --duration 10 或 --negative "模糊, 文字"。',
        ),
        (
            "/gen sample -d 5 a cat --duration 10",
            "--duration was given twice; give it once.",
            "--duration 写了两次，请只写一次。",
        ),
        (
            "/gen --duration 7 a cat",
            "A clip is 5 or 10 seconds long, not 7. Use --duration 5 or --duration 10.",
            "视频时长只能是 5 秒或 10 秒，不能是 7。请用 --duration 5 或 --duration 10。",
        ),
        (
            "/gen missing.png a cat",
            "There is no file missing.png. Give the path of a JPG or PNG, or `sample` for the"
            " bundled picture.",
            "找不到文件 missing.png。请提供 JPG 或 PNG 的路径，或用 `sample` 使用自带的示例图片。",
        ),
        (
            "/gen ./ a cat",
            "./ is a folder, not an image. Give the path of a JPG or PNG file.",
            "./ 是一个文件夹，不是图片。请提供 JPG 或 PNG 文件的路径。",
        ),
    ],
)
async def test_bad_options_are_named_and_cost_nothing(gen, pictures, line, english, chinese):
    for lang, expected in (("en", english), ("zh-CN", chinese)):
        chat = gen.chat(user=f"member-{lang}", lang=lang)
        await gen.push(chat, "/balance")
        await gen.push(gen.chat(), f"/topup member-{lang} 100")
        assert await gen.push(chat, line) == expected
    assert await _quotes(gen) == []
    for lang in ("en", "zh-CN"):
        wallet = await gen.deps.ledger.wallet(UserRef("console", f"member-{lang}"))
        assert (wallet.balance, wallet.held) == (100, 0)


# --- 3. stable button numbers, distinct answers for dead buttons ------------------------


async def test_the_piped_example_presses_what_it_says(gen):
    chat = gen.chat()
    await gen.push(chat, "/topup me 100")
    await gen.push(chat, "/price")
    quote = await gen.push(chat, "/gen sample a robot waves")
    assert "  [1] Standard · 720p · 20 credits (¥2.00)" in quote
    assert (await gen.push(chat, "1")).endswith(
        "✅ Standard chosen: 20 credits (¥2.00) held for job " + _job_of(gen.transcript()) + "."
    )


def _job_of(transcript: str) -> str:
    return re.search(r"(?:job|任务) ([0-9a-f]{8})", transcript).group(1)


async def test_cancel_keeps_its_number_while_the_status_is_edited(tmp_path):
    """Status edits every 0.2 s: Cancel shows under one number in every version."""
    settings = fast_settings(tmp_path, time_scale=0.02)
    async with open_core(settings) as deps:
        gen = GenConsole(settings, deps)
        await deps.generation.runner.start()
        chat = gen.chat()
        await gen.push(chat, "/topup me 200")
        await gen.push(chat, "/gen sample a robot waves")
        await gen.push(chat, "1")  # Standard: ~1 s at this scale, edits every 0.2 s
        await gen.settle()
    cancels = re.findall(r"  \[(\d+)\] Cancel$", gen.transcript(), flags=re.MULTILINE)
    statuses = gen.transcript().count("🎬 Standard · 5 s · job")
    assert statuses >= 3 and len(cancels) >= statuses + 1  # the quote's Cancel, then the job's
    assert len(set(cancels[1:])) == 1, cancels


async def test_dead_buttons_say_why(tmp_path):
    clock = FakeClock()
    settings = fast_settings(tmp_path)
    async with open_core(settings, clock=clock) as deps:
        gen = GenConsole(settings, deps)
        await deps.generation.runner.start()
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.push(chat, "/gen sample a robot waves")
        assert await gen.push(chat, "42") == (
            "There is no button 42. Type the number shown in [brackets] beside a button."
        )
        await gen.push(chat, "1")
        assert await gen.push(chat, "1") == (
            "A tier was already chosen for this quote; your credits were held once."
        )
        await gen.settle()
        await gen.push(chat, "/balance")  # a new command frees the used quote's numbers
        assert await gen.push(chat, "2") == (
            "Button 2 was on an earlier message and no longer works. Send the command again."
        )
        await gen.push(chat, "/gen sample a cat sleeps")
        clock.advance(settings.quote_ttl_s + 1)
        expired = await gen.push(chat, "1")
        assert expired.endswith("This quote has expired. Send /gen again for a fresh one.")
        assert await balance_line(gen, chat) == "Your balance: 80 credits (¥8.00)."


# --- 4. invisible prompts are empty -------------------------------------------------------


@pytest.mark.parametrize(
    "invisible", ["\u200b", "\u200b\u200c\u200d\ufeff", "\u3164 \u2800", "\u00a0\u200b"]
)
async def test_an_invisible_prompt_is_an_empty_prompt(gen, invisible):
    chat = gen.chat()
    await gen.push(chat, "/topup me 100")
    assert await gen.push(chat, f"/gen {invisible}") == (
        "Please describe the video you want: the prompt can't be empty."
    )
    quote = await gen.push(chat, f"/gen sample {invisible}")
    assert quote.startswith("🎬 Quote for a 5 s clip of your image.")  # image alone, no prompt
    assert await balance_line(gen, chat) == "Your balance: 100 credits (¥10.00)."


# --- 5. the messages fit the situation ----------------------------------------------------


async def test_an_empty_wallet_is_not_told_to_pick_a_cheaper_tier(gen):
    for lang, expected in (
        (
            "en",
            "Standard costs 20 credits (¥2.00), but your balance is 0 credits (¥0.00), not enough"
            " for any tier. Ask a moderator for a top-up.",
        ),
        (
            "zh-CN",
            "标准 需要 20 灵感值（¥2.00），你的余额是 0 灵感值（¥0.00），不够任何档位。请联系管理员充值。",
        ),
    ):
        chat = gen.chat(user=f"broke-{lang}", lang=lang)
        await gen.push(chat, "/gen sample a cat")
        assert await gen.push(chat, "1") == expected


async def test_a_short_wallet_is_told_to_pick_a_cheaper_tier(gen):
    chat = gen.chat(user="bob")
    await gen.push(chat, "/balance")
    await gen.push(gen.chat(), "/topup bob 25")
    await gen.push(chat, "/gen sample a cat")
    assert await gen.push(chat, "3") == (
        "Master costs 100 credits (¥10.00), but your balance is 25 credits (¥2.50). Pick a cheaper"
        " tier or ask a moderator for a top-up."
    )


# --- 6. history in the reader's language, plurals -----------------------------------------


async def test_history_reads_in_chinese_and_counts_right_in_english(gen):
    zh = gen.chat(lang="zh-CN")
    await gen.push(zh, "/topup me 100 测试")
    await gen.push(zh, "/gen sample 一只猫")
    await gen.push(zh, "1")
    await gen.settle()
    job = _job_of(gen.transcript())
    history = await gen.push(zh, "/history")
    lines = history.splitlines()
    assert lines[0] == "你最近的 3 条钱包记录（最新在前）："
    assert lines[1].endswith(f"从冻结中扣费 20 · 余额 80 · 任务 {job} 的视频已生成")
    assert lines[2].endswith(f"冻结 -20 · 余额 80 · 任务 {job}（标准，5 秒）")
    assert lines[3].endswith("充值 +100 · 余额 100 · 测试")
    english = await gen.push(gen.chat(), "/history 2")
    assert english.splitlines()[0] == "Your last 2 wallet entries (newest first):"
    assert english.splitlines()[1].endswith(
        f"paid from hold 20 · balance 80 · clip made for job {job}"
    )
    assert english.splitlines()[2].endswith(f"hold -20 · balance 80 · job {job} (Standard, 5 s)")
    assert (await gen.push(gen.chat(), "/history 1")).startswith("Your last wallet entry:\n")
    jobs = await gen.push(gen.chat(), "/jobs")
    assert jobs.startswith("The last job:\n") and "delivered" in jobs


async def test_entries_written_before_translated_reasons_still_show(gen):
    chat = gen.chat()
    await gen.push(chat, "/balance")
    # What the bot itself stored as a reason before reasons were translated: English text.
    await gen.deps.ledger.top_up(
        chat.caller.user, 5, key="old", actor="runner", reason="clip produced", now=1_764_000_000
    )
    assert (await gen.push(chat, "/history")).endswith("top-up +5 · balance 5 · clip produced")


@pytest.mark.parametrize(
    ("line", "english", "chinese"),
    [
        (
            "/history x",
            "/history takes a number of entries from 1 to 50, for example /history 5; x is not a"
            " number.",
            "/history 后面是 1 到 50 之间的条数，例如 /history 5；x 不是数字。",
        ),
        (
            "/history 51",
            "/history shows 1 to 50 entries; 51 is not in that range.",
            "/history 可显示 1 到 50 条记录；51 不在范围内。",
        ),
    ],
)
async def test_history_arguments(gen, line, english, chinese):
    assert await gen.push(gen.chat(), line) == english
    assert await gen.push(gen.chat(user="li", lang="zh-CN"), line) == chinese
