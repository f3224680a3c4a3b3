"""The console speaks of what the console can do, and shows one wait per tier and clip length.

Help and the text-only quote name ``sample`` and a file path (the console
has no photos to attach), in English and Chinese. ``/price`` and the quotes
show the same expected waits: the console's own (the local renderer's demo
speed, ``KLINGBOT_TIME_SCALE`` 0.1), and twice as long for 10 s clips.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import run_cli

HELP_GEN = {
    "en": '/gen [sample|<image path>] [--duration 10] [--negative "..."] <prompt> — quote every'
    " tier for the bundled sample picture or your own JPG or PNG, then make the video; a prompt"
    " alone: Master only",
    "zh-CN": '/gen [sample|<图片路径>] [--duration 10] [--negative "..."] <提示词> — 用自带的示例图片或你'
    "自己的 JPG、PNG 为每个档位报价，然后生成视频；只有提示词时仅提供大师档",
}
HELP_KEYS = {
    "en": "Type a button's number to press it. Ctrl-D quits once running jobs finish; Ctrl-C quits"
    " now.",
    "zh-CN": "输入按钮旁的数字即可按下按钮。按 Ctrl-D 在进行中的任务完成后退出；按 Ctrl-C 立即退出。",
}
NEEDS_IMAGE = {
    "en": "Standard and High Quality start from an image: /gen sample <prompt> uses the bundled"
    " picture, /gen <path to a JPG or PNG> <prompt> your own. Master also works from text alone.",
    "zh-CN": "标准和高品质需要一张图片：/gen sample <提示词> 使用自带的示例图片，/gen <JPG 或 PNG 的路径>"
    " <提示词> 使用你自己的图片。大师档也可以只用文字。",
}


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
async def test_console_help_and_text_only_quote_name_sample_and_a_path(console, lang):
    tester, deps = console
    chat = tester.chat(deps, lang=lang)
    help_ = (await tester.push(chat, "/help")).splitlines()
    assert HELP_GEN[lang] in help_
    assert HELP_KEYS[lang] in help_
    assert not [line for line in help_ if "photo" in line or "照片" in line]
    quote = (await tester.push(chat, "/gen a paper boat on a pond")).splitlines()
    assert NEEDS_IMAGE[lang] in quote
    assert not [line for line in quote if "photo" in line or "照片" in line]


def waits_of(block: str) -> list[str]:
    """The waits of a /price table's rows or a quote's tier buttons, in tier order."""
    rows = re.findall(r"^(?:• |  \[\d\] )\S.* · (~\d+ (?:s|min))(?: · |$)", block, re.MULTILINE)
    return rows


def test_price_and_quotes_show_the_same_waits_in_the_console(tmp_path):
    lines = "/topup me 1000\n/price\n/gen sample a cat\n/price 10\n/gen -d 10 sample a cat\n"
    result = run_cli("console", cwd=tmp_path, stdin=lines)
    assert result.returncode == 0, result.stderr
    answers = re.split(r"^(?=Kling 2\.1 prices|🎬 Quote)", result.stdout, flags=re.MULTILINE)
    price_5, quote_5, price_10, quote_10 = answers[1:]
    # Standard 45 s, High Quality 60 s, Master 200 s for a 5 s clip, at the console's 0.1.
    assert waits_of(price_5) == waits_of(quote_5) == ["~4 s", "~6 s", "~20 s"]
    assert waits_of(price_10) == waits_of(quote_10) == ["~9 s", "~12 s", "~40 s"]
