"""The runner's messages as a Chinese reader sees them: status, failures, delivery, refunds.

Built by the same functions the runner calls (``bot.jobs.status``) and
rendered by the translator, word for word, so a missing or English fragment
in a zh-CN message fails here.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bot.commands import UserRef
from bot.i18n import Translator
from bot.jobs import status
from bot.replies import Money, text
from bot.settings import Settings
from tests.support.jobs import a_job

CATALOG = Settings().catalog()
ZH = Translator("zh-CN")
JOB = a_job(
    job_id="abcd1234" + "0" * 24,
    quote_id="q",
    user=UserRef("telegram", "3"),
    locale="zh-CN",
    tier="high_quality",
    mode="pro",
    resolution=1080,
    duration_s=10,
    price=70,
    expected_wait_s=60,
    prompt="机器人",
    state="running",
)


def seen(reply) -> tuple[str, list[str]]:
    rendered = ZH.reply(reply)
    return rendered.text, [label for label, _ in rendered.buttons]


def test_status_messages_in_chinese():
    assert seen(status.queued(JOB, CATALOG, 3)) == (
        "⏳ 高品质 · 10 秒 · 任务 abcd1234 · 排队中，第 3 位\n"
        "已冻结 70 灵感值（¥7.00）；视频生成成功前不会扣费。",
        ["取消"],
    )
    assert seen(status.generating(JOB, CATALOG, 75, 120, 40)) == (
        "🎬 高品质 · 10 秒 · 任务 abcd1234 · 生成中\n已用时 1:15 · 预计还需 0:45\n▓▓▓▓░░░░░░ 40%",
        ["取消"],
    )
    assert seen(status.done(JOB, CATALOG, 95)) == (
        "✅ 高品质 · 任务 abcd1234 · 用时 1:35 完成 · 已支付 70 灵感值（¥7.00）",
        [],
    )
    assert seen(status.cancelled(JOB, CATALOG)) == (
        "🚫 高品质 · 任务 abcd1234 已取消。\n70 灵感值（¥7.00） 已退回你的钱包。",
        [],
    )


@pytest.mark.parametrize(
    ("key", "params", "reason"),
    [
        ("failure.busy", {}, "视频服务当前太忙。"),
        ("failure.content", {"reason": text("kling.content_safety")}, "视频服务拒绝了这张图片或提示词：未通过视频服务的内容安全审核"),
        ("failure.unavailable", {}, "视频服务暂时不可用，已通知运营人员。"),
        ("failure.provider", {}, "视频服务未能生成这个视频。"),
        ("failure.timeout", {}, "用时远超预期，已停止。"),
        ("failure.internal", {}, "我这边出了点问题。"),
    ],
)  # fmt: skip
def test_failures_in_chinese_say_why_and_that_the_credits_came_back(key, params, reason):
    assert seen(status.failed(JOB, CATALOG, key, **params)) == (
        f"❌ 高品质 · 任务 abcd1234 未能完成。\n{reason}\n70 灵感值（¥7.00） 已退回你的钱包。",
        [],
    )


def test_delivery_in_chinese():
    clip = Path("/data/clips/abcd.mp4")
    assert seen(status.video(JOB, CATALOG, clip)) == (
        "🎞️ 高品质 · 1080p · 10 秒 · 70 灵感值（¥7.00） · 任务 abcd1234",
        ["🎲 再来一次", "🔁 换个档位"],
    )
    assert seen(status.not_yet_delivered(JOB, CATALOG)) == (
        "✅ 高品质 · 任务 abcd1234 · 你的视频已生成（已支付 70 灵感值（¥7.00））。"
        "此聊天暂未接收该视频；一旦可以接收，我会立即发送。",
        ["📤 重新发送"],
    )
    assert seen(status.signed_link(JOB, "https://bot.example/clips/x.mp4?sig=s", 72)) == (
        "任务 abcd1234 的视频太大，无法上传到这里。请在此下载（链接 72 小时内有效）："
        "https://bot.example/clips/x.mp4?sig=s",
        [],
    )
    assert seen(status.undelivered(JOB)) == (
        "⚠️ 任务 abcd1234：多次尝试后仍无法在这里交付你的视频。请联系管理员获取文件或退款。",
        [],
    )
    assert seen(status.remote_link(JOB, "https://cdn.example/x.mp4")) == (
        "任务 abcd1234 的视频太大，无法上传到这里。请从视频服务下载（链接在有限时间内有效）："
        "https://cdn.example/x.mp4",
        [],
    )


def test_refunds_in_chinese():
    money = Money(70, Decimal("7.00"))
    assert ZH(text("refund.done", job="abcd1234", money=money, who="telegram:3")) == (
        "已为 telegram:3 退还任务 abcd1234 的 70 灵感值（¥7.00）。"
    )
    assert ZH(text("refund.already", job="abcd1234")) == "任务 abcd1234 已经退过款了。"
    assert ZH(text("reason.refund", job="abcd1234")) == "任务 abcd1234 退款"
    assert ZH(text("reason.failed", job="abcd1234")) == "任务 abcd1234 失败"
    assert ZH(text("job.not_refundable", job="abcd1234", state=text("state.failed"))) == (
        "任务 abcd1234 的状态是失败，已退款；只有已交付的任务可以退款。"
    )
