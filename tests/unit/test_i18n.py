"""Every message exists in both languages, with the same placeholders."""

import re
from pathlib import Path

import pytest

from bot.i18n import LOCALES, Translator, catalog, placeholders, resolve_locale
from bot.replies import Money, Timestamp, Wait, text


def test_catalogs_have_the_same_keys_and_placeholders():
    english = catalog("en")
    for locale in LOCALES:
        other = catalog(locale)
        assert set(other) == set(english), locale
        for key, template in english.items():
            assert placeholders(other[key]) == placeholders(template), (locale, key)


def test_every_key_the_code_uses_exists():
    """Scan the sources for text("…")/say("…")/UserError("…") keys."""
    root = Path(__file__).parents[2]
    pattern = re.compile(
        r"""(?:text|say|UserError|super\(\).__init__)\(\s*f?"([a-z_]+\.[a-z_.]+)"""
    )
    used = set()
    for path in [*root.glob("bot/**/*.py"), *root.glob("adapters/**/*.py")]:
        used |= set(pattern.findall(path.read_text(encoding="utf-8")))
    assert used, "the scan found no keys"
    missing = {key for key in used if key not in catalog("en")}
    assert not missing


@pytest.mark.parametrize(
    ("tag", "locale"),
    [
        ("zh", "zh-CN"),
        ("zh-hans", "zh-CN"),
        ("zh_CN.UTF-8", "zh-CN"),
        ("zh-TW", "zh-CN"),
        ("en-US", "en"),
        ("en", "en"),
        ("fr", "en"),
        (None, "en"),
        ("", "en"),
        ("C.UTF-8", "en"),
    ],
)
def test_locale_resolution(tag, locale):
    assert resolve_locale(tag) == locale


def test_values_render_per_language():
    en, zh = Translator("en"), Translator("zh-CN")
    line = text(
        "price.row",
        tier="X",
        resolution="720p",
        money=Money(35, "¥3.50"),
        wait=Wait(200),
        input="-",
    )
    assert en(line) == "• X · 720p · 35 credits (¥3.50) · ~3 min · -"
    assert zh(line) == "• X · 720p · 35 灵感值（¥3.50） · 约 3 分钟 · -"
    assert en(text("balance.own", money=Money(1, "¥0.10"))) == "Your balance: 1 credit (¥0.10)."
    assert en(text("wait.seconds", n=1)) == "~1 s"
    assert "2025-11-24 16:00 UTC" in en(
        text(
            "history.row",
            when=Timestamp(1_764_000_000),
            kind="k",
            change="+1",
            balance=1,
            reason="r",
        )
    )


def test_unknown_locale_falls_back_to_english():
    assert Translator("fr").locale == "en"


def test_braces_in_user_text_are_not_templates():
    rendered = Translator("en")(text("error.unknown_user", query="{money} {0} {__class__}"))
    assert "{money} {0} {__class__}" in rendered
