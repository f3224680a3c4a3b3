"""KLINGBOT_DATABASE_URL: PostgreSQL only, blank is unset, never shown or logged with its password."""

from __future__ import annotations

import io
import logging

import pytest

from adapters.redaction import redact
from app.logs import secrets_of, setup_logging
from bot.settings import ConfigError, load_settings, mask_database_url

PASSWORD = "Pg-s3cret!pw"
URL = "postgresql://klingbot:Pg-s3cret%21pw@db.example:5432/klingbot"


def test_unset_or_blank_is_sqlite_and_a_url_is_postgresql(monkeypatch):
    assert not load_settings({}).postgres
    monkeypatch.setenv("KLINGBOT_DATABASE_URL", "  ")
    assert not load_settings().postgres
    for scheme in ("postgresql", "postgres"):
        monkeypatch.setenv("KLINGBOT_DATABASE_URL", f"{scheme}://klingbot@db/klingbot")
        settings = load_settings()
        assert settings.postgres
        assert settings.database_shown == f"{scheme}://klingbot@db/klingbot"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("sqlite:///klingbot.db", "must start with postgresql:// or postgres:// (not sqlite://)"),
        ("mysql://root:Pg-s3cret!pw@db/k", "must start with postgresql:// or postgres:// (not mysql"),
        ("klingbot.db", "must start with postgresql:// or postgres://, e.g. postgresql://"),
        ("postgresql://", "names no server"),
    ],
)
def test_another_scheme_is_refused_naming_the_field_but_not_the_value(monkeypatch, url, said):
    monkeypatch.setenv("KLINGBOT_DATABASE_URL", url)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "database_url: Value error, " + said in str(refused.value)
    assert PASSWORD not in str(refused.value)


def test_the_password_is_masked_wherever_the_url_is_shown(monkeypatch):
    assert mask_database_url(URL) == "postgresql://klingbot:***@db.example:5432/klingbot"
    assert mask_database_url("postgres://k@h/db?password=x1&sslmode=require") == (
        "postgres://k@h/db?password=***&sslmode=require"
    )
    assert mask_database_url("postgresql:///klingbot") == "postgresql:///klingbot"
    monkeypatch.setenv("KLINGBOT_DATABASE_URL", URL)
    settings = load_settings()
    assert PASSWORD not in repr(settings) and "s3cret" not in str(settings)
    assert settings.database_shown == "postgresql://klingbot:***@db.example:5432/klingbot"


def test_no_log_line_holds_the_password_as_written_or_decoded(monkeypatch):
    monkeypatch.setenv("KLINGBOT_DATABASE_URL", URL)
    settings = load_settings()
    assert {PASSWORD, "Pg-s3cret%21pw"} <= set(secrets_of(settings))
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    ours = setup_logging(settings, stream=stream)
    try:
        log = logging.getLogger("asyncpg.test")
        log.error("could not connect to %s", URL)
        log.error("authentication failed, password %r", PASSWORD)
        log.warning("another URL: http://user:hunter22@proxy:3128/")  # any URL's password
    finally:
        root.removeHandler(ours)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    text = stream.getvalue()
    assert "s3cret" not in text and "hunter22" not in text
    assert "postgresql://klingbot:<token>@db.example:5432/klingbot" in text
    assert redact("dsn=postgres://u:pw@h/d?password=abc") == (
        "dsn=postgres://u:<token>@h/d?password=<token>"
    )
