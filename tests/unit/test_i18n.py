"""Every message exists in both languages, with the same placeholders."""

import ast
import re
from decimal import Decimal
from pathlib import Path
from typing import get_args

import pytest

from bot.i18n import LOCALES, Translator, catalog, placeholders, plural_forms, resolve_locale
from bot.jobs.model import JobState
from bot.ports import EntryKind
from bot.replies import Money, Timestamp, Wait, text


def test_catalogs_have_the_same_keys_and_placeholders():
    english = catalog("en")
    for locale in LOCALES:
        other = catalog(locale)
        assert set(other) == set(english), locale
        for key, template in english.items():
            assert placeholders(other[key]) == placeholders(template), (locale, key)


def test_plural_messages_have_every_form_each_language_needs():
    plural = {key for key, template in catalog("en").items() if not isinstance(template, str)}
    assert {"money", "history.header", "jobs.header", "balance.held"} <= plural
    for locale in LOCALES:
        for key in plural:
            template = catalog(locale)[key]
            assert not isinstance(template, str), (locale, key)
            assert set(template) >= plural_forms(locale), (locale, key)
    assert plural_forms("en") == {"one", "other"}
    assert plural_forms("zh-CN") == {"other"}


@pytest.mark.parametrize(
    ("key", "count", "english", "chinese"),
    [
        ("history.header", 1, "Your last wallet entry:", "你最近的 1 条钱包记录（最新在前）："),
        ("history.header", 2, "Your last 2 wallet entries (newest first):", "你最近的 2 条钱包记录（最新在前）："),
        ("jobs.header", 1, "The last job:", "最近 1 个任务（最新在前）："),
        ("jobs.header", 12, "The last 12 jobs (newest first):", "最近 12 个任务（最新在前）："),
        ("quote.queue_full", 1, "You already have a video queued", "你已有 1 个视频在排队"),
        ("quote.queue_full", 3, "You already have 3 videos queued", "你已有 3 个视频在排队"),
    ],
)
def test_counted_messages_read_right_in_both_languages(key, count, english, chinese):
    assert Translator("en")(text(key, count=count)).startswith(english)
    assert Translator("zh-CN")(text(key, count=count)).startswith(chinese)


def test_numbers_and_money_are_grouped_by_babel():
    en, zh = Translator("en"), Translator("zh-CN")
    big = Money(1_234_567, Decimal("123456.70"))
    assert en(text("balance.own", money=big)) == "Your balance: 1,234,567 credits (¥123,456.70)."
    assert zh(text("balance.own", money=big)) == "你的余额：1,234,567 灵感值（¥123,456.70）。"
    assert en(text("balance.held", count=1, money=Money(20, Decimal("2.00")))) == (
        "On hold for 1 running job: 20 credits (¥2.00)."
    )
    assert en(text("balance.held", count=2, money=Money(40, Decimal("4.00")))) == (
        "On hold for 2 running jobs: 40 credits (¥4.00)."
    )


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


SOURCES = ("bot", "adapters", "app", "storage")
KEY = re.compile(r"^([a-z_]+)\.[a-z_][a-z0-9_.]*[a-z0-9_]$")


def _trees():
    root = Path(__file__).parents[2]
    for package in SOURCES:
        for path in sorted((root / package).glob("**/*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"))


LOGGER_NAMES = {"discord.http", "discord.gateway", "discord.client"}
"""Library logger names that look like keys of the ``discord`` table but are not messages."""


def test_every_literal_that_looks_like_a_key_exists():
    """Keys handed around as plain strings (``finish_failed(job, "held", "failure.busy")``)."""
    english = catalog("en")
    tables = {key.split(".")[0] for key in english}
    seen, missing = set(), set()
    for path, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = KEY.match(node.value)
                if match and match.group(1) in tables and node.value not in LOGGER_NAMES:
                    seen.add(node.value)
                    if node.value not in english:
                        missing.add(f"{path.name}: {node.value}")
    assert {"failure.busy", "quote.not_yours", "retention.input_gone"} <= seen
    assert not missing


def _discord_labels() -> set[str]:
    """``label("choice_5")`` in the Discord adapter means the key ``discord.choice_5``."""
    labels = set()
    for _path, tree in _trees():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "label"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                labels.add(node.args[0].value)
    return labels


def runtime_keys() -> dict[str, set[str]]:
    """Every key the code builds from a value, by the prefix it builds it with.

    The values come from the code's own types: a job's states, the ledger's
    entry kinds, the states whose transition releases a hold
    (``storage/jobs.py``), the Discord adapter's labels.
    """
    released = {"failed", "cancelled"}
    assert released <= set(get_args(JobState))
    return {
        "state": {f"state.{value}" for value in get_args(JobState)},
        "kind": {f"kind.{value}" for value in get_args(EntryKind)},
        "reason": {f"reason.{value}" for value in released},
        "discord": {f"discord.{value}" for value in _discord_labels()},
    }


def test_every_key_built_at_run_time_exists():
    """``text(f"state.{job.state}")`` escapes a literal scan: each possible value is checked."""
    built = set()
    for _, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr) and len(node.values) >= 2:
                head, value = node.values[0], node.values[1]
                if (
                    isinstance(head, ast.Constant)
                    and isinstance(value, ast.FormattedValue)
                    and re.fullmatch(r"[a-z_]+\.", str(head.value))
                ):
                    built.add(str(head.value)[:-1])
    known = runtime_keys()
    assert built >= {"state", "kind", "reason", "discord"}
    # A new f-string key needs its values listed in runtime_keys() first.
    assert built <= set(known), sorted(built - set(known))
    assert len(known["discord"]) > 10
    for locale in LOCALES:
        messages = catalog(locale)
        missing = {key for keys in known.values() for key in keys if key not in messages}
        assert not missing, (locale, sorted(missing))


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
        money=Money(35, Decimal("3.50")),
        wait=Wait(200),
        input="-",
    )
    assert en(line) == "• X · 720p · 35 credits (¥3.50) · ~3 min · -"
    assert zh(line) == "• X · 720p · 35 灵感值（¥3.50） · 约 3 分钟 · -"
    assert en(text("balance.own", money=Money(1, Decimal("0.10")))) == "Your balance: 1 credit (¥0.10)."
    assert en(text("wait.seconds", count=1)) == "~1 s"
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
