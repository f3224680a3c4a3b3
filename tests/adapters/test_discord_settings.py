"""The DISCORD_* settings: parsed from the environment, bad values named at start."""

from __future__ import annotations

import pytest

from bot.settings import ConfigError, load_settings


def test_discord_settings_from_the_environment(monkeypatch):
    for name, value in {
        "DISCORD_TOKEN": "MTIz.abc.def",
        "DISCORD_GUILD_IDS": "111, 222",
        "DISCORD_MODERATOR_ROLE": "Mods",
        "DISCORD_API_BASE": "http://proxy:8080/api/",
        "DISCORD_GATEWAY_URL": "ws://proxy:8081/",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings({})
    assert settings.discord_guild_ids == (111, 222)
    assert settings.discord_moderator_role == "Mods"
    assert settings.discord_api_base == "http://proxy:8080/api"
    assert settings.discord_gateway_url == "ws://proxy:8081/"
    assert "MTIz.abc.def" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DISCORD_GUILD_IDS", "111,general"),
        ("DISCORD_API_BASE", "proxy:8080"),
        ("DISCORD_GATEWAY_URL", "http://proxy"),
    ],
)
def test_bad_discord_settings_name_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings({})
