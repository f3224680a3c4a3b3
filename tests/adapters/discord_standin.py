"""A Discord API v10 stand-in on loopback, for driving the real discord.py client.

One aiohttp server on 127.0.0.1 (a free port) plays Discord for one bot
application: the REST API under ``/api/v10``, the gateway websocket, and a
CDN path for attachments. Tests configure guilds, channels, threads, roles,
members and DM users, push interactions (``Member.slash``, ``Member.press``),
and read what the bot did: every REST call (``calls``), every message
(``messages``) with its content, buttons, files and edits, and every
interaction (``interactions``) with its acknowledgement, original response and
follow-ups. Nothing sleeps: ``wait_for`` / ``wait_until`` wait on a condition
that every change notifies.

How a discord.py client reaches it
----------------------------------
The stand-in gives the two values the production client is configured with::

    DISCORD_API_BASE    = standin.api_base      # http://127.0.0.1:PORT/api
    DISCORD_GATEWAY_URL = standin.gateway_url   # ws://127.0.0.1:PORT/

Like Discord's own ``https://discord.com/api``, ``api_base`` carries no
version: the client appends ``/v10``. discord.py 2.7 has no per-client option
for either address (``proxy=`` tunnels HTTPS through a proxy, it does not
replace the host), so the adapter has to set two class attributes before the
client logs in, from its settings and only when they are set:

* ``discord.http.Route.BASE = f"{DISCORD_API_BASE}/v10"``: every REST call,
  including interaction callbacks and webhook follow-ups (they build the same
  ``Route``), and ``GET /gateway/bot``.
* ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(DISCORD_GATEWAY_URL)``:
  a plain ``discord.Client`` never asks ``GET /gateway/bot``; it opens
  ``DEFAULT_GATEWAY`` (adding ``?v=10&encoding=json&compress=zlib-stream``)
  and comes back to it after an invalidated session. An
  ``AutoShardedClient`` asks ``GET /gateway/bot``, which answers
  ``gateway_url`` too.

Both are process-wide; restore them when the client closes.
``discord_py_pointed_at(api_base, gateway_url)`` below does exactly this for
the stand-in's own tests (a bare discord.py client); it is test code, not
something for production paths. A RESUME goes to READY's
``resume_gateway_url``, which the stand-in points back at itself
(``ws://127.0.0.1:PORT/resume``): a real proxy would have to rewrite it.

Attachment URLs (``http://127.0.0.1:PORT/attachments/...``) are absolute, as
Discord's CDN URLs are, so ``Attachment.read()`` needs nothing set.

Other facts worth knowing when testing against it:

* discord.py fires ``on_ready`` only ``guild_ready_timeout`` (default 2 s)
  after the last GUILD_CREATE; pass ``guild_ready_timeout=0.05`` to the
  client in tests, or wait on ``standin.wait_until(lambda: standin.ready)``.
* The deadline (3 s to acknowledge) and token lifetime (15 min) run on the
  stand-in's clock: ``time.monotonic`` unless ``now=`` is given, plus
  whatever ``advance(seconds)`` added. discord.py's own
  ``Interaction.is_expired()`` reads the wall clock and the id's timestamp,
  so it does not see ``advance``: an adapter should keep its own injectable
  clock, or react to 50027.
* A 429 is retried by discord.py only when it carries a ``Via`` header
  (otherwise it takes it for a Cloudflare ban); ``fail_next`` sends one, and
  the ``X-RateLimit-*`` headers. discord.py really sleeps ``retry_after``
  and retries 5xx after 1 s, so inject small values.
* Interaction callbacks and webhook routes take no bot token (Discord
  authenticates them by the interaction token); every other REST route
  checks ``Authorization: Bot <token>``.

Test-facing API, in brief
-------------------------
* ``DiscordStandIn(token, *, now=None, ack_deadline_s=3, token_lifetime_s=900,
  privileged_intents=0)``: ``async with``; ``api_base``, ``gateway_url``;
  ``now()``, ``advance(seconds)``.
* World: ``add_guild(name, *, premium_tier, locale, bot_permissions, channels, shard)``
  → ``Guild``; ``guild.add_channel(name, *, postable, upload_limit)``,
  ``guild.add_thread(parent, name)``, ``guild.add_role(name, permissions)``,
  ``guild.add_member(name, *, roles, owner, locale, user_id)`` → ``Member``
  (one ``Member`` per guild: the same ``user_id`` in a second guild is the
  same Discord user there); ``add_user(name, *, user_id)`` for DMs
  (``member.dm_channel``;
  ``member.accepts_dms = False`` closes it to the bot);
  ``channel.set_bot_access(post=, view=)``; ``attachment(data, filename, *,
  content_type, size)`` → ``StoredFile`` on the CDN. Added while the bot is
  connected, roles, channels and threads are announced over the gateway.
* Members act: ``member.slash(name, options, *, channel, locale, attachments,
  attachment_size_limit)`` and ``member.press(message, label_or_custom_id)``
  push INTERACTION_CREATE and return the ``Interaction`` record
  (``ack_type``, ``original``, ``followups``, ``edits``, ``payload``).
  Interactions pushed while no bot is connected are never delivered (the
  member would see "the application did not respond"); those pushed while it
  is reconnecting are replayed on RESUME.
* Reading: ``calls`` (``ApiCall``: ``route`` such as
  ``"POST /channels/{channel_id}/messages"``, ``json``, ``files``,
  ``status``, ``code``), ``of(route)``, ``messages`` / ``messages_in(channel)``
  (``Message``: ``content``, ``components``, ``labels()``, ``attachments``
  with bytes, ``flags``, ``ephemeral``, ``via``, ``edited_by``, ``deleted``),
  ``interactions``, ``downloads``, ``command_syncs``, ``commands``,
  ``command_creations``, ``sessions`` / ``intents`` / ``connections``.
* Waiting: ``await wait_for(route or predicate, *, since, where, count)``,
  ``await wait_until(condition)``, ``await wait_acknowledged(interaction)``.
* Faults: ``fail_next(route, *, code=, status=, retry_after=, where=)``,
  ``uploads_refused = True`` (or a function of the test's clock: every request
  with a file answers ``upload_outage_status``, 503 by default),
  ``delete_message(message)``, ``await drop_connection()``,
  ``request_reconnect()``.

* Monetization: ``add_sku(name, *, kind=SKU_CONSUMABLE)`` → SKU id (listed by
  ``GET /applications/{app}/skus``); ``member.buy(sku_id)`` (or ``buy(member,
  sku_id, dispatch=)``) makes a PURCHASE ``Entitlement`` and, with
  ``dispatch`` (the default), sends ENTITLEMENT_CREATE to the session of shard 0
  (a user's entitlement names no guild), as Discord does after a payment; a
  bot not connected then never gets that event. ``redeliver(entitlement)``
  sends it again (a replay). ``delete_entitlement(entitlement, dispatch=)``
  is Discord refunding (or removing) it: ``deleted`` set, ENTITLEMENT_DELETE
  (the entitlement, ``deleted: true``) sent to shard 0's session; called
  again it replays that event. ``entitlements`` holds them by id (``consumed``,
  ``consumes``: every consume call that succeeded). List
  (``GET /applications/{app}/entitlements`` with ``user_id``, ``sku_ids``,
  ``before`` / ``after``, ``limit`` 1 to 100, ``guild_id``, ``exclude_ended``,
  ``exclude_deleted``; ascending ids), fetch one, create a test entitlement
  (``POST``, ``sku_id`` + ``owner_id`` + ``owner_type``) and consume
  (``POST .../{id}/consume``: 204; an unknown entitlement 404 10029, one
  already consumed or of a SKU that is not consumable 400 40074).

What it enforces, as Discord answers it (``{"code": N, "message": ...}``):
a callback later than the deadline or for an unknown interaction 404 10062;
a second acknowledgement 400 40060; a webhook call before the
acknowledgement 404 10015, after the token's lifetime 401 50027; files over
the limit (the interaction's ``attachment_size_limit``, or the channel's by
boost level) 413 40005; content over 2000 characters, more than 5 rows or 5
items a row, a custom_id over 100 or duplicated, a label over 80: 400 50035
with the ``errors`` tree; an empty message 400 50006; a missing or wrong bot
token 401 code 0; a deleted (or, on the channel routes, ephemeral) message
404 10008; a channel the bot may not post in 403 50013, may not see 403
50001; a DM to a member who closed their DMs 403 50007; an edit of a
member's own message (``member.say``) 403 50005; over 200 command creations a day in one scope 400 30034; privileged
intents not enabled: gateway close 4014; a bad token on IDENTIFY: close 4004;
an application id in a path that is not the bot's 404 10002; a premium
button (style 6) without a known ``sku_id``, or with a ``custom_id``,
``label``, ``url`` or ``emoji``, 400 50035; a ``shard`` that is not ``[id, count]`` with ``0 <= id < count``: close 4010
Invalid shard; more than ``max_guilds_per_shard`` (2,500) guilds on one
session: close 4011 Sharding required (``closes`` lists every close).

Shards: an IDENTIFY with ``shard: [id, count]`` opens a session for that
shard, which gets READY and GUILD_CREATE for its guilds only, and then the
events and interactions of the guilds with ``(guild_id >> 22) % count == id``
(``shard_of``); DMs go to shard 0. Without ``shard`` a session is shard
``[0, 1]``: everything. Sessions of different shards run side by side
(``live``); a second IDENTIFY of the same shard takes its events from the first.

Rate limits (``rate_limits``, see ``tests/adapters/discord_ratelimits.py``): every
REST answer carries its bucket's ``X-RateLimit-*`` headers; a request over its
bucket (posting and editing in one channel: 5 every 5 s) is a 429 with
``retry_after`` and the bucket headers, over 50 requests a second in all a
global 429; ``rate_limited`` lists every 429 answered. The windows run on the
stand-in's clock.

It binds to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import mimetypes
import re
import socket
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.adapters.discord_ratelimits import RateLimits, bucket_headers, too_many_headers

# --- Discord's numbers ----------------------------------------------------------------------

ACK_DEADLINE_S = 3.0
"""Seconds an app has to acknowledge an interaction."""
TOKEN_LIFETIME_S = 15 * 60.0
"""Seconds an interaction token works for follow-ups and @original edits."""
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
"""Bytes of files one request may carry in a guild without boosts, and in DMs."""
PREMIUM_UPLOAD_LIMITS = {
    0: DEFAULT_UPLOAD_LIMIT,
    1: DEFAULT_UPLOAD_LIMIT,
    2: 50 * 1024 * 1024,
    3: 100 * 1024 * 1024,
}
"""The upload limit by guild boost level (``premium_tier``)."""
RECOMMENDED_GUILDS_PER_SHARD = 1000
"""What ``GET /gateway/bot`` recommends: one shard per 1,000 guilds."""
MAX_GUILDS_PER_SHARD = 2500
"""Guilds one gateway session may hold; beyond, IDENTIFY closes 4011 Sharding required."""
DAILY_COMMAND_CREATES = 200
"""Application command creations Discord allows per guild (and globally) per day."""
MAX_CONTENT = 2000
MAX_CUSTOM_ID = 100
MAX_BUTTON_LABEL = 80
MAX_ROWS = 5
MAX_ROW_ITEMS = 5

EPHEMERAL = 1 << 6
LOADING = 1 << 7
COMPONENTS_V2 = 1 << 15
SUPPRESS_EMBEDS = 1 << 2
EDITABLE_FLAGS = SUPPRESS_EMBEDS | COMPONENTS_V2

# permission bits (a subset)
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1
MEMBER_PERMISSIONS = (
    VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY
    | USE_APPLICATION_COMMANDS | SEND_MESSAGES_IN_THREADS
)  # fmt: skip
"""What @everyone may do in a new guild (the part that matters here); the bot's role too."""

