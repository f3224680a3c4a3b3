"""docs/CONFIGURATION.md is what the settings model says, and every setting says what it means."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic.fields import FieldInfo

from app.config_docs import UndocumentedSetting, render
from bot.settings import Settings

DOCUMENT = Path(__file__).parents[2] / "docs" / "CONFIGURATION.md"


def test_the_document_matches_the_settings_model():
    assert DOCUMENT.read_text(encoding="utf-8") == render(), (
        "docs/CONFIGURATION.md is stale: run `klingbot config docs --write`"
    )


def test_every_setting_is_in_the_document_once():
    document = DOCUMENT.read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert document.count(f"| `{name}` |") == 1 or name == "config", name
    assert "| `KLINGBOT_METRICS_LISTEN` | `metrics_listen` | none |" in document
    assert "| `TELEGRAM_TOKEN` | `telegram_token` | none |" in document


def test_a_setting_without_a_docstring_fails_the_build(monkeypatch):
    monkeypatch.setitem(Settings.model_fields, "undocumented", FieldInfo(annotation=int, default=1))
    with pytest.raises(UndocumentedSetting, match=r"Settings\.undocumented has no docstring"):
        render()
