"""The TELEGRAM_* settings: parsed from the environment, checked at start, secrets kept secret."""

import pytest

from bot.settings import ConfigError, load_settings


def test_nothing_set_means_no_telegram():
    settings = load_settings({})
    assert settings.telegram_token is None and settings.telegram_base_url is None
    assert settings.telegram_admin_chats == () and settings.telegram_webhook_url is None


def test_admin_chats_webhook_and_secrets(monkeypatch):
    monkeypatch.setenv("TELEGRAM_TOKEN", "123456:SECRET-token")
    monkeypatch.setenv("TELEGRAM_ADMIN_CHATS", "-1001, -1002 ,")
    monkeypatch.setenv("TELEGRAM_WEBHOOK_URL", "https://bot.example.com/hook")
    monkeypatch.setenv("TELEGRAM_WEBHOOK_LISTEN", "[::]:8443")
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "SECRET-webhook_1")
    monkeypatch.setenv("TELEGRAM_BASE_URL", "http://127.0.0.1:8081/bot")
    monkeypatch.setenv("TELEGRAM_LOCAL_MODE", "true")
    settings = load_settings()
    assert settings.telegram_admin_chats == (-1001, -1002)
    assert settings.telegram_webhook_listen == "[::]:8443"
    assert settings.telegram_local_mode is True
    assert settings.telegram_webhook_secret.get_secret_value() == "SECRET-webhook_1"
    assert "SECRET" not in repr(settings) and "SECRET" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("TELEGRAM_ADMIN_CHATS", "-100x", "TELEGRAM_ADMIN_CHATS"),
        ("TELEGRAM_WEBHOOK_LISTEN", "8080", "TELEGRAM_WEBHOOK_LISTEN"),
        ("TELEGRAM_WEBHOOK_SECRET", "has spaces", "TELEGRAM_WEBHOOK_SECRET"),
        ("TELEGRAM_BASE_URL", "127.0.0.1:8081/bot", "TELEGRAM_BASE_URL"),
    ],
)
def test_bad_values_name_the_field(monkeypatch, name, value, field):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=field):
        load_settings()
