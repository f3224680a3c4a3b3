"""Settings from the environment and the TOML file; bad config fails naming the field."""

import pytest

from bot.commands import UserRef
from bot.packs import Pack
from bot.settings import ConfigError, load_settings


def write(tmp_path, text):
    path = tmp_path / "klingbot.toml"
    path.write_text(text, encoding="utf-8")
    return {"KLINGBOT_CONFIG": str(path)}


def test_defaults(tmp_path):
    settings = load_settings({})
    assert settings.max_topup == 100_000
    assert settings.welcome_credits == 0
    assert settings.credits_per_yuan == 10
    assert settings.data_dir == settings.db.parent / "klingbot-data"


def test_operator_overrides_prices_models_waits_and_rate(tmp_path, monkeypatch):
    env = write(
        tmp_path,
        """
credits_per_yuan = 20
max_topup = 500

[tiers.master]
credits_per_5s = 120
model = "kling-v2-1-master-2"
expected_wait_s = 240
""",
    )
    monkeypatch.setenv("KLINGBOT_CONFIG", env["KLINGBOT_CONFIG"])
    catalog = load_settings().catalog()
    master = catalog.tier("master")
    assert (master.price(5), master.price(10), master.model, master.expected_wait_s) == (
        120,
        240,
        "kling-v2-1-master-2",
        240,
    )
    assert master.name_zh == "大师"  # untouched fields keep their defaults
    assert catalog.tier("standard").price(5) == 20
    assert catalog.yuan(35) == "¥1.75"


def test_environment_beats_the_file(tmp_path, monkeypatch):
    env = write(tmp_path, "max_topup = 500\n")
    monkeypatch.setenv("KLINGBOT_CONFIG", env["KLINGBOT_CONFIG"])
    monkeypatch.setenv("KLINGBOT_MAX_TOPUP", "700")
    assert load_settings().max_topup == 700


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ("[tiers.master]\ncredits_per_5s = 0\n", "tiers.master.credits_per_5s"),
        ("[tiers.master]\ncredits_per_5s = 12.5\n", "tiers.master.credits_per_5s"),
        ("[tiers.standard]\nresolution = 'big'\n", "tiers.standard.resolution"),
        ("[tiers.standard]\ncolour = 'red'\n", "tiers.standard.colour"),
        ("credits_per_yuan = -1\n", "credits_per_yuan"),
        ("max_topup = 0\n", "max_topup"),
        ("welcome_credits = -5\n", "welcome_credits"),
        ("moderators = ['bob']\n", "moderators"),
        ("no_such_setting = 1\n", "no_such_setting"),
        ("[tiers.turbo]\nname_en = 'Turbo'\n", "tiers.turbo"),
        ("telegram_stars_packs = '100'\n", "telegram_stars_packs"),
        ("telegram_stars_packs = '100:0'\n", "telegram_stars_packs"),
        ("telegram_stars_packs = '100:10001'\n", "telegram_stars_packs"),
        ("telegram_stars_packs = '0:5'\n", "telegram_stars_packs"),
        ("telegram_stars_packs = '100:5,100:6'\n", "telegram_stars_packs"),
        ("telegram_stars_packs = '-100:5'\n", "telegram_stars_packs"),
    ],
)
def test_bad_config_names_the_field(tmp_path, monkeypatch, toml, field):
    env = write(tmp_path, toml)
    monkeypatch.setenv("KLINGBOT_CONFIG", env["KLINGBOT_CONFIG"])
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert field in str(error.value)
    assert "klingbot.toml" in str(error.value)


def test_unreadable_or_broken_config_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({"KLINGBOT_CONFIG": str(tmp_path / "missing.toml")})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "max_topup = = 3"))


def test_stars_packs_from_the_environment_or_the_file(tmp_path, monkeypatch):
    assert load_settings({}).telegram_stars_packs == ()  # unset: no sales
    monkeypatch.setenv("TELEGRAM_STARS_PACKS", " 100:50, 500 : 230 ,")
    assert load_settings().telegram_stars_packs == (Pack(100, 50), Pack(500, 230))
    monkeypatch.delenv("TELEGRAM_STARS_PACKS")
    env = write(tmp_path, "telegram_stars_packs = ['1000:400']\n")
    monkeypatch.setenv("KLINGBOT_CONFIG", env["KLINGBOT_CONFIG"])
    assert load_settings().telegram_stars_packs == (Pack(1000, 400),)


def test_moderators_from_the_environment(monkeypatch):
    monkeypatch.setenv("KLINGBOT_MODERATORS", "telegram:123, discord:456,,")
    assert load_settings().moderators == (UserRef("telegram", "123"), UserRef("discord", "456"))
    monkeypatch.setenv("KLINGBOT_MODERATORS", "telegram:123,myspace:9")
    with pytest.raises(ConfigError, match="moderators"):
        load_settings()


def test_clip_links_and_delivery_retries_from_the_environment(monkeypatch):
    settings = load_settings()
    assert (settings.delivery_retry_h, settings.public_url, settings.link_ttl_h) == (24, None, 72)
    monkeypatch.setenv("KLINGBOT_DELIVERY_RETRY_H", "6")
    monkeypatch.setenv("KLINGBOT_PUBLIC_URL", "https://bot.example.com/")
    with pytest.raises(ConfigError, match="KLINGBOT_PUBLIC_URL needs KLINGBOT_METRICS_LISTEN"):
        load_settings()  # nothing would serve the links
    monkeypatch.setenv("KLINGBOT_METRICS_LISTEN", "127.0.0.1:9464")
    settings = load_settings()
    assert (settings.delivery_retry_h, settings.public_url) == (6, "https://bot.example.com")
    monkeypatch.setenv("KLINGBOT_PUBLIC_URL", "bot.example.com")
    with pytest.raises(ConfigError, match="public_url"):
        load_settings()


def test_tokens_never_show_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("TELEGRAM_TOKEN", "123456:SECRET-telegram")
    monkeypatch.setenv("DISCORD_TOKEN", "SECRET-discord")
    settings = load_settings()
    assert settings.telegram_token.get_secret_value() == "123456:SECRET-telegram"
    assert "SECRET" not in repr(settings) and "SECRET" not in str(settings)


def test_discord_sku_credits_from_the_environment_and_the_file(tmp_path, monkeypatch):
    assert load_settings().discord_sku_credits == ()  # unset: no purchases on Discord
    monkeypatch.setenv("DISCORD_SKU_CREDITS", "1234567890123456789:100, 222:500,")
    assert [str(pack) for pack in load_settings().discord_sku_credits] == [
        "1234567890123456789:100",
        "222:500",
    ]
    for wrong, says in [
        ("1234", "expected sku_id:credits"),
        ("abc:100", "expected sku_id:credits"),
        ("12:0", "credits must be 1 to"),
        ("12:100,12:200", "each SKU may be mapped to credits once"),
    ]:
        monkeypatch.setenv("DISCORD_SKU_CREDITS", wrong)
        with pytest.raises(ConfigError, match="DISCORD_SKU_CREDITS") as error:
            load_settings()
        assert says in str(error.value)
    monkeypatch.delenv("DISCORD_SKU_CREDITS")
    env = write(tmp_path, "discord_sku_credits = ['333:50']\n")
    assert [str(pack) for pack in load_settings(env).discord_sku_credits] == ["333:50"]
