"""One typed settings object, loaded once at start from the environment and a TOML file.

Precedence: environment variables (``KLINGBOT_*``, ``TELEGRAM_*``,
``DISCORD_*``) over the TOML file named by ``KLINGBOT_CONFIG`` over the
defaults below. A bad value stops the bot at start with a message that names
the field; nothing is read at import time.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from bot.catalog import DEFAULT_TIERS, Catalog, Tier
from bot.commands import UserRef
from bot.packs import Pack, parse_packs
from bot.skus import SkuPack, parse_sku_credits

MAX_CREDITS = 10**12
"""No single amount or balance may exceed this (far below SQLite's int64 range)."""


KLING_TIMEOUTS_S: dict[str, float] = {"standard": 1200, "high_quality": 1800, "master": 3600}
"""Default total timeouts of Kling tasks per tier (Master's queue can take well over 30 min)."""


class ConfigError(Exception):
    """The configuration cannot be used; the message names the bad field."""


class TierSettings(BaseModel):
    """One tier as written in the config file (``[tiers.<key>]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name_en: str = Field(min_length=1, max_length=40)
    name_zh: str = Field(min_length=1, max_length=40)
    model: str = Field(min_length=1)
    mode: str | None = None
    resolution: int = Field(ge=360, le=2160)
    credits_per_5s: int = Field(gt=0, le=MAX_CREDITS)
    requires_image: bool
    expected_wait_s: int = Field(gt=0, le=24 * 3600)


def _merge_tiers(value: Any) -> Any:
    """Overlay the operator's partial tier tables on the default tier table."""
    if not isinstance(value, Mapping):
        return value
    merged: dict[str, Any] = {key: dict(fields) for key, fields in DEFAULT_TIERS.items()}
    for key, fields in value.items():
        if isinstance(fields, Mapping) and key in merged:
            merged[key].update(fields)
        else:
            merged[key] = fields
    return merged


class Settings(BaseSettings):
    """Everything an operator can set."""

    model_config = SettingsConfigDict(
        env_prefix="KLINGBOT_",
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        # A field's docstring is its meaning in docs/CONFIGURATION.md (``klingbot config docs``).
        use_attribute_docstrings=True,
    )

    db: Path = Path("klingbot.db")
    """The SQLite database (wallets, ledger, jobs); it and its folder are created if missing."""
    data_dir: Path | None = None
    """Clips and members' images, created if missing; unset: ``klingbot-data/`` beside the db."""
    config: Path | None = None
    """The TOML file the other settings are read from (only as an environment variable)."""
    db_busy_timeout_ms: int = Field(default=5000, ge=0, le=600_000)
    """How long to wait for another process's database lock, in milliseconds."""
    database_url: SecretStr | None = None
    """``postgresql://user:password@host:5432/db``: keep everything in PostgreSQL, not KLINGBOT_DB.

    For several replicas on one database (docs/SCALING.md). Unset: the SQLite
    file ``KLINGBOT_DB``. A secret: shown only with its password masked.
    ``klingbot db copy --to URL`` moves an existing SQLite database there.
    """
    database_pool: int = Field(default=10, ge=2, le=500)
    """Connections each replica keeps open to PostgreSQL (``KLINGBOT_DATABASE_URL``) at most.

    Every ledger write and job step borrows one for a single statement, so 10
    serves a community comfortably; about 40 lets one replica reach 1,000
    hold-and-capture pairs a second (docs/PERFORMANCE.md). All replicas
    together must stay under the server's ``max_connections`` (100 by
    default), leaving room for a few more per replica: its roles and its
    replica lease each hold a connection of their own.
    """
    replica_id: str | None = Field(
        default=None, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
    )
    """This replica's name among those sharing one PostgreSQL database; unset: the host name.

    Each running replica needs its own: a second ``klingbot run`` with an id
    that already runs is refused (exit 2); restarted with the same id after
    a crash, a replica starts at once. Letters, digits, ``.``, ``_``, ``-``.
    """
    job_lease_s: float = Field(default=30, ge=0.5, le=3600)
    """Seconds before another replica takes over what a dead one held (PostgreSQL).

    Its jobs, and the roles one replica at a time holds: Telegram polling,
    Discord's gateway (without shard settings), the retention sweep.
    """

    moderators: Annotated[tuple[UserRef, ...], NoDecode] = ()
    """Comma-separated ``platform:id`` entries who may /topup and /refund."""
    max_topup: int = Field(default=100_000, gt=0, le=MAX_CREDITS)
    """The largest single top-up, in credits."""
    welcome_credits: int = Field(default=0, ge=0, le=MAX_CREDITS)
    """Credits granted once to each new wallet."""
    credits_per_yuan: int = Field(default=10, gt=0, le=10_000)
    """The exchange rate shown next to credits."""
    tiers: dict[str, TierSettings] = Field(default_factory=lambda: _merge_tiers({}))
    """The quality tiers (``[tiers.<key>]`` tables): price, model, mode, resolution, wait, names."""

    time_scale: float | None = Field(default=None, gt=0, le=100)
    """Multiplies the local renderer's waits; None: 1.0 with platforms, 0.1 in the console demo."""
    quote_ttl_s: int = Field(default=600, ge=10, le=7 * 24 * 3600)
    """How long a quote's tier buttons work, in seconds."""
    blocked_words: Annotated[tuple[str, ...], NoDecode] = ()
    """Comma-separated words refused in prompts (case and spacing ignored)."""
    max_open_quotes: int = Field(default=5, ge=1, le=1000)
    """Open quotes one member may have; a new quote closes their oldest and removes its image."""
    quotes_per_minute: int = Field(default=5, ge=1, le=1000)
    """Quotes one member may ask for in any minute; past it they are told to slow down."""
    max_jobs_per_user: int = Field(default=2, ge=1, le=100)
    """Jobs one member may have generating at once."""
    max_queue_per_user: int = Field(default=5, ge=0, le=1000)
    """Further jobs one member may have waiting."""
    max_jobs_per_provider: int = Field(default=4, ge=1, le=100_000)
    """Jobs generating at once on the backend."""
    status_interval_s: float = Field(default=3.0, ge=0, le=600)
    """Least time between two edits of a status message, in seconds."""
    poll_interval_s: float = Field(default=2.0, gt=0, le=600)
    """How often a running job is polled, in seconds (times the time scale)."""
    max_local_renders: int = Field(default=1, ge=1, le=64)
    """Clips the local renderer encodes at once (CPU-bound)."""
    input_retention_h: int = Field(default=24, ge=0, le=24 * 366)
    """After a job finished, its input image is kept this long for Reroll and Other tier."""
    clip_retention_days: int = Field(default=7, ge=0, le=3660)
    """Delivered clips are removed this many days after delivery; 0 keeps them."""
    retention_sweep_interval_s: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    """Seconds between two sweeps for images and clips that are due (the first runs at start)."""
    delivery_retry_h: float = Field(default=24, gt=0, le=24 * 30)
    """How long a made clip whose sending fails is tried again before it counts as undeliverable.

    In hours. Meanwhile the job is "made, not yet delivered": its member sees
    a Send again button, and the running bot retries at least every two
    minutes during the first hour, then every ten minutes.
    """
    public_url: str | None = None
    """The bot's public ``https://`` address; set: clips too large for a chat go as signed links.

    The links (``<public_url>/clips/<job>?...``) are served by the bot's HTTP
    server (``KLINGBOT_METRICS_LISTEN``), which this address must reach
    (forward only ``/clips/`` to it); each one expires after
    ``KLINGBOT_LINK_TTL_H`` or when the clip is removed. Unset: no links of
    our own.
    """
    link_ttl_h: int = Field(default=72, ge=1, le=24 * 366)
    """How long a signed clip link works, in hours (less if the clip is removed first)."""

    # --- operations (logs, metrics) -------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Least severe log lines written (``klingbot run``; other commands log warnings and up)."""
    log_format: Literal["text", "json"] = "text"
    """``text``: one readable line per event; ``json``: one JSON object per line, for collectors."""
    metrics_listen: str | None = None
    """``host:port`` serving ``/metrics`` (Prometheus) and ``/healthz``; unset: no endpoint."""

    @field_validator("database_url", mode="before")
    @classmethod
    def _check_database_url(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            if not value.strip():
                return None  # KLINGBOT_DATABASE_URL= left empty: SQLite
            # The message never repeats the value: it holds a password.
            problem = database_url_problem(value.strip())
            if problem is not None:
                raise ValueError(f"{problem}; unset it to keep the SQLite file KLINGBOT_DB")
            return value.strip()
        return value

    @property
    def postgres(self) -> bool:
        """Whether the data lives in PostgreSQL (``KLINGBOT_DATABASE_URL``), not in SQLite."""
        return self.database_url is not None

    @property
    def replica(self) -> str:
        """The id of this replica: ``KLINGBOT_REPLICA_ID``, else the host name."""
        return self.replica_id or socket.gethostname()

    @property
    def database_shown(self) -> str:
        """The database as an operator may see it: the SQLite file, or the URL, password masked."""
        if self.database_url is not None:
            return mask_database_url(self.database_url.get_secret_value())
        return str(self.db.absolute())

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _case_of_choices(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str):
            return value.upper() if info.field_name == "log_level" else value.lower()
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http://), e.g. https://bot.example.com")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _links_need_a_server(self) -> Settings:
        if self.public_url and not self.metrics_listen:
            raise ValueError(
                "KLINGBOT_PUBLIC_URL needs KLINGBOT_METRICS_LISTEN: the bot's HTTP server serves"
                " the clip links"
            )
        return self

    @field_validator("metrics_listen")
    @classmethod
    def _check_metrics_listen(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # an empty KLINGBOT_METRICS_LISTEN= switches the endpoint off
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("must be host:port, e.g. 127.0.0.1:9464 (port 0: any free port)")
        return value

    # --- end of the operations block ------------------------------------------------

    telegram_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TELEGRAM_TOKEN", "telegram_token")
    )
    """Serve Telegram with this bot token from @BotFather; never logged."""
    discord_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DISCORD_TOKEN", "discord_token")
    )
    """Serve Discord with this bot token from the Developer Portal; never logged."""
    discord_guild_ids: Annotated[tuple[int, ...], NoDecode] = Field(
        default=(), validation_alias=AliasChoices("DISCORD_GUILD_IDS", "discord_guild_ids")
    )
    """Your own servers: commands sync there (instant updates), and only there do Administrator,
    Manage Server and ``DISCORD_MODERATOR_ROLE`` make moderators. None: global commands, and
    only the ``discord:<id>`` entries of ``KLINGBOT_MODERATORS`` are moderators."""
    discord_moderator_role: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        validation_alias=AliasChoices("DISCORD_MODERATOR_ROLE", "discord_moderator_role"),
    )
    """A role id (or name) whose holders are moderators in the servers of ``DISCORD_GUILD_IDS``."""
    discord_api_base: str | None = Field(
        default=None, validation_alias=AliasChoices("DISCORD_API_BASE", "discord_api_base")
    )
    """Discord's REST API through a proxy, e.g. ``http://proxy:8080/api`` (``/v10`` is appended)."""
    discord_gateway_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DISCORD_GATEWAY_URL", "discord_gateway_url")
    )
    """Gateway websocket through an operator's proxy, e.g. ``ws://proxy:8081/``."""
    discord_shard_count: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        validation_alias=AliasChoices("DISCORD_SHARD_COUNT", "discord_shard_count"),
    )
    """How many gateway shards the bot's servers are split into, over all replicas.

    Unset: one connection without shards, which Discord allows up to 2,500
    servers. Set: this process connects the shards of ``DISCORD_SHARD_IDS``
    (all of them when that is unset) with discord.py's sharded client; a
    server belongs to shard ``(server id >> 22) % count`` and DMs to shard 0.
    Every replica gives the same count."""
    discord_shard_ids: Annotated[tuple[int, ...], NoDecode] = Field(
        default=(), validation_alias=AliasChoices("DISCORD_SHARD_IDS", "discord_shard_ids")
    )
    """The shards this replica connects, comma-separated (``0,1``), each below
    ``DISCORD_SHARD_COUNT``; unset: all of them. Run each shard in exactly one replica;
    the replica holding shard 0 syncs the commands."""
    discord_sku_credits: Annotated[tuple[SkuPack, ...], NoDecode] = Field(
        default=(),
        validation_alias=AliasChoices("DISCORD_SKU_CREDITS", "discord_sku_credits"),
    )
    """Credit packs members buy in Discord's store with ``/buy``: the app's consumable
    SKUs and the credits each one buys, as ``sku_id:credits`` comma-separated (e.g.
    ``1234567890123456789:100``); unset: no purchases on Discord (``/buy`` says so)."""

    @field_validator("telegram_token", "discord_token", mode="before")
    @classmethod
    def _blank_token_is_unset(cls, value: Any) -> Any:
        # TELEGRAM_TOKEN= left empty in an env file means no token, not an empty one.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("discord_guild_ids", mode="before")
    @classmethod
    def _parse_guild_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("discord_sku_credits", mode="before")
    @classmethod
    def _parse_sku_credits(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            return parse_sku_credits(value, max_credits=MAX_CREDITS)
        return value

    @field_validator("discord_shard_ids", mode="before")
    @classmethod
    def _parse_shard_ids(cls, value: Any) -> Any:
        if isinstance(value, int):
            return (value,)
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @model_validator(mode="after")
    def _check_shards(self) -> Settings:
        ids, count = self.discord_shard_ids, self.discord_shard_count
        if not ids:
            return self
        if count is None:
            raise ValueError(
                "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT: the shard ids are counted out of"
                " the total number of shards every replica shares"
            )
        wrong = [str(i) for i in ids if not 0 <= i < count]
        if wrong:
            raise ValueError(
                f"DISCORD_SHARD_IDS {','.join(wrong)} not below DISCORD_SHARD_COUNT={count}:"
                f" shard ids run from 0 to {count - 1}"
            )
        if len(set(ids)) != len(ids):
            raise ValueError("DISCORD_SHARD_IDS names a shard twice")
        return self

    @property
    def discord_shards(self) -> tuple[int, ...] | None:
        """The shard ids this process connects; None: no sharding (one plain connection)."""
        if self.discord_shard_count is None:
            return None
        return tuple(sorted(self.discord_shard_ids)) or tuple(range(self.discord_shard_count))

    @field_validator("discord_api_base")
    @classmethod
    def _check_api_base(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value is not None else None

    @field_validator("discord_gateway_url")
    @classmethod
    def _check_gateway(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return value

    telegram_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("TELEGRAM_BASE_URL", "telegram_base_url")
    )
    """A self-hosted Bot API server, e.g. ``http://127.0.0.1:8081/bot`` (the token is appended)."""
    telegram_base_file_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TELEGRAM_BASE_FILE_URL", "telegram_base_file_url"),
    )
    """Where that server serves files, e.g. ``http://127.0.0.1:8081/file/bot``."""
    telegram_local_mode: bool = Field(
        default=False,
        validation_alias=AliasChoices("TELEGRAM_LOCAL_MODE", "telegram_local_mode"),
    )
    """The self-hosted server runs with ``--local`` on this machine: files move by path."""
    telegram_webhook_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TELEGRAM_WEBHOOK_URL", "telegram_webhook_url"),
    )
    """Public HTTPS URL Telegram posts updates to; unset means long polling."""
    telegram_webhook_listen: str = Field(
        default="0.0.0.0:8080",
        validation_alias=AliasChoices("TELEGRAM_WEBHOOK_LISTEN", "telegram_webhook_listen"),
    )
    """``host:port`` the webhook server listens on (behind the load balancer)."""
    telegram_webhook_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("TELEGRAM_WEBHOOK_SECRET", "telegram_webhook_secret"),
    )
    """Checked on every webhook post; derived from the token when unset."""
    telegram_admin_chats: Annotated[tuple[int, ...], NoDecode] = Field(
        default=(),
        validation_alias=AliasChoices("TELEGRAM_ADMIN_CHATS", "telegram_admin_chats"),
    )
    """Group chats whose administrators are moderators wherever they talk to the bot
    (comma-separated chat ids); the admins of any other group never are."""
    telegram_stars_packs: Annotated[tuple[Pack, ...], NoDecode] = Field(
        default=(),
        validation_alias=AliasChoices("TELEGRAM_STARS_PACKS", "telegram_stars_packs"),
    )
    """Credit packs members buy with Telegram Stars in ``/buy``, as ``credits:stars``
    comma-separated (e.g. ``100:50,500:230``); unset: no purchases (``/buy`` says so)."""

    # --- the video provider (docs/PROVIDERS.md) ---------------------------------------
    provider: Literal["local", "kling"] = "local"
    """``KLINGBOT_PROVIDER``: ``local`` (the embedded renderer) or ``kling`` (the Kling API)."""
    kling_access_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("KLING_ACCESS_KEY", "kling_access_key")
    )
    """The Kling API access key (required with ``kling``); never logged."""
    kling_secret_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("KLING_SECRET_KEY", "kling_secret_key")
    )
    """The Kling API secret key (required with ``kling``); never logged."""
    kling_base_url: str = Field(
        default="https://api-singapore.klingai.com",
        validation_alias=AliasChoices("KLING_BASE_URL", "kling_base_url"),
    )
    """The Kling API for global accounts; mainland China accounts use https://api-beijing.klingai.com."""
    kling_callback_url: str | None = Field(
        default=None, validation_alias=AliasChoices("KLING_CALLBACK_URL", "kling_callback_url")
    )
    """Public URL Kling posts task changes to; each post only triggers a poll of that task."""
    kling_callback_listen: str = Field(
        default="127.0.0.1:8090",
        validation_alias=AliasChoices("KLING_CALLBACK_LISTEN", "kling_callback_listen"),
    )
    """``host:port`` the callback server listens on when ``kling_callback_url`` is set.

    This machine only by default: put the HTTPS proxy that serves the callback URL in
    front of it (or listen on ``0.0.0.0:8090`` when the proxy runs elsewhere). The Docker
    image listens on ``0.0.0.0:8090``; compose publishes it where
    ``KLINGBOT_CALLBACK_PUBLISH`` says."""
    kling_timeouts_s: dict[str, float] = Field(
        default_factory=lambda: dict(KLING_TIMEOUTS_S),
        validation_alias=AliasChoices("KLING_TIMEOUTS_S", "kling_timeouts_s"),
    )
    """Per tier: how long a Kling task may take before the job fails and is refunded."""
    kling_poll_cap_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        validation_alias=AliasChoices("KLING_POLL_CAP_S", "kling_poll_cap_s"),
    )
    """Polls of a Kling task back off from ``poll_interval_s`` up to this (times the time scale)."""
    kling_aspect_ratio: Literal["16:9", "9:16", "1:1"] = Field(
        default="16:9",
        validation_alias=AliasChoices("KLING_ASPECT_RATIO", "kling_aspect_ratio"),
    )
    """The frame of text-only (text2video) clips."""
    kling_max_download_mb: int = Field(
        default=300,
        ge=1,
        le=4000,
        validation_alias=AliasChoices("KLING_MAX_DOWNLOAD_MB", "kling_max_download_mb"),
    )
    """A result larger than this is not downloaded (the job fails and is refunded)."""

    @field_validator("kling_base_url", "kling_callback_url")
    @classmethod
    def _check_kling_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value is not None and value.endswith("/") else value

    @field_validator("kling_callback_listen")
    @classmethod
    def _check_kling_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("must be host:port, e.g. 0.0.0.0:8090")
        return value

    @field_validator("kling_timeouts_s", mode="before")
    @classmethod
    def _overlay_kling_timeouts(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {**KLING_TIMEOUTS_S, **value}
        return value

    @field_validator("kling_timeouts_s")
    @classmethod
    def _check_kling_timeouts(cls, value: dict[str, float]) -> dict[str, float]:
        for tier, seconds in value.items():
            if not 0 < seconds <= 24 * 3600:
                raise ValueError(f"{tier}: must be between 0 and 86400 seconds")
        return value

    def require_kling_keys(self) -> tuple[SecretStr, SecretStr]:
        """Both Kling keys, or ConfigError naming the one that is missing."""
        for name, value in (
            ("KLING_ACCESS_KEY", self.kling_access_key),
            ("KLING_SECRET_KEY", self.kling_secret_key),
        ):
            if value is None or not value.get_secret_value().strip():
                raise ConfigError(f"{name} is not set (KLINGBOT_PROVIDER=kling needs it)")
        assert self.kling_access_key is not None and self.kling_secret_key is not None
        return self.kling_access_key, self.kling_secret_key

    # --- end of the video provider block --------------------------------------------

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, **_):
        """Environment first, then the values given to the constructor (the TOML file)."""
        return (env_settings, init_settings)

    @field_validator("moderators", mode="before")
    @classmethod
    def _parse_moderators(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [item for item in value.split(",") if item.strip()]
        if isinstance(value, list | tuple):
            return tuple(UserRef.parse(item) if isinstance(item, str) else item for item in value)
        return value

    @field_validator("blocked_words", mode="before")
    @classmethod
    def _parse_blocked_words(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return tuple(word.strip() for word in value if isinstance(word, str) and word.strip())
        return value

    @field_validator("telegram_admin_chats", mode="before")
    @classmethod
    def _parse_chat_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("telegram_stars_packs", mode="before")
    @classmethod
    def _parse_packs(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            return parse_packs(value, max_credits=MAX_CREDITS)
        return value

    @field_validator("telegram_base_url", "telegram_base_file_url", "telegram_webhook_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("telegram_webhook_listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("must be host:port, e.g. 0.0.0.0:8080 (port 0: any free port)")
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram accepts 1 to 256 characters A-Z, a-z, 0-9, _ and -.
        secret = value.get_secret_value() if value is not None else None
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ValueError("must be 1 to 256 characters from A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("tiers", mode="before")
    @classmethod
    def _overlay_default_tiers(cls, value: Any) -> Any:
        return _merge_tiers(value)

    @model_validator(mode="after")
    def _fill_data_dir(self) -> Settings:
        if not self.tiers:
            raise ValueError("at least one tier is needed")
        if self.data_dir is None:
            object.__setattr__(self, "data_dir", self.db.parent / "klingbot-data")
        return self

    @property
    def clips_dir(self) -> Path:
        """Where finished clips are kept."""
        assert self.data_dir is not None
        return self.data_dir / "clips"

    @property
    def inputs_dir(self) -> Path:
        """Where members' input images are kept while their quotes and jobs need them."""
        assert self.data_dir is not None
        return self.data_dir / "inputs"

    def catalog(self) -> Catalog:
        """The tier catalog these settings describe, cheapest tier first."""
        tiers = [Tier(key=key, **fields.model_dump()) for key, fields in self.tiers.items()]
        tiers.sort(key=lambda tier: (tier.credits_per_5s, tier.key))
        return Catalog(tiers=tuple(tiers), credits_per_yuan=self.credits_per_yuan)


POSTGRES_SCHEMES = ("postgresql://", "postgres://")
"""What ``KLINGBOT_DATABASE_URL`` may start with (libpq's two spellings)."""


def database_url_problem(url: str) -> str | None:
    """Why ``url`` is no PostgreSQL URL, without repeating it (it holds a password); None: it is."""
    if not url.startswith(POSTGRES_SCHEMES):
        scheme = url.partition("://")[0][:20] if "://" in url else ""
        named = f" (not {scheme}://)" if scheme and scheme.isascii() and scheme.isalnum() else ""
        return (
            "must start with postgresql:// or postgres://"
            f"{named}, e.g. postgresql://klingbot:PASSWORD@127.0.0.1:5432/klingbot"
        )
    if not url.partition("://")[2].strip("/"):
        return "names no server: postgresql://user:password@host:5432/database"
    return None


def mask_database_url(url: str) -> str:
    """``postgresql://klingbot:***@db:5432/klingbot``: the URL with its password hidden.

    Also hides a ``password=`` query parameter; a URL without a password is
    shown as it is.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***"
    location, slash, path = rest.partition("/")
    userinfo, at, host = location.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        location = f"{user}:***@{host}" if colon else f"{user}@{host}"
    path = re.sub(r"((?:^|[?&])password=)[^&]*", r"\1***", path, flags=re.IGNORECASE)
    return f"{scheme}://{location}{slash}{path}"


def database_url_secrets(url: str) -> tuple[str, ...]:
    """The password of a database URL, as written and percent-decoded (for log redaction)."""
    from urllib.parse import unquote

    rest = url.partition("://")[2]
    location, _, path = rest.partition("/")
    userinfo = location.rpartition("@")[0]
    found = [userinfo.partition(":")[2]] if ":" in userinfo else []
    found += re.findall(r"(?:^|[?&])password=([^&]*)", path, flags=re.IGNORECASE)
    values = {value for value in found if value} | {unquote(value) for value in found if value}
    return tuple(sorted(values, key=len, reverse=True))


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings once; raise ConfigError naming the bad field or file.

    ``environ`` defaults to ``os.environ``; only ``KLINGBOT_CONFIG`` is read
    from it here, the rest is pydantic-settings' job.
    """
    environ = os.environ if environ is None else environ
    file_values: dict[str, Any] = {}
    config_path = environ.get("KLINGBOT_CONFIG")
    if config_path:
        file_values = _read_toml(Path(config_path))
    try:
        return Settings(**file_values)
    except ValidationError as error:
        source = f"config file {config_path}" if config_path else "settings"
        raise ConfigError(f"invalid {source}:\n{_describe(error)}") from None
    except SettingsError as error:  # a variable that must hold JSON does not
        raise ConfigError(_describe_unparsable(error)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None


JSON_EXAMPLES = {
    "tiers": ('{"standard": {"credits_per_5s": 25}}', "[tiers.standard] tables"),
    "kling_timeouts_s": ('{"standard": 600}', "a [kling_timeouts_s] table"),
}
"""For each setting an environment variable gives as JSON: an example, and its TOML form."""


def _describe_unparsable(error: SettingsError) -> str:
    """One line naming the variable that is not JSON, and what it takes."""
    found = re.search(r'field "(\w+)"', str(error))
    name = found.group(1) if found else ""
    field = Settings.model_fields.get(name)
    alias = field.validation_alias if field is not None else None
    variable = (
        str(alias.choices[0])
        if isinstance(alias, AliasChoices)
        else f"KLINGBOT_{name.upper()}"
        if name
        else "a setting"
    )
    cause = f" ({error.__cause__})" if error.__cause__ is not None else ""
    example, toml = JSON_EXAMPLES.get(name, ("{...}", f"the key {name}"))
    return (
        f"invalid settings: {variable} is not valid JSON{cause}; it takes a JSON object,"
        f" such as {variable}='{example}' (or {toml} in the KLINGBOT_CONFIG file)"
    )


def _describe(error: ValidationError) -> str:
    """One line per bad field: ``tiers.master.credits_per_5s: Input should be greater than 0``."""
    lines = []
    for problem in error.errors(include_url=False):
        field = ".".join(str(part) for part in problem["loc"])
        if not field:  # a rule over several settings: its message names them
            lines.append(f"  {problem['msg'].removeprefix('Value error, ')}")
            continue
        lines.append(f"  {field}: {problem['msg']}")
    return "\n".join(lines)
