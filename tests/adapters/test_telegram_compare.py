"""/compare on Telegram against the Bot API stand-in: the quote with its buttons, one press,
a job per tier (one of them failing and refunded), and the side-by-side clip as a video."""

from __future__ import annotations

import pytest

from adapters.console.chat import sample_image
from bot.providers.base import ContentRefused
from storage.audit import audit
from tests.adapters.conftest import telegram_bot
from tests.adapters.standin import buttons
from tests.adapters.test_telegram import fund
from tests.e2e.scripted_provider import Script, ScriptedByTier
from tests.support.video import probe

PROMPT = "a paper boat on a pond"

CASES = {
    "en": dict(
        header=f"🆚 Compare tiers for a 5 s clip of “{PROMPT}”:",
        rows=(
            "Standard · 720p · 20 credits (¥2.00)",
            "High Quality · 1080p · 35 credits (¥3.50)",
            "Master · 1080p · 100 credits (¥10.00)",
            "All 3 tiers: 155 credits (¥15.50).",
        ),
        buttons=(
            "Standard, High Quality · 55 credits (¥5.50)",
            "Standard, Master · 120 credits (¥12.00)",
            "High Quality, Master · 135 credits (¥13.50)",
            "All 3 tiers · 155 credits (¥15.50)",
            "Cancel",
        ),
        chosen="✅ Comparing Standard, High Quality, Master: 155 credits (¥15.50) held, one job"
        " per tier. Each clip comes when it is ready, then one clip with them side by side.",
        failed="❌ Master · job ",
        caption="🆚 Standard, High Quality side by side · 5 s · 55 credits (¥5.50) paid",
        text_only="Comparing needs two tiers or more, and from text alone only Master can make a"
        " clip. Send a photo with /compare and your prompt as its caption. Nothing was charged.",
    ),
    "zh-CN": dict(
        header=f"🆚 对比各档位，生成 5 秒视频：“{PROMPT}”",
        rows=(
            "标准 · 720p · 20 灵感值（¥2.00）",
            "高品质 · 1080p · 35 灵感值（¥3.50）",
            "大师 · 1080p · 100 灵感值（¥10.00）",
            "全部 3 个档位合计：155 灵感值（¥15.50）。",
        ),
        buttons=(
            "标准、高品质 · 55 灵感值（¥5.50）",
            "标准、大师 · 120 灵感值（¥12.00）",
            "高品质、大师 · 135 灵感值（¥13.50）",
            "全部 3 个档位 · 155 灵感值（¥15.50）",
            "取消",
        ),
        chosen="✅ 正在对比标准、高品质、大师：已冻结 155 灵感值（¥15.50），每个档位一个任务。"
        "每段视频生成后即发送，最后再发送一段并排对比视频。",
        failed="❌ 大师 · 任务 ",
        caption="🆚 标准、高品质 并排对比 · 5 秒 · 已支付 55 灵感值（¥5.50）",
        text_only="对比至少需要两个档位，而只用文字时只有大师档能生成视频。请发送照片，并把 /compare"
        " 和提示词写在说明文字里。没有扣费。",
    ),
}


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
async def test_compare_all_tiers_with_one_failing(tmp_path, api, tiny_clip, lang):
    case = CASES[lang]
    provider = ScriptedByTier(tiny_clip)
    provider.script("master", Script(fail_with=ContentRefused("refused")))
    async with telegram_bot(tmp_path, api, provider=provider) as telegram:
        alice = telegram.member(1001, "Alice", "alice", lang=lang)
        await fund(telegram, alice, 200)

        since = len(api.calls)
        alice.send(f"/compare {PROMPT}")  # text alone: only Master, nothing to compare
        refused = await api.wait_for("sendMessage", since=since, chat_id=1001)
        assert refused.params["text"] == case["text_only"]

        since = len(api.calls)
        alice.send(f"/compare {PROMPT}", photo=sample_image(), size=(1280, 960))
        quote = await api.wait_for("sendMessage", since=since, chat_id=1001)
        lines = quote.params["text"].splitlines()
        assert lines[0] == case["header"] and tuple(lines[1:5]) == case["rows"]
        quote_id = buttons(quote)[0][1].split(":")[1]
        assert buttons(quote) == list(
            zip(
                case["buttons"],
                (*(f"cmp:{quote_id}:{p}" for p in ("0.1", "0.2", "1.2", "0.1.2")),
                 f"qcancel:{quote_id}"),
                strict=True,
            )
        )  # fmt: skip

        since = len(api.calls)
        alice.press(quote.result, case["buttons"][3])
        chosen = await api.wait_for(
            "editMessageText", since=since, message_id=quote.result["message_id"]
        )
        assert chosen.params["text"] == case["chosen"]
        side = await api.wait_for("sendVideo", since=since, chat_id=1001, count=3, timeout=60)
        await telegram.settle()
        await telegram.idle()
        statuses = [
            call
            for call in api.of("sendMessage", since=since, chat_id=1001)
            if call.params["text"].startswith("⏳")
        ]
        assert len(statuses) == 3  # a status message per tier
        assert len(api.of("sendVideo", since=since)) == 3  # two tiers, then side by side
        assert side.params["caption"] == case["caption"]
        clip_file = tmp_path / "side.mp4"
        clip_file.write_bytes(side.files["video"])
        clip = probe(clip_file)
        assert (clip.codec, clip.width, clip.height, clip.frames) == ("h264", 516, 168, 8)
        assert any(case["failed"] in edit.params["text"] for edit in api.of("editMessageText"))
        assert await telegram.balance(1001) == 145
        assert await audit(telegram.deps.ledger.db) == []