# gateway intents
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
# ...and those that need a switch in the developer portal
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

# SKU types and flags, entitlement types (Discord's monetization)
SKU_DURABLE = 2
SKU_CONSUMABLE = 3
SKU_SUBSCRIPTION = 5
SKU_AVAILABLE = 1 << 2
ENTITLEMENT_PURCHASE = 1
ENTITLEMENT_TEST_MODE_PURCHASE = 4
MAX_ENTITLEMENTS_PAGE = 100

# channel types
GUILD_TEXT = 0
DM = 1
PUBLIC_THREAD = 11
PRIVATE_THREAD = 12

# interaction types and callback types
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7

_DISCORD_EPOCH_MS = 1_420_070_400_000
_STATUS_OF_CODE = {
    0: 400, 10002: 404, 10003: 404, 10008: 404, 10027: 404, 10029: 404, 40074: 400, 10015: 404, 10062: 404, 30034: 400, 40005: 413,
    40060: 400, 50001: 403, 50005: 403, 50006: 400, 50007: 403, 50013: 403, 50027: 401,
    50035: 400,
}  # fmt: skip
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_MESSAGE_OF_CODE = {
    10002: "Unknown Application",
    10027: "Unknown SKU",
    10029: "Unknown Entitlement",
    40074: "This entitlement has already been consumed.",
    10003: "Unknown Channel",
    10008: "Unknown Message",
    10015: "Unknown Webhook",
    10062: "Unknown interaction",
    30034: "Max number of daily application command creates has been reached (200)",
    40005: "Request entity too large",
    40060: "Interaction has already been acknowledged.",
    50001: "Missing Access",
    50005: "Cannot edit a message authored by another user",
    50006: "Cannot send an empty message",
    50007: "Cannot send messages to this user",
    50013: "Missing Permissions",
    50027: "Invalid Webhook Token",
    50035: "Invalid Form Body",
}


def _iso(seconds: float | None = None) -> str:
    moment = dt.datetime.fromtimestamp(time.time() if seconds is None else seconds, dt.UTC)
    return moment.isoformat()


# --- what the stand-in records --------------------------------------------------------------


@dataclass
class ApiCall:
    """One REST request the bot made, and how the stand-in answered it."""

    index: int
    method: str
    path: str
    """The path after ``/api/v10``, as sent."""
    route: str
    """``METHOD /template``, e.g. ``POST /channels/{channel_id}/messages`` (see ``ROUTES``)."""
    params: dict[str, str]
    """The template's values (``channel_id``...)."""
    query: dict[str, str]
    json: Any = None
    """The JSON body, or the multipart ``payload_json``."""
    files: list[StoredFile] = field(default_factory=list)
    status: int = 200
    code: int | None = None
    """Discord's error code when the answer was an error."""
    result: Any = None


@dataclass
class StoredFile:
    """A file on the stand-in's CDN: an upload by the bot, or a member's attachment."""

    id: str
    filename: str
    data: bytes
    content_type: str
    size: int
    """The size Discord declares; equal to ``len(data)`` unless a test declared another."""
    url: str
    width: int | None = None
    height: int | None = None

    def payload(self) -> dict[str, Any]:
        """The attachment object Discord sends."""
        result: dict[str, Any] = {
            "id": self.id,
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
        }
        if self.width is not None:
            result["width"], result["height"] = self.width, self.height
        return result


@dataclass
class Edit:
    """One change to a message: by whom (``channel`` route with the bot token, or ``interaction``)."""

    via: str
    at: float
    content: str | None
    interaction_id: str | None = None


@dataclass
class Message:
    """A message in a channel, as the stand-in keeps it."""

    id: str
    channel: Channel
    content: str
    components: list[dict[str, Any]]
    embeds: list[dict[str, Any]]
    attachments: list[StoredFile]
    flags: int
    via: str
    """``channel`` (posted with the bot token) or ``interaction`` (a response or follow-up)."""
    created_at: float
    interaction: Interaction | None = None
    reference: dict[str, Any] | None = None
    allowed_mentions: dict[str, Any] | None = None
    deleted: bool = False
    edits: list[Edit] = field(default_factory=list)
    edited_at: str | None = None
    author: Member | None = None
    """Who wrote it: None for the bot, else the member (the bot may not edit theirs: 50005)."""

    @property
    def ephemeral(self) -> bool:
        """Only the member who started the interaction sees it."""
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        """A deferred response still showing "thinking"."""
        return bool(self.flags & LOADING)

    @property
    def edited_by(self) -> list[str]:
        """Who edited it, in order: ``channel`` or ``interaction``."""
        return [edit.via for edit in self.edits]

    def buttons(self) -> list[dict[str, Any]]:
        """Every button, in order, at any depth."""
        return [c for c in _walk(self.components) if c.get("type") == 2]

    def labels(self) -> list[str]:
        return [button.get("label", "") for button in self.buttons()]

    def button(self, label_or_custom_id: str) -> dict[str, Any]:
        """The button whose custom_id is this, or the one whose label starts with it."""
        buttons = self.buttons()
        found = [b for b in buttons if b.get("custom_id") == label_or_custom_id]
        if not found:
            found = [b for b in buttons if b.get("label", "").startswith(label_or_custom_id)]
        if len(found) != 1:
            shown = [(b.get("label"), b.get("custom_id")) for b in buttons]
            raise AssertionError(f"{len(found)} buttons match {label_or_custom_id!r}: {shown}")
        return found[0]

    def payload(self, api: DiscordStandIn) -> dict[str, Any]:
        """The message object Discord answers with."""
        result: dict[str, Any] = {
            "id": self.id,
            "channel_id": self.channel.id,
            "type": 0,
            "content": self.content,
            "author": api.bot_user() if self.author is None else self.author.user_payload(),
            "attachments": [f.payload() for f in self.attachments],
            "embeds": self.embeds,
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": False,
            "timestamp": _iso(),
            "edited_timestamp": self.edited_at,
            "flags": self.flags,
            "components": self.components,
        }
        if self.channel.guild is not None:
            result["guild_id"] = self.channel.guild.id
        if self.reference is not None:
            result["type"] = 19
            result["message_reference"] = self.reference
        if self.interaction is not None:
            result["webhook_id"] = api.application_id
            result["application_id"] = api.application_id
            if self.interaction.type == APPLICATION_COMMAND and self is self.interaction.original:
                result["type"] = 20
            result["interaction_metadata"] = {
                "id": self.interaction.id,
                "type": self.interaction.type,
                "user": self.interaction.member.user_payload(),
                "authorizing_integration_owners": {},
            }
        return result


@dataclass
class Interaction:
    """An interaction pushed to the bot, and everything the bot answered to it."""

    id: str
    token: str
    type: int
    name: str
    """The command's name, or the pressed button's custom_id."""
    member: Member
    channel: Channel
    payload: dict[str, Any]
    created_at: float
    attachment_size_limit: int
    source: Message | None = None
    """The message whose button was pressed."""
    ack_type: int | None = None
    acked_at: float | None = None
    callback: dict[str, Any] | None = None
    original: Message | None = None
    followups: list[Message] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return self.ack_type is not None

    @property
    def deferred(self) -> bool:
        return self.ack_type in (DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE)

    @property
    def options(self) -> dict[str, Any]:
        """The values the command was given, by option name."""
        return {o["name"]: o.get("value") for o in self.payload["data"].get("options", [])}


@dataclass
class CommandSync:
    """One bulk overwrite of application commands."""

    guild_id: str | None
    names: list[str]
    created: list[str]
    at: float


@dataclass
class Failure:
    """An error answer injected by a test, given once to the first matching call."""

    route: str
    status: int
    code: int
    message: str
    retry_after: float | None
    is_global: bool
    where: Callable[[ApiCall], bool] | None


# --- the world: guilds, channels, roles, members --------------------------------------------


@dataclass(eq=False)
class Role:
    """A guild role."""

    id: str
    name: str
    permissions: int = 0
    position: int = 1
    managed: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "color": 0,
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }


@dataclass(eq=False)
class Channel:
    """A guild text channel, a thread, or a DM channel."""

    api: DiscordStandIn
    id: str
    name: str
    type: int
    guild: Guild | None = None
    parent: Channel | None = None
    recipient: Member | None = None
    postable: bool = True
    """Whether the bot may post here; False answers 403 50013 Missing Permissions."""
    visible: bool = True
    """Whether the bot may see the channel at all; False answers 403 50001 Missing Access."""
    upload_limit_override: int | None = None
    """A lower (or higher) upload limit for this channel and its threads, for tests."""

    @property
    def is_thread(self) -> bool:
        return self.type in (PUBLIC_THREAD, PRIVATE_THREAD)

    def set_bot_access(self, *, post: bool = True, view: bool = True) -> None:
        """Change what the bot may do here, and tell a connected bot (CHANNEL_UPDATE)."""
        self.postable, self.visible = post, view
        event = "THREAD_UPDATE" if self.is_thread else "CHANNEL_UPDATE"
        if self.guild is not None:
            self.api._dispatch_event(event, self.payload(), INTENT_GUILDS)

    @property
    def upload_limit(self) -> int:
        """Bytes of files one post may carry; interactions here announce it too."""
        if self.upload_limit_override is not None:
            return self.upload_limit_override
        if self.parent is not None:
            return self.parent.upload_limit
        if self.guild is None:
            return DEFAULT_UPLOAD_LIMIT
        return PREMIUM_UPLOAD_LIMITS.get(self.guild.premium_tier, DEFAULT_UPLOAD_LIMIT)

    def bot_denied(self) -> int:
        """Permissions the channel takes away from the bot."""
        denied = 0 if self.postable else SEND_MESSAGES | SEND_MESSAGES_IN_THREADS | ATTACH_FILES
        if not self.visible:
            denied |= VIEW_CHANNEL
        if self.parent is not None:
            denied |= self.parent.bot_denied()
        return denied

    def payload(self) -> dict[str, Any]:
        """The channel object Discord sends."""
        if self.type == DM:
            assert self.recipient is not None
            return {
                "id": self.id,
                "type": DM,
                "last_message_id": None,
                "flags": 0,
                "recipients": [self.recipient.user_payload()],
            }
        assert self.guild is not None
        result: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "guild_id": self.guild.id,
            "name": self.name,
            "position": list(self.guild.channels).index(self.id),
            "parent_id": self.parent.id if self.parent else None,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if self.is_thread:
            result.update(
                owner_id=self.api.bot_id,
                message_count=0,
                member_count=1,
                thread_metadata={
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": _iso(),
                    "locked": False,
                },
            )
            return result
        denied = self.bot_denied()
        overwrites = []
        if denied:
            overwrites.append({"id": self.api.bot_id, "type": 1, "allow": "0", "deny": str(denied)})
        result.update(topic=None, permission_overwrites=overwrites)
        return result


@dataclass(eq=False)
class Guild:
    """A guild (server) the bot is in."""

    api: DiscordStandIn
    id: str
    name: str
    premium_tier: int = 0
    locale: str = "en-US"
    bot_permissions: int = MEMBER_PERMISSIONS
    owner_id: str = ""
    bot_role_id: str = ""
    roles: dict[str, Role] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]

    @property
    def upload_limit(self) -> int:
        return PREMIUM_UPLOAD_LIMITS.get(self.premium_tier, DEFAULT_UPLOAD_LIMIT)

    @property
    def text_channels(self) -> list[Channel]:
        return [c for c in self.channels.values() if c.type == GUILD_TEXT]

    # Added while the bot is connected, each is announced as Discord does (GUILD_ROLE_CREATE...).

    def add_role(self, name: str, permissions: int = 0) -> Role:
        role = Role(self.api.snowflake(), name, permissions, position=len(self.roles))
        self.roles[role.id] = role
        payload = {"guild_id": self.id, "role": role.payload()}
        self.api._dispatch_event("GUILD_ROLE_CREATE", payload, INTENT_GUILDS)
        return role

    def add_channel(
        self, name: str, *, postable: bool = True, upload_limit: int | None = None
    ) -> Channel:
        channel = Channel(self.api, self.api.snowflake(), name, GUILD_TEXT, self, postable=postable)
        channel.upload_limit_override = upload_limit
        self.channels[channel.id] = channel
        self.api.channels[channel.id] = channel
        self.api._dispatch_event("CHANNEL_CREATE", channel.payload(), INTENT_GUILDS)
        return channel

    def add_thread(self, parent: Channel, name: str, *, private: bool = False) -> Channel:
        kind = PRIVATE_THREAD if private else PUBLIC_THREAD
        thread = Channel(self.api, self.api.snowflake(), name, kind, self, parent=parent)
        self.channels[thread.id] = thread
        self.api.channels[thread.id] = thread
        payload = thread.payload() | {"newly_created": True}
        self.api._dispatch_event("THREAD_CREATE", payload, INTENT_GUILDS)
        return thread

    def add_member(
        self,
        name: str,
        *,
        roles: tuple[Role, ...] | list[Role] = (),
        owner: bool = False,
        locale: str = "en-US",
        user_id: str | None = None,
    ) -> Member:
        member = Member(self.api, user_id or self.api.snowflake(), name, self, list(roles), locale)
        if owner:
            self.owner_id = member.id
        self.members[member.id] = member
        self.api.users[member.id] = member
        payload = member.member_payload() | {"guild_id": self.id}
        self.api._dispatch_event("GUILD_MEMBER_ADD", payload, INTENT_GUILD_MEMBERS)
        return member

    def permissions_of(self, member: Member) -> int:
        """The member's guild-wide permissions (channel overwrites are not modelled for members)."""
        if member.id == self.owner_id:
            return ALL_PERMISSIONS
        value = self.everyone.permissions
        for role in member.roles:
            value |= role.permissions
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value

    def bot_member_payload(self) -> dict[str, Any]:
        return {
            "user": self.api.bot_user(),
            "roles": [self.api.bot_role_id(self)],
            "joined_at": _iso(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
        }

    def payload(self, *, with_members: bool) -> dict[str, Any]:
        """The GUILD_CREATE data."""
        members = [self.bot_member_payload()]
        if with_members:
            members += [m.member_payload() for m in self.members.values()]
        plain = [c for c in self.channels.values() if not c.is_thread]
        threads = [c for c in self.channels.values() if c.is_thread]
        return {
            "id": self.id,
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": self.owner_id,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [r.payload() for r in self.roles.values()] + [self._bot_role()],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": self.premium_tier,
            "premium_subscription_count": 0,
            "preferred_locale": self.locale,
            "public_updates_channel_id": None,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "joined_at": _iso(),
            "large": False,
            "unavailable": False,
            "member_count": len(self.members) + 1,
            "voice_states": [],
            "members": members,
            "channels": [c.payload() for c in plain],
            "threads": [c.payload() for c in threads],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def _bot_role(self) -> dict[str, Any]:
        role = Role(self.api.bot_role_id(self), "klingbot", self.bot_permissions, 1, managed=True)
        return role.payload() | {"tags": {"bot_id": self.api.bot_id}}


@dataclass
class Entitlement:
    """A member's right to a SKU: what Discord grants after a payment (or a test grant)."""

    id: str
    sku_id: str
    application_id: str
    user_id: str | None
    type: int = ENTITLEMENT_PURCHASE
    guild_id: str | None = None
    consumed: bool = False
    deleted: bool = False
    ends_at: float | None = None
    """When it ended (wall-clock seconds; a refunded one-time purchase ends); None: never."""
    consumes: int = 0
    """Consume calls that succeeded (Discord takes one)."""
    event: dict[str, Any] | None = None
    """ENTITLEMENT_CREATE's data as first sent (a replay sends it unchanged)."""
    deleted_event: dict[str, Any] | None = None
    """ENTITLEMENT_DELETE's data as first sent (a replay sends it unchanged)."""

    def ended(self, now: float) -> bool:
        return self.ends_at is not None and self.ends_at <= now

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "sku_id": self.sku_id,
            "application_id": self.application_id,
            "user_id": self.user_id,
            "promotion_id": None,
            "type": self.type,
            "deleted": self.deleted,
            "gift_code_flags": 0,
            "consumed": self.consumed,
        }
        if self.type != ENTITLEMENT_TEST_MODE_PURCHASE:
            data["starts_at"] = _iso(((int(self.id) >> 22) + _DISCORD_EPOCH_MS) / 1000)
            data["ends_at"] = None if self.ends_at is None else _iso(self.ends_at)
        if self.guild_id is not None:
            data["guild_id"] = self.guild_id
        return data


@dataclass(eq=False)
class Member:
    """A Discord user: a guild member when ``guild`` is set, else someone who talks in DMs."""

    api: DiscordStandIn
    id: str
    name: str
    guild: Guild | None = None
    roles: list[Role] = field(default_factory=list)
    locale: str = "en-US"
    accepts_dms: bool = True
    """False: the member closed their DMs to the bot (or blocked it); posts there get 50007."""
    _dm: Channel | None = None

    @property
    def dm_channel(self) -> Channel:
        """The DM channel between this user and the bot (made on first use; one per user id)."""
        if self._dm is None:
            self._dm = self.api.dm_channels.get(self.id)
        if self._dm is None:
            self._dm = Channel(self.api, self.api.snowflake(), "", DM, recipient=self)
            self.api.channels[self._dm.id] = self._dm
            self.api.dm_channels[self.id] = self._dm
        return self._dm

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def permissions(self) -> int:
        return 0 if self.guild is None else self.guild.permissions_of(self)

    def user_payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.name,
            "discriminator": "0",
            "global_name": self.name.title(),
            "avatar": None,
            "bot": False,
            "public_flags": 0,
        }

    def member_payload(
        self, *, with_user: bool = True, permissions: bool = False
    ) -> dict[str, Any]:
        """The guild member object; with ``permissions`` as interactions carry it."""
        result: dict[str, Any] = {
            "roles": [role.id for role in self.roles],
            "nick": None,
            "avatar": None,
            "joined_at": _iso(),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            result["user"] = self.user_payload()
        if permissions:
            result["permissions"] = str(self.permissions())
        return result

    def slash(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        channel: Channel | None = None,
        locale: str | None = None,
        attachments: Mapping[str, StoredFile | bytes] | None = None,
        attachment_size_limit: int | None = None,
    ) -> Interaction:
        """Run ``/name`` with ``options`` (values: str, int, float, bool, a Member, a StoredFile).

        ``attachments`` adds attachment options (bytes are uploaded as ``image.png``).
        Where: ``channel``, else the guild's first text channel, else the DM.
        """
        values = dict(options or {})
        for option, value in (attachments or {}).items():
            values[option] = value if isinstance(value, StoredFile) else self.api.attachment(value)
        channel = channel or self._default_channel()
        return self.api._push_command(self, channel, name, values, locale, attachment_size_limit)

    def buy(self, sku_id: str, *, dispatch: bool = True) -> Entitlement:
        """Pay for ``sku_id`` (what a premium button leads to): see ``DiscordStandIn.buy``."""
        return self.api.buy(self, sku_id, dispatch=dispatch)

    def say(self, content: str, *, channel: Channel | None = None) -> Message:
        """Post a plain message of this member's own (``channel``: as for ``slash``)."""
        return self.api._member_message(self, channel or self._default_channel(), content)

    def press(
        self,
        message: Message,
        label_or_custom_id: str,
        *,
        locale: str | None = None,
        attachment_size_limit: int | None = None,
    ) -> Interaction:
        """Press a button of ``message`` (by custom_id, or the label it starts with)."""
        return self.api._push_press(
            self, message, label_or_custom_id, locale, attachment_size_limit
        )

    def _default_channel(self) -> Channel:
        if self.guild is not None and self.guild.text_channels:
            return self.guild.text_channels[0]
        return self.dm_channel


# --- the server -----------------------------------------------------------------------------


class DiscordError(Exception):
    """An error answer in Discord's shape: ``{"code": N, "message": "...", "errors": {...}}``."""

    def __init__(
        self,
        code: int,
        message: str | None = None,
        *,
        status: int | None = None,
        errors: dict[str, Any] | None = None,
    ) -> None:
        self.code = code
        self.message = message or _MESSAGE_OF_CODE.get(code, "Bad Request")
        self.status = status or _STATUS_OF_CODE.get(code, 400)
        self.errors = errors
        super().__init__(f"{self.status} {self.code} {self.message}")

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def _invalid(path: list[str | int], code: str, message: str) -> DiscordError:
    """A 50035 Invalid Form Body naming the field at ``path``."""
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        errors = {str(key): errors}
    return DiscordError(50035, errors=errors)


@dataclass
class GatewaySession:
    """One gateway session: what the bot IDENTIFYed with and the events sent to it."""

    id: str
    identify: dict[str, Any]
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    connection: _Connection | None = None
    resumes: int = 0

    @property
    def intents(self) -> int:
        return int(self.identify.get("intents", 0))

    @property
    def shard(self) -> tuple[int, int]:
        """``(shard id, shard count)`` IDENTIFYed with; ``(0, 1)`` without sharding."""
        shard = self.identify.get("shard") or (0, 1)
        return int(shard[0]), int(shard[1])

    def owns(self, guild_id: str | int | None) -> bool:
        """Whether Discord sends this session the guild's events (DMs: shard 0)."""
        shard_id, count = self.shard
        if guild_id is None:
            return shard_id == 0
        return shard_of(guild_id, count) == shard_id


def shard_of(guild_id: str | int, shard_count: int) -> int:
    """The shard a guild's events go to, as Discord computes it."""
    return (int(guild_id) >> 22) % shard_count


class _Connection:
    """One websocket: a writer task sends queued payloads in order, compressed as asked."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None, path: str) -> None:
        self.ws = ws
        self.path = path
        self.compress = compress
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self._zstd = None
        if compress == "zstd-stream":
            import zstandard  # only there when discord.py asked for it because it has it

            self._zstd = zstandard.ZstdCompressor().compressobj()
        self._queue: asyncio.Queue[bytes | str | None] = asyncio.Queue()
        self._writer = asyncio.get_running_loop().create_task(self._write())

    def send(self, payload: dict[str, Any]) -> None:
        text = json.dumps(payload, separators=(",", ":"))
        if self._zlib is not None:
            data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
            self._queue.put_nowait(data)
        elif self._zstd is not None:
            import zstandard

            block = self._zstd.compress(text.encode())
            self._queue.put_nowait(block + self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
        else:
            self._queue.put_nowait(text)

    async def _write(self) -> None:
        while (item := await self._queue.get()) is not None:
            if self.ws.closed:
                return
            with contextlib.suppress(ConnectionError, RuntimeError):
                if isinstance(item, bytes):
                    await self.ws.send_bytes(item)
                else:
                    await self.ws.send_str(item)

    async def close(self, code: int = 1000, message: bytes = b"") -> None:
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        await self.ws.close(code=code, message=message)


_Handler = Callable[["_Request"], Awaitable[Any]]


@dataclass
class _Request:
    call: ApiCall
    files: list[tuple[str, str, bytes]]
    """(form field, filename, bytes) of each uploaded file, in order."""


class DiscordStandIn:
    """The stand-in server; ``async with DiscordStandIn(token) as discord_api: ...``."""

    def __init__(
        self,
        token: str = "stand-in-bot-token",
        *,
        now: Callable[[], float] | None = None,
        ack_deadline_s: float = ACK_DEADLINE_S,
        token_lifetime_s: float = TOKEN_LIFETIME_S,
        heartbeat_interval_ms: int = 41_250,
        privileged_intents: int = 0,
        bot_name: str = "klingbot",
    ) -> None:
        self.token = token
        self.ack_deadline_s = ack_deadline_s
        self.token_lifetime_s = token_lifetime_s
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.privileged_intents = privileged_intents
        """Privileged intents switched on in the "developer portal"; asking for others closes 4014."""
        self.bot_name = bot_name
        self._clock = now or time.monotonic
        self._offset = 0.0
        self._ids = itertools.count(1)
        self.application_id = self.snowflake()
        self.bot_id = self.application_id
        self.guilds: dict[str, Guild] = {}
        self.channels: dict[str, Channel] = {}
        self.users: dict[str, Member] = {}
        self.dm_channels: dict[str, Channel] = {}
        """Each user's DM channel with the bot, by user id (shared by their guild memberships)."""
        self.messages: dict[str, Message] = {}
        self.interactions: dict[str, Interaction] = {}
        self.calls: list[ApiCall] = []
        self.downloads: list[str] = []
        """Ids of the CDN files fetched, in order."""
        self.commands: dict[str | None, dict[str, dict[str, Any]]] = {}
        """Synced commands by guild id (None: global), then by name."""
        self.command_syncs: list[CommandSync] = []
        self.command_creations: dict[tuple[str | None, int], int] = {}
        """Commands created per (guild id or None, day number)."""
        self.skus: dict[str, dict[str, Any]] = {}
        """The application's SKUs by id, as ``GET /applications/{app}/skus`` lists them."""
        self.entitlements: dict[str, Entitlement] = {}
        """Every entitlement by id, in the order granted."""
        self.sessions: list[GatewaySession] = []
        self.live: dict[tuple[int, int], GatewaySession] = {}
        """The session that gets each shard's events: the last one IDENTIFYed for it."""
        self.max_guilds_per_shard = MAX_GUILDS_PER_SHARD
        """Above this many guilds on one shard (or without shards), IDENTIFY closes 4011."""
        self.closes: list[tuple[int, str]] = []
        """Every close code (and reason) the gateway ended a connection with."""
        self.heartbeats = 0
        self.ready = False
        """Whether READY and every GUILD_CREATE were sent to the current session."""
        self.identify_gate: asyncio.Event | None = None
        """When set to an unset event, IDENTIFY is answered (READY) only once it is set:
        a gateway slow to become ready."""
        self._files: dict[str, StoredFile] = {}
        self._by_token: dict[str, Interaction] = {}
        self.internal_errors: list[Exception] = []
        """Bugs of the stand-in itself: answered 400 (not 500, which discord.py retries), raised at exit."""
        self._failures: list[Failure] = []
        self.uploads_refused: bool | Callable[[], bool] = False
        """While true (or while it returns true), every request carrying a file answers
        ``upload_outage_status``, as Discord's edge does in an upload outage."""
        self.upload_outage_status = 503
        """503 reaches the adapter at once; discord.py retries a 502 itself, sleeping
        1 + 2n real seconds five times, so a test that wants 502 pays 25 s per send."""
        self.connections: list[dict[str, Any]] = []
        """Each websocket opened: its ``path`` (``/`` or ``/resume``) and ``compress`` mode."""
        self._open: set[_Connection] = set()
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._routes = self._route_table()
        self.rate_limits = RateLimits(self.now)
        """Per-route buckets and the global limit (``tests/adapters/discord_ratelimits.py``)."""
        self.port = 0

    # --- server ------------------------------------------------------------------------------

    async def __aenter__(self) -> DiscordStandIn:
        app = web.Application(client_max_size=300 * 1024 * 1024)
        app.router.add_route("*", "/api/v{version}/{path:.*}", self._rest)
        app.router.add_get("/attachments/{channel}/{id}/{filename}", self._download)
        app.router.add_get("/", self._gateway)
        app.router.add_get("/resume", self._gateway)
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        sock = socket.create_server(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        for connection in list(self._open):
            await connection.close(1001)
        assert self._runner is not None
        await self._runner.cleanup()
        if self.internal_errors and exc_type is None:
            raise AssertionError("the stand-in failed") from self.internal_errors[0]

    def add_routes(self, app: web.Application) -> None:
        """Extra routes of a subclass (a benchmark's controls); none here."""

    @property
    def api_base(self) -> str:
        """What DISCORD_API_BASE should be (the client appends ``/v10``)."""
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def gateway_url(self) -> str:
        """What DISCORD_GATEWAY_URL should be."""
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/resume"

    # --- clock and ids ----------------------------------------------------------------------

    def now(self) -> float:
        """The stand-in's clock: the injected ``now()`` plus everything ``advance`` added."""
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the stand-in's clock forward (deadlines and token lifetimes see it)."""
        self._offset += seconds

    def snowflake(self) -> str:
        """A new id, as Discord makes them (time in the high bits), as a string."""
        millis = int(time.time() * 1000) - _DISCORD_EPOCH_MS
        return str((millis << 22) | (next(self._ids) & 0x3FFFFF))

    # --- what tests set up ------------------------------------------------------------------

    def add_guild(
        self,
        name: str = "Creators",
        *,
        premium_tier: int = 0,
        locale: str = "en-US",
        bot_permissions: int = MEMBER_PERMISSIONS,
        channels: tuple[str, ...] = ("general",),
        shard: tuple[int, int] | None = None,
    ) -> Guild:
        """A guild with @everyone (the usual member permissions) and text ``channels``.

        ``shard=(id, count)``: its id puts it on that shard (``shard_of``)."""
        guild_id = self.snowflake()
        if shard is not None:
            shard_id, count = shard
            step = (shard_id - shard_of(guild_id, count)) % count
            guild_id = str(int(guild_id) + (step << 22))  # a few ms later: the shard's id
        guild = Guild(self, guild_id, name, premium_tier, locale, bot_permissions)
        guild.owner_id = (
            self.snowflake()
        )  # someone the tests never see, unless add_member(owner=True)
        guild.bot_role_id = self.snowflake()
        guild.roles[guild.id] = Role(guild.id, "@everyone", MEMBER_PERMISSIONS, position=0)
        for channel in channels:
            guild.add_channel(channel)
        self.guilds[guild.id] = guild
        return guild

    def add_sku(self, name: str, *, kind: int = SKU_CONSUMABLE, sku_id: str | None = None) -> str:
        """A SKU of the application (consumable unless ``kind`` says otherwise); its id."""
        sku_id = sku_id or self.snowflake()
        self.skus[sku_id] = {
            "id": sku_id,
            "type": kind,
            "dependent_sku_id": None,
            "application_id": self.application_id,
            "manifest_labels": None,
            "access_type": 1,
            "name": name,
            "features": [],
            "release_date": None,
            "premium": False,
            "slug": re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"),
            "flags": SKU_AVAILABLE,
            "show_age_gate": False,
        }
        return sku_id

    def buy(self, member: Member, sku_id: str, *, dispatch: bool = True) -> Entitlement:
        """``member`` pays for ``sku_id``: a PURCHASE entitlement, announced with ENTITLEMENT_CREATE.

        The event goes to shard 0's session (the entitlement names no guild),
        if one is connected; without ``dispatch`` nothing is sent (a payment
        whose event the bot missed).
        """
        if sku_id not in self.skus:
            raise AssertionError(f"no SKU {sku_id}")
        entitlement = Entitlement(self.snowflake(), sku_id, self.application_id, member.id)
        self.entitlements[entitlement.id] = entitlement
        if dispatch:
            self.redeliver(entitlement)
        return entitlement

    def redeliver(self, entitlement: Entitlement) -> None:
        """Send ENTITLEMENT_CREATE for ``entitlement``; again: the same event replayed."""
        if entitlement.event is None:
            entitlement.event = entitlement.payload()
        self._dispatch_event("ENTITLEMENT_CREATE", entitlement.event)
        self._notify_soon()

    def delete_entitlement(self, entitlement: Entitlement, *, dispatch: bool = True) -> None:
        """Discord refunds (or removes) ``entitlement``: deleted, announced with ENTITLEMENT_DELETE.

        Like ENTITLEMENT_CREATE it goes to the session owning the entitlement's
        guild (a member's: shard 0), if one is connected; deleting it again
        replays the same event (a resumed session's redelivery).
        """
        if entitlement.id not in self.entitlements:
            raise AssertionError(f"no entitlement {entitlement.id}")
        entitlement.deleted = True
        if entitlement.deleted_event is None:
            entitlement.deleted_event = entitlement.payload()
        if dispatch:
            self._dispatch_event("ENTITLEMENT_DELETE", entitlement.deleted_event)
            self._notify_soon()

    def add_user(self, name: str, *, locale: str = "en-US", user_id: str | None = None) -> Member:
        """Someone who talks to the bot in DMs only (``user_id``: a guild member, in their DMs)."""
        user = Member(self, user_id or self.snowflake(), name, None, [], locale)
        self.users[user.id] = user
        return user

    def attachment(
        self,
        data: bytes,
        filename: str = "image.png",
        *,
        content_type: str | None = None,
        size: int | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> StoredFile:
        """A member's attachment on the CDN; ``size`` and ``content_type`` are what Discord declares."""
        return self._store_file(
            "0", filename, data, content_type=content_type, size=size, width=width, height=height
        )

    def fail_next(
        self,
        route: str,
        *,
        status: int | None = None,
        code: int = 0,
        message: str | None = None,
        retry_after: float | None = None,
        is_global: bool = False,
        where: Callable[[ApiCall], bool] | None = None,
    ) -> None:
        """Answer the next call of ``route`` (``"POST /channels/{channel_id}/messages"``) with an error.

        ``retry_after`` makes it a 429 with Discord's rate-limit headers; ``code`` alone picks
        Discord's status for it (50013 → 403); ``status=500`` a server error.
        """
        if retry_after is not None:
            status = 429
            message = message or "You are being rate limited."
        elif status is None:
            status = _STATUS_OF_CODE.get(code, 400)
        if message is None:
            message = _MESSAGE_OF_CODE.get(code) or f"{status}: {_REASONS.get(status, 'Error')}"
        self._failures.append(Failure(route, status, code, message, retry_after, is_global, where))

    def _member_message(self, member: Member, channel: Channel, content: str) -> Message:
        message = Message(
            id=self.snowflake(),
            channel=channel,
            content=content,
            components=[],
            embeds=[],
            attachments=[],
            flags=0,
            via="member",
            created_at=self.now(),
            author=member,
        )
        self.messages[message.id] = message
        intent = INTENT_DIRECT_MESSAGES if channel.guild is None else INTENT_GUILD_MESSAGES
        self._dispatch_event("MESSAGE_CREATE", message.payload(self), intent)
        self._notify_soon()
        return message

    def delete_message(self, message: Message) -> None:
        """A moderator deletes ``message``: later edits of it answer 404 10008."""
        message.deleted = True
        intent = INTENT_DIRECT_MESSAGES if message.channel.guild is None else INTENT_GUILD_MESSAGES
        self._dispatch_event("MESSAGE_DELETE", self._delete_event(message), intent)
        self._notify_soon()

    # --- what tests read --------------------------------------------------------------------

    @property
    def session(self) -> GatewaySession | None:
        """The session interactions go to: the last one IDENTIFYed."""
        return self.sessions[-1] if self.sessions else None

    @property
    def intents(self) -> int | None:
        """The intents of the last IDENTIFY."""
        return self.session.intents if self.session else None

    @property
    def rate_limited(self) -> list[ApiCall]:
        """Every call answered 429 (by the limits, or injected by ``fail_next``)."""
        return [call for call in self.calls if call.status == 429]

    def of(self, route: str, *, since: int = 0) -> list[ApiCall]:
        """The calls of ``route`` from index ``since``."""
        return [call for call in self.calls[since:] if call.route == route]

    def messages_in(self, channel: Channel, *, deleted: bool = False) -> list[Message]:
        """The channel's messages, oldest first (deleted ones only if asked)."""
        return [
            m for m in self.messages.values() if m.channel is channel and (deleted or not m.deleted)
        ]

    async def wait_for(
        self,
        route: str | Callable[[ApiCall], bool],
        *,
        since: int = 0,
        where: Callable[[ApiCall], bool] | None = None,
        count: int = 1,
        timeout: float = 10.0,
    ) -> ApiCall:
        """The ``count``-th call (from index ``since``) of ``route``, or matching the predicate."""

        def matches(call: ApiCall) -> bool:
            if isinstance(route, str):
                if call.route != route:
                    return False
            elif not route(call):
                return False
            return where is None or where(call)

        found: list[ApiCall] = []
        scanned = since

        def enough() -> bool:
            nonlocal scanned
            found.extend(call for call in self.calls[scanned:] if matches(call))  # new calls only
            scanned = len(self.calls)
            return len(found) >= count

        try:
            await self.wait_until(enough, timeout=timeout)
        except AssertionError:
            seen = "\n".join(
                f"  {c.route} -> {c.status} {c.code or ''}" for c in self.calls[since:]
            )
            raise AssertionError(f"no call {route!r} within {timeout}s; saw:\n{seen}") from None
        return found[count - 1]

    async def wait_until(self, condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
        """Wait until ``condition()`` holds; it is checked after every change the stand-in sees."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(condition), timeout)
            except TimeoutError:
                raise AssertionError(f"condition not met within {timeout}s") from None

    async def wait_acknowledged(self, interaction: Interaction, timeout: float = 10.0) -> None:
        await self.wait_until(lambda: interaction.acknowledged, timeout=timeout)

    # --- gateway control for tests ------------------------------------------------------------

    async def drop_connection(self, code: int = 4000) -> None:
        """Close the current session's websocket (the client should RESUME)."""
        session = self.session
        if session is not None and session.connection is not None:
            connection, session.connection = session.connection, None
            await connection.close(code)

    def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: the client closes and RESUMEs."""
        session = self.session
        if session is not None and session.connection is not None:
            session.connection.send({"op": 7, "d": None})

    # --- bookkeeping --------------------------------------------------------------------------

    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "username": self.bot_name,
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "verified": True,
            "mfa_enabled": False,
            "flags": 0,
            "public_flags": 0,
            "email": None,
        }

    def bot_role_id(self, guild: Guild) -> str:
        """The bot's own (managed) role in ``guild``."""
        return guild.bot_role_id

    def _notify_soon(self) -> None:
        task = asyncio.get_running_loop().create_task(self._notify())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _store_file(
        self,
        channel_id: str,
        filename: str,
        data: bytes,
        *,
        content_type: str | None = None,
        size: int | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> StoredFile:
        file_id = self.snowflake()
        kind = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        url = f"http://127.0.0.1:{self.port}/attachments/{channel_id}/{file_id}/{filename}"
        stored = StoredFile(
            file_id, filename, data, kind, len(data) if size is None else size, url, width, height
        )
        self._files[file_id] = stored
        return stored

    # --- interactions pushed by tests -----------------------------------------------------------

    def _interaction_payload(
        self,
        member: Member,
        channel: Channel,
        kind: int,
        data: dict[str, Any],
        locale: str | None,
        size_limit: int,
    ) -> tuple[str, str, dict[str, Any]]:
        interaction_id = self.snowflake()
        token = f"aW50ZXJhY3Rpb24-{interaction_id}-{next(self._ids)}"
        payload: dict[str, Any] = {
            "id": interaction_id,
            "application_id": self.application_id,
            "type": kind,
            "data": data,
            "token": token,
            "version": 1,
            "locale": locale or member.locale,
            "channel_id": channel.id,
            "channel": channel.payload(),
            "app_permissions": str(self._bot_permissions_in(channel)),
            "attachment_size_limit": size_limit,
            "entitlements": [],
            "entitlement_sku_ids": [],
        }
        guild = channel.guild
        if guild is not None:
            if member.guild is not guild:
                raise AssertionError(f"{member.name} is not a member of {guild.name}")
            payload["guild_id"] = guild.id
            payload["guild"] = {"id": guild.id, "locale": guild.locale, "features": []}
            payload["guild_locale"] = guild.locale
            payload["member"] = member.member_payload(permissions=True)
            payload["context"] = 0
            payload["authorizing_integration_owners"] = {"0": guild.id}
        else:
            payload["user"] = member.user_payload()
            payload["context"] = 1
            payload["authorizing_integration_owners"] = {"0": "0"}
        return interaction_id, token, payload

    def _push_command(
        self,
        member: Member,
        channel: Channel,
        name: str,
        values: dict[str, Any],
        locale: str | None,
        size_limit: int | None,
    ) -> Interaction:
        guild_id = channel.guild.id if channel.guild else None
        command = self.commands.get(guild_id, {}).get(name) or self.commands.get(None, {}).get(name)
        defined = {o["name"]: o for o in (command or {}).get("options", [])}
        options: list[dict[str, Any]] = []
        resolved: dict[str, dict[str, Any]] = {}
        for option, value in values.items():
            kind = defined.get(option, {}).get("type") or _option_type(value)
            if isinstance(value, StoredFile):
                resolved.setdefault("attachments", {})[value.id] = value.payload()
                value = value.id
            elif isinstance(value, Member):
                resolved.setdefault("users", {})[value.id] = value.user_payload()
                if value.guild is not None and value.guild is channel.guild:
                    member_data = value.member_payload(with_user=False, permissions=True)
                    resolved.setdefault("members", {})[value.id] = member_data
                value = value.id
            elif isinstance(value, Role):
                resolved.setdefault("roles", {})[value.id] = value.payload()
                value = value.id
            elif isinstance(value, Channel):
                resolved.setdefault("channels", {})[value.id] = value.payload()
                value = value.id
            options.append({"name": option, "type": kind, "value": value})
        data: dict[str, Any] = {
            "id": command["id"] if command else self.snowflake(),
            "name": name,
            "type": 1,
            "options": options,
        }
        if command and command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        if resolved:
            data["resolved"] = resolved
        limit = size_limit or channel.upload_limit
        iid, token, payload = self._interaction_payload(
            member, channel, APPLICATION_COMMAND, data, locale, limit
        )
        interaction = Interaction(
            iid, token, APPLICATION_COMMAND, name, member, channel, payload, self.now(), limit
        )
        return self._push_interaction(interaction)

    def _push_press(
        self,
        member: Member,
        message: Message,
        label: str,
        locale: str | None,
        size_limit: int | None,
    ) -> Interaction:
        if message.deleted:
            raise AssertionError(f"message {message.id} was deleted; nobody can press it")
        if message.ephemeral and message.interaction and message.interaction.member is not member:
            raise AssertionError(f"{member.name} cannot see an ephemeral message for someone else")
        button = message.button(label)
        if button.get("disabled"):
            raise AssertionError(f"button {button.get('label')!r} is disabled")
        if "custom_id" not in button:
            raise AssertionError(f"button {button.get('label')!r} is a link")
        data = {"custom_id": button["custom_id"], "component_type": 2}
        channel = message.channel
        limit = size_limit or channel.upload_limit
        iid, token, payload = self._interaction_payload(
            member, channel, MESSAGE_COMPONENT, data, locale, limit
        )
        payload["message"] = message.payload(self)
        interaction = Interaction(
            iid,
            token,
            MESSAGE_COMPONENT,
            button["custom_id"],
            member,
            channel,
            payload,
            self.now(),
            limit,
            source=message,
        )
        return self._push_interaction(interaction)

    def _push_interaction(self, interaction: Interaction) -> Interaction:
        self.interactions[interaction.id] = interaction
        self._by_token[interaction.token] = interaction
        self._dispatch_event("INTERACTION_CREATE", interaction.payload)
        self._notify_soon()
        return interaction

    def _bot_permissions_in(self, channel: Channel) -> int:
        if channel.guild is None:
            return MEMBER_PERMISSIONS
        value = channel.guild.everyone.permissions | channel.guild.bot_permissions
        if value & ADMINISTRATOR:
            return ALL_PERMISSIONS
        return value & ~channel.bot_denied()

    # --- the gateway ------------------------------------------------------------------------

    def _dispatch_event(
        self,
        name: str,
        data: dict[str, Any],
        intent: int = 0,
        *,
        to: GatewaySession | None = None,
    ) -> None:
        """Send an event to the session of the shard that owns its guild (``data["guild_id"]``;
        none: shard 0), or to the session ``to``, if it asked for ``intent`` (0: always sent)."""
        if to is not None:
            self._send_event(to, name, data, intent)
            return
        guild_id = data.get("guild_id")
        for session in list(self.live.values()):
            if session.owns(guild_id):
                self._send_event(session, name, data, intent)

    def _send_event(
        self, session: GatewaySession, name: str, data: dict[str, Any], intent: int
    ) -> None:
        if intent and not session.intents & intent:
            return
        session.seq += 1
        event = {"op": 0, "t": name, "s": session.seq, "d": data}
        session.events.append(event)
        if session.connection is not None:
            session.connection.send(event)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        connection = _Connection(ws, request.query.get("compress"), request.path)
        self._open.add(connection)
        self.connections.append({"path": request.path, "compress": request.query.get("compress")})
        session: GatewaySession | None = None
        try:
            connection.send({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op, data = frame.get("op"), frame.get("d")
                if op == 1:
                    self.heartbeats += 1
                    connection.send({"op": 11})
                elif op == 2:
                    session = await self._identify(connection, data)
                elif op == 6:
                    session = await self._resume(connection, data)
                elif op == 8 and session is not None:
                    self._members_chunk(session, data)
                # op 3 (presence) and 4 (voice) need no answer
                await self._notify()
        finally:
            self._open.discard(connection)
            if session is not None and session.connection is connection:
                session.connection = None
            await connection.close()
            await self._notify()
        return ws

    async def _refuse(self, connection: _Connection, code: int, reason: str) -> None:
        self.closes.append((code, reason))
        await connection.ws.close(code=code, message=reason.encode())

    async def _identify(
        self, connection: _Connection, data: dict[str, Any]
    ) -> GatewaySession | None:
        if data.get("token") not in (self.token, f"Bot {self.token}"):
            await self._refuse(connection, 4004, "Authentication failed.")
            return None
        intents = int(data.get("intents", 0))
        if intents & PRIVILEGED_INTENTS & ~self.privileged_intents:
            await self._refuse(connection, 4014, "Disallowed intent(s).")
            return None
        shard = _valid_shard(data.get("shard", (0, 1)))
        if shard is None:
            await self._refuse(connection, 4010, "Invalid shard.")
            return None
        owned = [g for g in self.guilds if shard_of(g, shard[1]) == shard[0]]
        if len(owned) > self.max_guilds_per_shard:
            await self._refuse(connection, 4011, "Sharding required.")
            return None
        older = self.live.get(shard)
        if older is not None and older.connection is not None:
            older.connection = None  # an older client of this shard no longer gets events
        if self.identify_gate is not None:
            await self.identify_gate.wait()
        session = GatewaySession(self.snowflake(), dict(data), connection=connection)
        self.sessions.append(session)
        self.live[shard] = session
        self.ready = False
        ready: dict[str, Any] = {
            "v": 10,
            "user": self.bot_user(),
            "guilds": [{"id": g, "unavailable": True} for g in owned],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": self.application_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "auth": {},
        }
        if "shard" in data:
            ready["shard"] = data["shard"]
        self._dispatch_event("READY", ready, to=session)
        with_members = bool(intents & INTENT_GUILD_MEMBERS)
        for guild_id in owned:
            payload = self.guilds[guild_id].payload(with_members=with_members)
            self._dispatch_event("GUILD_CREATE", payload, INTENT_GUILDS, to=session)
        self.ready = True
        return session

    async def _resume(self, connection: _Connection, data: dict[str, Any]) -> GatewaySession | None:
        session = next((s for s in self.sessions if s.id == data.get("session_id")), None)
        if session is None or data.get("token") not in (self.token, f"Bot {self.token}"):
            connection.send({"op": 9, "d": False})
            return None
        session.connection = connection
        session.resumes += 1
        seen = int(data.get("seq") or 0)
        for event in session.events:
            if event["s"] > seen:
                connection.send(event)
        session.seq += 1
        connection.send({"op": 0, "t": "RESUMED", "s": session.seq, "d": {}})
        return session

    def _members_chunk(self, session: GatewaySession, data: dict[str, Any]) -> None:
        guild = self.guilds.get(str(data.get("guild_id")))
        if guild is None or not session.intents & INTENT_GUILD_MEMBERS:
            return
        chunk = {
            "guild_id": guild.id,
            "members": [guild.bot_member_payload()]
            + [m.member_payload() for m in guild.members.values()],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        self._dispatch_event("GUILD_MEMBERS_CHUNK", chunk, to=session)

    def _delete_event(self, message: Message) -> dict[str, Any]:
        event = {"id": message.id, "channel_id": message.channel.id}
        if message.channel.guild is not None:
            event["guild_id"] = message.channel.guild.id
        return event

    # --- the CDN ------------------------------------------------------------------------------

    async def _download(self, request: web.Request) -> web.Response:
        stored = self._files.get(request.match_info["id"])
        if stored is None or stored.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        self.downloads.append(stored.id)
        await self._notify()
        return web.Response(body=stored.data, content_type=stored.content_type)

    # --- REST ----------------------------------------------------------------------------------

    def _route_table(self) -> list[tuple[str, re.Pattern[str], str, bool, _Handler]]:
        table: list[tuple[str, str, bool, _Handler]] = [
            ("GET", "/gateway", False, self._get_gateway),
            ("GET", "/gateway/bot", True, self._get_gateway_bot),
            ("GET", "/users/@me", True, self._get_me),
            ("POST", "/users/@me/channels", True, self._open_dm),
            ("GET", "/users/{user_id}", True, self._get_user),
            ("GET", "/oauth2/applications/@me", True, self._get_application),
            ("GET", "/applications/@me", True, self._get_application),
            ("GET", "/applications/{application_id}/commands", True, self._get_commands),
            ("PUT", "/applications/{application_id}/commands", True, self._put_commands),
            ("POST", "/applications/{application_id}/commands", True, self._post_command),
            ("DELETE", "/applications/{application_id}/commands/{command_id}", True, self._delete_command),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", True, self._get_commands),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", True, self._put_commands),
            ("POST", "/applications/{application_id}/guilds/{guild_id}/commands", True, self._post_command),
            ("DELETE", "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}", True, self._delete_command),
            ("GET", "/applications/{application_id}/skus", True, self._get_skus),
            ("GET", "/applications/{application_id}/entitlements", True, self._list_entitlements),
            ("POST", "/applications/{application_id}/entitlements", True, self._create_entitlement),
            ("GET", "/applications/{application_id}/entitlements/{entitlement_id}", True, self._get_entitlement),
            ("POST", "/applications/{application_id}/entitlements/{entitlement_id}/consume", True, self._consume_entitlement),
            ("POST", "/interactions/{interaction_id}/{token}/callback", False, self._callback),
            ("POST", "/webhooks/{application_id}/{token}", False, self._followup),
            ("GET", "/webhooks/{application_id}/{token}/messages/@original", False, self._get_webhook_message),
            ("PATCH", "/webhooks/{application_id}/{token}/messages/@original", False, self._edit_webhook_message),
            ("DELETE", "/webhooks/{application_id}/{token}/messages/@original", False, self._delete_webhook_message),
            ("GET", "/webhooks/{application_id}/{token}/messages/{message_id}", False, self._get_webhook_message),
            ("PATCH", "/webhooks/{application_id}/{token}/messages/{message_id}", False, self._edit_webhook_message),
            ("DELETE", "/webhooks/{application_id}/{token}/messages/{message_id}", False, self._delete_webhook_message),
            ("GET", "/channels/{channel_id}", True, self._get_channel),
            ("GET", "/channels/{channel_id}/messages", True, self._list_messages),
            ("POST", "/channels/{channel_id}/messages", True, self._post_message),
            ("GET", "/channels/{channel_id}/messages/{message_id}", True, self._get_message),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", True, self._edit_message),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", True, self._delete_message),
            ("POST", "/channels/{channel_id}/typing", True, self._typing),
            ("GET", "/guilds/{guild_id}", True, self._get_guild),
            ("GET", "/guilds/{guild_id}/channels", True, self._get_guild_channels),
            ("GET", "/guilds/{guild_id}/roles", True, self._get_roles),
            ("GET", "/guilds/{guild_id}/members/{user_id}", True, self._get_member),
        ]  # fmt: skip
        compiled = []
        for method, template, auth, handler in table:
            pattern = re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
            pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
            compiled.append(
                (method, re.compile(f"^{pattern}$"), f"{method} {template}", auth, handler)
            )
        return compiled

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        method = request.method
        matches = (
            (found, route, auth, handler)
            for route_method, pattern, route, auth, handler in self._routes
            if route_method == method and (found := pattern.match(path)) is not None
        )
        hit = next(matches, None)
        if hit is None:
            return _json({"message": "404: Not Found", "code": 0}, status=404)
        found, route, auth, handler = hit
        call = ApiCall(len(self.calls), method, path, route, found.groupdict(), dict(request.query))
        limits: dict[str, str] = {}
        try:
            if request.match_info["version"] != "10":
                raise DiscordError(0, f"Unsupported API version {request.match_info['version']}")
            if auth and request.headers.get("Authorization") != f"Bot {self.token}":
                raise DiscordError(0, "401: Unauthorized", status=401)
            call.json, files = await _read_body(request)
            call.files = [
                StoredFile("", filename, data, "application/octet-stream", len(data), "")
                for _, filename, data in files
            ]
            refused = self.uploads_refused
            if call.files and (refused() if callable(refused) else refused):
                call.status = self.upload_outage_status
                await self._record(call)
                reason = _REASONS.get(call.status, "Error")
                return web.Response(status=call.status, text=f"{call.status}: {reason}")
            failure = self._take_failure(call)
            if failure is not None:
                return await self._answer_failure(call, failure)
            verdict = self.rate_limits.take(route, call.params)
            if verdict.refused:
                call.status = 429
                await self._record(call)
                return _json(verdict.body(), status=429, headers=verdict.headers)
            limits = verdict.headers
            call.result = await handler(_Request(call, files))
        except DiscordError as error:
            call.status, call.code = error.status, error.code
            await self._record(call)
            return _json(error.body(), status=error.status, headers=limits)
        except Exception as error:  # a bug of the stand-in: fail the test, not just the call
            self.internal_errors.append(error)
            call.status = 500
            await self._record(call)
            return _json({"message": f"stand-in error: {error!r}", "code": 0}, status=400)
        if call.result is None:
            call.status = 204
            await self._record(call)
            return web.Response(status=204, headers=limits)
        await self._record(call)
        return _json(call.result, headers=limits)

    async def _record(self, call: ApiCall) -> None:
        self.calls.append(call)
        await self._notify()

    def _take_failure(self, call: ApiCall) -> Failure | None:
        for failure in self._failures:
            if failure.route == call.route and (failure.where is None or failure.where(call)):
                self._failures.remove(failure)
                return failure
        return None

    async def _answer_failure(self, call: ApiCall, failure: Failure) -> web.Response:
        call.status, call.code = failure.status, failure.code
        await self._record(call)
        body: dict[str, Any] = {"message": failure.message, "code": failure.code}
        headers: dict[str, str] = {}
        if failure.retry_after is not None:
            body.update(retry_after=failure.retry_after, **{"global": failure.is_global})
            headers = too_many_headers(failure.retry_after, is_global=failure.is_global)
            if not failure.is_global:
                headers |= bucket_headers("injected", 5, 0, failure.retry_after)
        return _json(body, status=failure.status, headers=headers)

    # --- gateway, users, application -----------------------------------------------------------

    async def _get_gateway(self, request: _Request) -> Any:
        return {"url": self.gateway_url}

    async def _get_gateway_bot(self, request: _Request) -> Any:
        limit = {"total": 1000, "remaining": 999, "reset_after": 86_400_000, "max_concurrency": 1}
        shards = max(1, -(-len(self.guilds) // RECOMMENDED_GUILDS_PER_SHARD))
        return {"url": self.gateway_url, "shards": shards, "session_start_limit": limit}

    async def _get_me(self, request: _Request) -> Any:
        return self.bot_user()

    async def _get_user(self, request: _Request) -> Any:
        user_id = request.call.params["user_id"]
        if user_id == self.bot_id:
            return self.bot_user()
        if user_id not in self.users:
            raise DiscordError(10013, "Unknown User", status=404)
        return self.users[user_id].user_payload()

    async def _open_dm(self, request: _Request) -> Any:
        user = self.users.get(str((request.call.json or {}).get("recipient_id")))
        if user is None:
            raise DiscordError(10013, "Unknown User", status=404)
        return user.dm_channel.payload()

    async def _get_application(self, request: _Request) -> Any:
        return {
            "id": self.application_id,
            "name": self.bot_name,
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": {"id": "1", "username": "owner", "discriminator": "0", "avatar": None},
            "verify_key": "0" * 64,
            "flags": 0,
            "bot": self.bot_user(),
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "tags": [],
        }

    # --- application commands --------------------------------------------------------------

    def _command_scope(self, request: _Request) -> str | None:
        params = request.call.params
        if params["application_id"] != self.application_id:
            raise DiscordError(10002, "Unknown Application", status=404)
        guild_id = params.get("guild_id")
        if guild_id is not None and guild_id not in self.guilds:
            raise DiscordError(50001)
        return guild_id

    async def _get_commands(self, request: _Request) -> Any:
        return list(self.commands.get(self._command_scope(request), {}).values())

    async def _put_commands(self, request: _Request) -> Any:
        scope = self._command_scope(request)
        definitions = request.call.json or []
        for index, definition in enumerate(definitions):
            _check_command(definition, [index])
        current = self.commands.get(scope, {})
        created = [d["name"] for d in definitions if d["name"] not in current]
        self._count_creations(scope, len(created))
        commands = {}
        for definition in definitions:
            previous = current.get(definition["name"])
            commands[definition["name"]] = self._command(scope, definition, previous)
        self.commands[scope] = commands
        self.command_syncs.append(CommandSync(scope, list(commands), created, self.now()))
        return list(commands.values())

    async def _post_command(self, request: _Request) -> Any:
        scope = self._command_scope(request)
        definition = request.call.json or {}
        _check_command(definition, [])
        current = self.commands.setdefault(scope, {})
        previous = current.get(definition["name"])
        if previous is None:
            self._count_creations(scope, 1)
        current[definition["name"]] = self._command(scope, definition, previous)
        return current[definition["name"]]

    async def _delete_command(self, request: _Request) -> Any:
        scope = self._command_scope(request)
        commands = self.commands.get(scope, {})
        for name, command in list(commands.items()):
            if command["id"] == request.call.params["command_id"]:
                del commands[name]
                return None
        raise DiscordError(10063, "Unknown application command", status=404)

    def _count_creations(self, scope: str | None, created: int) -> None:
        day = int(self.now() // 86_400)
        done = self.command_creations.get((scope, day), 0)
        if created and done + created > DAILY_COMMAND_CREATES:
            raise DiscordError(30034)
        self.command_creations[(scope, day)] = done + created

    def _command(
        self, scope: str | None, definition: dict[str, Any], previous: dict[str, Any] | None
    ) -> dict[str, Any]:
        command = {
            "type": 1,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            "name_localizations": None,
            "description_localizations": None,
            **definition,
            "id": previous["id"] if previous else self.snowflake(),
            "application_id": self.application_id,
            "version": self.snowflake(),
        }
        if scope is not None:
            command["guild_id"] = scope
        return command

    # --- interaction callbacks and webhooks ------------------------------------------------

    # --- monetization: SKUs and entitlements ----------------------------------------------

    def _application(self, request: _Request) -> None:
        if request.call.params["application_id"] != self.application_id:
            raise DiscordError(10002)

    async def _get_skus(self, request: _Request) -> Any:
        self._application(request)
        return list(self.skus.values())

    def _entitlement(self, request: _Request) -> Entitlement:
        self._application(request)
        entitlement = self.entitlements.get(request.call.params["entitlement_id"])
        if entitlement is None:
            raise DiscordError(10029)
        return entitlement

    async def _list_entitlements(self, request: _Request) -> Any:
        self._application(request)
        query = request.call.query
        snowflakes = {
            name: _query_snowflake(query, name)
            for name in ("user_id", "before", "after", "guild_id")
        }
        sku_ids = None
        if "sku_ids" in query:
            sku_ids = set(query["sku_ids"].split(","))
            if not all(item.isdigit() for item in sku_ids):
                raise _invalid(["sku_ids"], "NUMBER_TYPE_COERCE", "Value is not snowflake.")
        limit = query.get("limit", str(MAX_ENTITLEMENTS_PAGE))
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_ENTITLEMENTS_PAGE:
            raise _invalid(
                ["limit"],
                "NUMBER_TYPE_MAX" if limit.isdigit() else "NUMBER_TYPE_COERCE",
                f"int value should be between 1 and {MAX_ENTITLEMENTS_PAGE}.",
            )
        exclude_ended = _query_bool(query, "exclude_ended", False)
        exclude_deleted = _query_bool(query, "exclude_deleted", True)
        now = time.time()
        chosen = [
            e
            for e in sorted(self.entitlements.values(), key=lambda e: int(e.id))
            if (snowflakes["user_id"] is None or e.user_id == snowflakes["user_id"])
            and (snowflakes["guild_id"] is None or e.guild_id == snowflakes["guild_id"])
            and (sku_ids is None or e.sku_id in sku_ids)
            and not (exclude_ended and e.ended(now))
            and not (exclude_deleted and e.deleted)
        ]
        if snowflakes["before"] is not None:
            chosen = [e for e in chosen if int(e.id) < int(snowflakes["before"])][-int(limit) :]
        else:
            after = int(snowflakes["after"] or 0)
            chosen = [e for e in chosen if int(e.id) > after][: int(limit)]
        return [e.payload() for e in chosen]

    async def _get_entitlement(self, request: _Request) -> Any:
        return self._entitlement(request).payload()

    async def _create_entitlement(self, request: _Request) -> Any:
        self._application(request)
        body = request.call.json
        if not isinstance(body, dict):
            raise _invalid([], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        for name in ("sku_id", "owner_id", "owner_type"):
            if name not in body:
                raise _invalid([name], "BASE_TYPE_REQUIRED", "This field is required")
        sku_id, owner_id = str(body["sku_id"]), str(body["owner_id"])
        if sku_id not in self.skus:
            raise DiscordError(10027)
        if body["owner_type"] == 1:
            if owner_id not in self.guilds:
                raise DiscordError(10004, "Unknown Guild", status=404)
            entitlement = Entitlement(
                self.snowflake(), sku_id, self.application_id, None,
                ENTITLEMENT_TEST_MODE_PURCHASE, guild_id=owner_id,
            )  # fmt: skip
        elif body["owner_type"] == 2:
            if owner_id not in self.users:
                raise DiscordError(10013, "Unknown User", status=404)
            entitlement = Entitlement(
                self.snowflake(), sku_id, self.application_id, owner_id,
                ENTITLEMENT_TEST_MODE_PURCHASE,
            )  # fmt: skip
        else:
            raise _invalid(["owner_type"], "BASE_TYPE_CHOICES", "Value must be one of {1, 2}.")
        self.entitlements[entitlement.id] = entitlement
        self.redeliver(entitlement)
        return entitlement.payload()

    async def _consume_entitlement(self, request: _Request) -> Any:
        entitlement = self._entitlement(request)
        if request.call.json not in (None, {}):
            raise _invalid([], "BASE_TYPE_BAD", "This endpoint takes no body")
        sku = self.skus.get(entitlement.sku_id)
        if entitlement.consumed or sku is None or sku["type"] != SKU_CONSUMABLE:
            raise DiscordError(40074)
        entitlement.consumed = True
        entitlement.consumes += 1
        return None

    # --- interactions ------------------------------------------------------------------------

    async def _callback(self, request: _Request) -> Any:
        params = request.call.params
        interaction = self.interactions.get(params["interaction_id"])
        if interaction is None or interaction.token != params["token"]:
            raise DiscordError(10062)
        if self.now() - interaction.created_at > self.ack_deadline_s:
            raise DiscordError(10062)
        if interaction.acknowledged:
            raise DiscordError(40060)
        body = request.call.json or {}
        kind = body.get("type")
        data = body.get("data") or {}
        component_only = kind in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE)
        if kind not in (
            CHANNEL_MESSAGE,
            DEFERRED_CHANNEL_MESSAGE,
            DEFERRED_UPDATE_MESSAGE,
            UPDATE_MESSAGE,
            9,
        ) or (component_only and interaction.type != MESSAGE_COMPONENT):
            raise _invalid(
                ["type"], "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type"
            )
        if kind in (CHANNEL_MESSAGE, UPDATE_MESSAGE):
            _check_content(
                data,
                request.files,
                interaction.attachment_size_limit,
                ["data"],
                creating=kind == CHANNEL_MESSAGE,
                skus=self.skus,
            )
        interaction.ack_type, interaction.acked_at, interaction.callback = kind, self.now(), body
        message: Message | None = None
        if kind == CHANNEL_MESSAGE:
            message = self._new_message(
                interaction.channel, data, request.files, "interaction", interaction
            )
        elif kind == DEFERRED_CHANNEL_MESSAGE:
            flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
            message = self._new_message(
                interaction.channel, {"flags": flags}, [], "interaction", interaction
            )
        elif kind in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE):
            message = interaction.source
            if kind == UPDATE_MESSAGE and message is not None:
                self._apply_edit(message, data, request.files, "interaction", interaction)
        interaction.original = message
        if request.call.query.get("with_response") not in ("1", "true", "True"):
            return None
        answer: dict[str, Any] = {"interaction": {"id": interaction.id, "type": interaction.type}}
        if message is not None:
            answer["interaction"].update(
                response_message_id=message.id,
                response_message_loading=message.loading,
                response_message_ephemeral=message.ephemeral,
            )
            if kind != DEFERRED_UPDATE_MESSAGE:
                answer["resource"] = {"type": kind, "message": message.payload(self)}
        return answer

    def _webhook_interaction(self, request: _Request) -> Interaction:
        params = request.call.params
        if params["application_id"] != self.application_id:
            raise DiscordError(10015)
        interaction = self._by_token.get(params["token"])
        if interaction is None or self.now() - interaction.created_at > self.token_lifetime_s:
            raise DiscordError(50027)
        if not interaction.acknowledged:
            raise DiscordError(10015)
        return interaction

    def _webhook_message(self, request: _Request, interaction: Interaction) -> Message:
        message_id = request.call.params.get("message_id", "@original")
        if message_id == "@original":
            message = interaction.original
        else:
            owned = [interaction.original, *interaction.followups]
            message = next((m for m in owned if m is not None and m.id == message_id), None)
        if message is None or message.deleted:
            raise DiscordError(10008)
        return message

    async def _followup(self, request: _Request) -> Any:
        interaction = self._webhook_interaction(request)
        data = request.call.json or {}
        _check_content(
            data,
            request.files,
            interaction.attachment_size_limit,
            [],
            creating=True,
            skus=self.skus,
        )
        original = interaction.original
        if original is not None and original.loading and not original.deleted:
            # The first follow-up after a deferred reply resolves its "thinking" message, which
            # stays as private or public as the defer made it (Discord keeps this for old bots).
            self._apply_edit(original, data, request.files, "interaction", interaction)
            message = original
        else:
            message = self._new_message(
                interaction.channel, data, request.files, "interaction", interaction
            )
            interaction.followups.append(message)
        if request.call.query.get("wait") in ("1", "true", "True"):
            return message.payload(self)
        return None

    async def _get_webhook_message(self, request: _Request) -> Any:
        interaction = self._webhook_interaction(request)
        return self._webhook_message(request, interaction).payload(self)

    async def _edit_webhook_message(self, request: _Request) -> Any:
        interaction = self._webhook_interaction(request)
        message = self._webhook_message(request, interaction)
        data = request.call.json or {}
        _check_content(
            data,
            request.files,
            interaction.attachment_size_limit,
            [],
            creating=False,
            skus=self.skus,
        )
        self._apply_edit(message, data, request.files, "interaction", interaction)
        return message.payload(self)

    async def _delete_webhook_message(self, request: _Request) -> Any:
        interaction = self._webhook_interaction(request)
        message = self._webhook_message(request, interaction)
        message.deleted = True
        return None

    # --- channels and messages ---------------------------------------------------------------

    def _channel(self, request: _Request) -> Channel:
        channel = self.channels.get(request.call.params["channel_id"])
        if channel is None:
            raise DiscordError(10003)
        if not channel.visible:
            raise DiscordError(50001)
        return channel

    def _channel_message(self, request: _Request, channel: Channel) -> Message:
        message = self.messages.get(request.call.params["message_id"])
        if (
            message is None
            or message.channel is not channel
            or message.deleted
            or message.ephemeral
        ):
            raise DiscordError(10008)
        return message

    async def _get_channel(self, request: _Request) -> Any:
        return self._channel(request).payload()

    async def _list_messages(self, request: _Request) -> Any:
        channel = self._channel(request)
        limit = int(request.call.query.get("limit", 50))
        shown = [m for m in self.messages_in(channel) if not m.ephemeral]
        return [m.payload(self) for m in reversed(shown)][:limit]

    async def _post_message(self, request: _Request) -> Any:
        channel = self._channel(request)
        if channel.recipient is not None and not channel.recipient.accepts_dms:
            raise DiscordError(50007)
        allowed = self._bot_permissions_in(channel)
        if not allowed & (SEND_MESSAGES_IN_THREADS if channel.is_thread else SEND_MESSAGES):
            raise DiscordError(50013)
        data = request.call.json or {}
        _check_content(data, request.files, channel.upload_limit, [], creating=True, skus=self.skus)
        if request.files and not allowed & ATTACH_FILES:
            raise DiscordError(50013)
        data = {**data, "flags": int(data.get("flags") or 0) & ~(EPHEMERAL | LOADING)}
        return self._new_message(channel, data, request.files, "channel", None).payload(self)

    async def _get_message(self, request: _Request) -> Any:
        channel = self._channel(request)
        return self._channel_message(request, channel).payload(self)

    async def _edit_message(self, request: _Request) -> Any:
        channel = self._channel(request)
        message = self._channel_message(request, channel)
        if message.author is not None:
            raise DiscordError(50005)
        data = request.call.json or {}
        _check_content(
            data, request.files, channel.upload_limit, [], creating=False, skus=self.skus
        )
        self._apply_edit(message, data, request.files, "channel", None)
        return message.payload(self)

    async def _delete_message(self, request: _Request) -> Any:
        channel = self._channel(request)
        message = self._channel_message(request, channel)
        message.deleted = True
        return None

    async def _typing(self, request: _Request) -> Any:
        self._channel(request)
        return None

    # --- guilds --------------------------------------------------------------------------------

    def _guild(self, request: _Request) -> Guild:
        guild = self.guilds.get(request.call.params["guild_id"])
        if guild is None:
            raise DiscordError(10004, "Unknown Guild", status=404)
        return guild

    async def _get_guild(self, request: _Request) -> Any:
        payload = self._guild(request).payload(with_members=False)
        for key in ("members", "channels", "threads", "voice_states", "presences", "joined_at"):
            payload.pop(key)
        return payload

    async def _get_guild_channels(self, request: _Request) -> Any:
        return [c.payload() for c in self._guild(request).channels.values() if not c.is_thread]

    async def _get_roles(self, request: _Request) -> Any:
        guild = self._guild(request)
        return [r.payload() for r in guild.roles.values()] + [guild._bot_role()]

    async def _get_member(self, request: _Request) -> Any:
        guild = self._guild(request)
        user_id = request.call.params["user_id"]
        if user_id == self.bot_id:
            return guild.bot_member_payload()
        if user_id not in guild.members:
            raise DiscordError(10007, "Unknown Member", status=404)
        return guild.members[user_id].member_payload()

    # --- messages ------------------------------------------------------------------------------

    def _new_message(
        self,
        channel: Channel,
        data: dict[str, Any],
        files: list[tuple[str, str, bytes]],
        via: str,
        interaction: Interaction | None,
    ) -> Message:
        message = Message(
            id=self.snowflake(),
            channel=channel,
            content=data.get("content") or "",
            components=data.get("components") or [],
            embeds=data.get("embeds") or [],
            attachments=self._uploads(channel, data, files),
            flags=int(data.get("flags") or 0),
            via=via,
            created_at=self.now(),
            interaction=interaction,
            reference=data.get("message_reference"),
            allowed_mentions=data.get("allowed_mentions"),
        )
        self.messages[message.id] = message
        return message

    def _apply_edit(
        self,
        message: Message,
        data: dict[str, Any],
        files: list[tuple[str, str, bytes]],
        via: str,
        interaction: Interaction | None,
    ) -> None:
        if "content" in data:
            message.content = data["content"] or ""
        if "components" in data:
            message.components = data["components"] or []
        if "embeds" in data:
            message.embeds = data["embeds"] or []
        if "allowed_mentions" in data:
            message.allowed_mentions = data["allowed_mentions"]
        if "flags" in data:  # an edit may change only these; ephemeral stays as it was made
            new = int(data["flags"] or 0)
            message.flags = (message.flags & ~EDITABLE_FLAGS) | (new & EDITABLE_FLAGS)
        message.flags &= ~LOADING  # any edit resolves a deferred reply
        if "attachments" in data:
            kept = {str(a.get("id")) for a in data["attachments"] or []}
            message.attachments = [a for a in message.attachments if a.id in kept]
        message.attachments += self._uploads(message.channel, data, files)
        message.edited_at = _iso()
        edit = Edit(via, self.now(), message.content, interaction.id if interaction else None)
        message.edits.append(edit)
        if interaction is not None:
            interaction.edits.append(edit)

    def _uploads(
        self, channel: Channel, data: dict[str, Any], files: list[tuple[str, str, bytes]]
    ) -> list[StoredFile]:
        """Store uploaded ``files[n]`` parts, named as the payload's ``attachments`` entry n says."""
        names = {}
        for entry in data.get("attachments") or []:
            with contextlib.suppress(TypeError, ValueError):
                names[int(entry["id"])] = entry.get("filename")
        stored = []
        for index, (form_name, filename, blob) in enumerate(files):
            number = _file_index(form_name, index)
            stored.append(self._store_file(channel.id, names.get(number) or filename, blob))
        return stored


# --- request checks ---------------------------------------------------------------------------


def _check_content(
    data: dict[str, Any],
    files: list[tuple[str, str, bytes]],
    upload_limit: int,
    path: list[str | int],
    *,
    creating: bool,
    skus: Mapping[str, Any],
) -> None:
    """What Discord refuses in a message body: size, content length, components, emptiness."""
    if sum(len(blob) for _, _, blob in files) > upload_limit:
        raise DiscordError(40005)
    content = data.get("content")
    if content is not None and len(content) > MAX_CONTENT:
        raise _invalid(
            [*path, "content"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."
        )
    embeds = data.get("embeds")
    if embeds is not None and len(embeds) > 10:
        raise _invalid([*path, "embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    components = data.get("components")
    if components:
        v2 = bool(int(data.get("flags") or 0) & COMPONENTS_V2)
        _check_components(components, [*path, "components"], top=not v2, skus=skus)
    if creating and not (
        content or embeds or files or components or data.get("poll") or data.get("sticker_ids")
    ):
        raise DiscordError(50006)


def _check_components(
    components: list[dict[str, Any]],
    path: list[str | int],
    *,
    top: bool,
    skus: Mapping[str, Any],
) -> None:
    if top and len(components) > MAX_ROWS:
        raise _invalid(path, "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_ROWS} or fewer in length.")
    seen: set[str] = set()
    for where, component in _walk_with_path(components, path):
        kind = component.get("type")
        if kind == 1 and len(component.get("components", [])) > MAX_ROW_ITEMS:
            raise _invalid(
                [*where, "components"],
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {MAX_ROW_ITEMS} or fewer in length.",
            )
        custom_id = component.get("custom_id")
        if custom_id is not None:
            if len(custom_id) > MAX_CUSTOM_ID:
                raise _invalid(
                    [*where, "custom_id"],
                    "BASE_TYPE_MAX_LENGTH",
                    f"Must be {MAX_CUSTOM_ID} or fewer in length.",
                )
            if custom_id in seen:
                raise _invalid(
                    [*where, "custom_id"],
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                )
            seen.add(custom_id)
        if kind == 2:
            label = component.get("label")
            if label is not None and len(label) > MAX_BUTTON_LABEL:
                raise _invalid(
                    [*where, "label"],
                    "BASE_TYPE_MAX_LENGTH",
                    f"Must be {MAX_BUTTON_LABEL} or fewer in length.",
                )
            if component.get("style") == 6:
                _check_premium(component, where, skus)
            if component.get("style") != 5 and component.get("style") != 6 and not custom_id:
                raise _invalid(
                    [*where, "custom_id"], "BASE_TYPE_REQUIRED", "This field is required"
                )


def _check_premium(
    component: dict[str, Any], where: list[str | int], skus: Mapping[str, Any]
) -> None:
    """A premium button: one of the application's SKUs, and nothing Discord draws itself."""
    sku_id = str(component.get("sku_id") or "")
    if not sku_id.isdigit():
        raise _invalid([*where, "sku_id"], "BASE_TYPE_REQUIRED", "This field is required")
    if sku_id not in skus:
        raise _invalid([*where, "sku_id"], "COMPONENT_INVALID_SKU", "Unknown SKU.")
    for name in ("custom_id", "label", "url", "emoji"):
        if component.get(name) is not None:
            raise _invalid(
                [*where, name],
                "BUTTON_COMPONENT_PREMIUM_INVALID_FIELD",
                f"A premium button cannot have a {name}.",
            )


def _query_snowflake(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name)
    if value is not None and not value.isdigit():
        raise _invalid([name], "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')
    return value


def _query_bool(query: Mapping[str, str], name: str, default: bool) -> bool:
    value = query.get(name)
    if value is None:
        return default
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise _invalid([name], "BOOLEAN_TYPE_COERCE", f'Value "{value}" is not a boolean.')


def _check_command(definition: dict[str, Any], path: list[str | int]) -> None:
    name = definition.get("name") or ""
    if not re.fullmatch(r"[-_\w]{1,32}", name) or name != name.lower():
        raise _invalid(
            [*path, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
        )
    if definition.get("type", 1) == 1 and not 1 <= len(definition.get("description") or "") <= 100:
        raise _invalid(
            [*path, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
        )
    if len(definition.get("options") or []) > 25:
        raise _invalid([*path, "options"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")


def _valid_shard(value: Any) -> tuple[int, int] | None:
    """``[shard id, shard count]`` as Discord accepts it, or None (it closes 4010)."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    shard_id, count = value
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in value):
        return None
    if count < 1 or not 0 <= shard_id < count:
        return None
    return shard_id, count


def _walk(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for _, component in _walk_with_path(components, []):
        yield component


def _walk_with_path(
    components: list[dict[str, Any]], path: list[str | int]
) -> Iterator[tuple[list[str | int], dict[str, Any]]]:
    for index, component in enumerate(components):
        where = [*path, index]
        yield where, component
        children = component.get("components")
        if isinstance(children, list):
            yield from _walk_with_path(children, [*where, "components"])
        accessory = component.get("accessory")
        if isinstance(accessory, dict):
            yield [*where, "accessory"], accessory


def _file_index(form_name: str, default: int) -> int:
    found = re.fullmatch(r"files\[(\d+)\]", form_name)
    return int(found.group(1)) if found else default


def _option_type(value: Any) -> int:
    """The option type Discord would have declared for a value (when the command is not synced)."""
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    if isinstance(value, Member):
        return 6
    if isinstance(value, Channel):
        return 7
    if isinstance(value, Role):
        return 8
    if isinstance(value, StoredFile):
        return 11
    return 3


async def _read_body(request: web.Request) -> tuple[Any, list[tuple[str, str, bytes]]]:
    """The JSON body, or multipart ``payload_json`` and its ``files[n]`` parts."""
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        payload: Any = None
        files = []
        for name, value in form.items():
            if isinstance(value, web.FileField):
                files.append((name, value.filename, value.file.read()))
            elif name == "payload_json":
                payload = json.loads(value)
        return payload, files
    raw = await request.read()
    if not raw:
        return None, []
    try:
        return json.loads(raw), []
    except ValueError:
        raise DiscordError(50109, "The request body contains invalid JSON.") from None


def _json(
    body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON answer typed exactly ``application/json``, as discord.py checks (no charset)."""
    data = json.dumps(body, separators=(",", ":")).encode()
    return web.Response(
        body=data, status=status, headers={**(headers or {}), "Content-Type": "application/json"}
    )


# --- pointing a bare discord.py client at the stand-in (tests only) ---------------------------


@contextlib.contextmanager
def discord_py_pointed_at(api_base: str, gateway_url: str) -> Iterator[None]:
    """Point discord.py's REST base and default gateway at the stand-in; restore them after.

    The production adapter must do the equivalent itself from DISCORD_API_BASE and
    DISCORD_GATEWAY_URL (see the module docstring); this helper is for tests.
    """
    import yarl
    from discord.gateway import DiscordWebSocket
    from discord.http import Route

    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = f"{api_base}/v10"
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved
