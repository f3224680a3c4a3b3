"""The Discord client: built by one factory from the settings, run by one context manager.

``build_client(settings, deps)`` makes a discord.py ``Client`` (an
``AutoShardedClient`` with ``DISCORD_SHARD_COUNT``) with its
``CommandTree``: the slash commands, the persistent buttons, the one error
handler, and the outbox for job messages. ``running(client)`` logs in,
syncs the commands if their definitions changed (only the process holding
shard 0 does, when there are shards), connects to the gateway,
waits for it to be ready and registers the Discord outbox with the job
runner; on exit it lets status edits on their way finish and closes the
connection. The caller starts the job runner once every adapter is up, and
stops it before leaving ``running`` (see ``app.cli``). Nothing here calls
``client.run()``: the process's event loop belongs to ``app.cli``.

Intents: only ``guilds`` (not privileged), for the servers' channels,
threads, roles and upload limits. Slash commands and button presses arrive
as interactions, which need no intent; the bot never reads message content
or member lists.

``DISCORD_API_BASE`` and ``DISCORD_GATEWAY_URL`` route REST and gateway
traffic through an operator's proxy. discord.py keeps both addresses on
classes (``Route.BASE``, ``DiscordWebSocket.DEFAULT_GATEWAY``), so
``running`` sets them for as long as the bot runs (one Discord bot per
process) and puts them back after.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field

import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord.buttons import ActionButton
from adapters.discord.chats import PLATFORM, CommunityServers
from adapters.discord.commands import CatalogTranslator, build_commands, sync_commands
from adapters.discord.errors import install_redaction, report, secrets_of
from adapters.discord.handlers import ACK_BUDGET_S, Handlers
from adapters.discord.outbox import ChannelFacts, DiscordOutbox
from adapters.discord.pace import ChannelPace
from adapters.discord.purchases import Purchases
from bot.deps import Deps
from bot.pacing import ChatTurns
from bot.roles import DISCORD_GATEWAY, Role, serve_role
from bot.settings import Settings

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
"""How long the gateway may take to say READY (and send the servers) at start."""
IDENTIFY_SPACING_S = 5.0
"""Between two shards' IDENTIFYs: Discord takes one per 5 s from a bot without large sharding."""


@dataclass
class DiscordAdapter:
    """The parts of the adapter a client carries."""

    settings: Settings
    deps: Deps
    handlers: Handlers
    outbox: DiscordOutbox
    facts: ChannelFacts
    secrets: tuple[str, ...]
    purchases: Purchases
    connection: asyncio.Future[None] | None = None
    """Ends only if Discord gives up on the gateway connection (set by ``running``)."""
    gateway_role: Role | None = None
    """Without shards: the role whose holder connects the gateway (None: always connected)."""
    gateway_up: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while this process is connected to the gateway."""
    gateway_down: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while it is not (a standby that only uses REST, or stopped)."""

    @property
    def standby(self) -> bool:
        """Another replica holds the gateway: this one only sends and edits (REST)."""
        return self.gateway_role is not None and not self.gateway_role.held


class _Kling:
    """What both clients add to discord.py's: the command tree, the adapter, the buttons."""

    tree: app_commands.CommandTree
    adapter: DiscordAdapter | None
    klingbot_handlers: Handlers | None
    identify_spacing_s: float

    def _set_up(self, identify_spacing_s: float) -> None:
        self.tree = app_commands.CommandTree(self)  # type: ignore[arg-type]
        self.adapter = None
        self.klingbot_handlers = None
        """What :class:`~adapters.discord.buttons.ActionButton` calls when pressed."""
        self.identify_spacing_s = identify_spacing_s

    async def setup_hook(self) -> None:
        """Understand every button sent by any run of the bot (called by ``login``)."""
        self.add_dynamic_items(ActionButton)  # type: ignore[attr-defined]

    async def on_entitlement_create(self, entitlement: discord.Entitlement) -> None:
        """A member paid for a SKU: credit it once, then consume it (``purchases``)."""
        if self.adapter is not None:
            self.adapter.purchases.entitlement_created(entitlement)

    async def on_entitlement_delete(self, entitlement: discord.Entitlement) -> None:
        """Discord refunded (or removed) an entitlement: record the refund once (``purchases``)."""
        if self.adapter is not None:
            self.adapter.purchases.entitlement_deleted(entitlement)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Discord takes one IDENTIFY per 5 s (``max_concurrency`` 1): the next shard waits."""
        if not initial:
            await asyncio.sleep(self.identify_spacing_s)


def _client_options(guild_ready_timeout: float) -> dict:
    # The bot never joins voice: spare the log discord.py's warnings about voice libraries.
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False
    intents = discord.Intents.none()
    intents.guilds = True
    return dict(
        intents=intents,
        allowed_mentions=discord.AllowedMentions.none(),
        max_messages=None,
        member_cache_flags=discord.MemberCacheFlags.none(),
        chunk_guilds_at_startup=False,
        guild_ready_timeout=guild_ready_timeout,
    )


class KlingClient(_Kling, discord.Client):
    """A discord.py client with its command tree and the adapter's parts (one connection)."""

    def __init__(
        self, *, guild_ready_timeout: float, identify_spacing_s: float = IDENTIFY_SPACING_S
    ) -> None:
        super().__init__(**_client_options(guild_ready_timeout))
        self._set_up(identify_spacing_s)


class KlingShardedClient(_Kling, discord.AutoShardedClient):
    """The same on discord.py's sharded client: the shards ``shard_ids`` of ``shard_count``.

    discord.py routes each server's requests through the shard that owns it;
    Discord sends each shard only its servers' events and interactions (DMs
    to shard 0).
    """

    def __init__(
        self,
        *,
        shard_count: int,
        shard_ids: tuple[int, ...],
        guild_ready_timeout: float,
        identify_spacing_s: float = IDENTIFY_SPACING_S,
    ) -> None:
        options = _client_options(guild_ready_timeout)
        super().__init__(shard_count=shard_count, shard_ids=list(shard_ids), **options)
        self._set_up(identify_spacing_s)


AnyKlingClient = KlingClient | KlingShardedClient


def syncs_commands(client: discord.Client) -> bool:
    """Whether this process syncs the commands: it holds shard 0 (or runs without shards).

    Replicas with other shards leave it to that one, so a new version's
    commands are synced once, not once per replica.
    """
    shard_ids = getattr(client, "shard_ids", None)
    return shard_ids is None or 0 in shard_ids


API_VERSION = 10


@contextmanager
def pointed_at(api_base: str | None, gateway_url: str | None) -> Iterator[None]:
    """Within the block, REST goes to ``api_base`` (plus ``/v10``), the gateway to ``gateway_url``.

    Each is changed only when set (Discord's own otherwise); both are put
    back on the way out.
    """
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    if api_base is not None:
        Route.BASE = f"{api_base.rstrip('/')}/v{API_VERSION}"
    if gateway_url is not None:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


def build_client(
    settings: Settings,
    deps: Deps,
    *,
    guild_ready_timeout: float = 2.0,
    ack_budget_s: float = ACK_BUDGET_S,
    pace: ChannelPace | None = None,
    identify_spacing_s: float = IDENTIFY_SPACING_S,
    turns: ChatTurns | None = None,
) -> AnyKlingClient:
    """The bot's discord.py client, from the settings; ``DISCORD_TOKEN`` must be set.

    With ``DISCORD_SHARD_COUNT`` it is the sharded client, connecting the
    shards of ``DISCORD_SHARD_IDS`` (or all). ``guild_ready_timeout`` (how
    long discord.py waits for more servers after the last one at start),
    ``ack_budget_s``, ``pace`` (the channel pacing, on a virtual clock),
    ``identify_spacing_s`` and ``turns`` (the pacing shared with other
    replicas, on a virtual clock; by default ``deps.pace`` on the real one)
    are for tests and benchmarks.
    """
    if settings.discord_token is None:
        raise ValueError("DISCORD_TOKEN is not set")
    token = settings.discord_token.get_secret_value()
    install_redaction(token)
    shards = settings.discord_shards
    client: AnyKlingClient
    if shards is None:
        client = KlingClient(
            guild_ready_timeout=guild_ready_timeout, identify_spacing_s=identify_spacing_s
        )
    else:
        assert settings.discord_shard_count is not None
        client = KlingShardedClient(
            shard_count=settings.discord_shard_count,
            shard_ids=shards,
            guild_ready_timeout=guild_ready_timeout,
            identify_spacing_s=identify_spacing_s,
        )
    facts = ChannelFacts()
    secrets = secrets_of(token)
    purchases = Purchases(client, deps)
    handlers = Handlers(
        deps,
        facts,
        community=CommunityServers(
            frozenset(settings.discord_guild_ids), settings.discord_moderator_role
        ),
        secrets=secrets,
        ack_budget_s=ack_budget_s,
        purchases=purchases,
    )
    for command in build_commands(handlers):
        client.tree.add_command(command)

    @client.tree.error
    async def on_error(
        interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        await report(interaction, error, secrets)

    if turns is None and deps.pace is not None:
        turns = ChatTurns(deps.pace)
    client.adapter = DiscordAdapter(
        settings,
        deps,
        handlers,
        DiscordOutbox(client, facts, pace, turns),
        facts,
        secrets,
        purchases,
    )
    client.klingbot_handlers = handlers
    return client


@asynccontextmanager
async def running(
    client: AnyKlingClient, *, ready_timeout_s: float = READY_TIMEOUT_S
) -> AsyncIterator[DiscordAdapter]:
    """Log in, sync commands if they changed, connect, and route the runner's Discord messages.

    Raises ``discord.LoginFailure`` for a refused token, and the connection's
    error (or TimeoutError) when the gateway does not become ready.
    """
    adapter = client.adapter
    assert adapter is not None
    settings = adapter.settings
    with pointed_at(settings.discord_api_base, settings.discord_gateway_url):
        async with _connected(client, adapter, ready_timeout_s):
            yield adapter


@asynccontextmanager
async def _connected(
    client: AnyKlingClient, adapter: DiscordAdapter, ready_timeout_s: float
) -> AsyncIterator[None]:
    assert adapter.settings.discord_token is not None
    gateway = _Gateway(client, adapter, ready_timeout_s)
    duty: asyncio.Task[None] | None = None
    try:
        await client.login(adapter.settings.discord_token.get_secret_value())
        await client.tree.set_translator(CatalogTranslator())
        if syncs_commands(client):
            await sync_commands(client.tree, adapter.deps.state, adapter.settings.discord_guild_ids)
        if isinstance(client, KlingShardedClient):
            await gateway.start()  # this replica's own shards: always connected
        else:
            duty = await _connect_while_held(gateway, adapter)
        if adapter.deps.generation is not None:
            adapter.deps.generation.outboxes.register(PLATFORM, adapter.outbox)
        adapter.purchases.scan_soon()  # what was bought while the bot was down
        gateway.connected_once = True
        shards = getattr(client, "shard_ids", None)
        log.info(
            "Discord bot %s is up (%s%s)",
            client.user,
            "standby: another replica holds the gateway"
            if adapter.standby
            else f"{len(client.guilds)} servers",
            f", shards {','.join(map(str, shards))} of {client.shard_count}" if shards else "",
        )
        yield
    finally:
        if duty is not None:
            duty.cancel()
            with suppress(asyncio.CancelledError):
                await duty
        await adapter.handlers.drain()
        await adapter.purchases.close()
        await adapter.outbox.drain()
        await gateway.stop()
        await client.close()


async def _connect_while_held(gateway: _Gateway, adapter: DiscordAdapter) -> asyncio.Task[None]:
    """Without shards, one replica at a time holds the gateway (role ``discord-gateway``).

    Discord sends each event and interaction to the sessions of its shard,
    so two replicas connected without shards would both answer every
    press. The holder connects (before this returns, so a refused token or
    an unreachable gateway fails the start, as always); a standby only uses
    REST (sends and edits from the outbox work from any replica) and
    connects when it takes the role over. On SQLite the one runner always
    holds it.
    """
    role = await adapter.deps.roles.claim(DISCORD_GATEWAY)
    adapter.gateway_role = role
    held = role.held
    if held:
        await gateway.start()
    else:
        adapter.gateway_down.set()
        for guild_id in adapter.settings.discord_guild_ids:  # no server cache: ask REST
            await adapter.outbox.learn_guild(guild_id)
    return asyncio.create_task(
        serve_role(role, gateway.start, gateway.stop, started=held), name="discord gateway role"
    )


class _Gateway:
    """Connects and leaves the gateway, keeping the client's REST session (and login) open."""

    def __init__(self, client: AnyKlingClient, adapter: DiscordAdapter, ready_timeout_s: float):
        self.client = client
        self.adapter = adapter
        self.ready_timeout_s = ready_timeout_s
        self.task: asyncio.Task[None] | None = None
        self.gave_up: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        adapter.connection = self.gave_up
        self.connected_once = False
        """Set once the bot is up: a later start is a takeover, which scans entitlements."""

    async def start(self) -> None:
        """Connect and wait for READY; raises what stopped it, or TimeoutError."""
        client, adapter = self.client, self.adapter
        adapter.gateway_down.clear()
        connection = asyncio.create_task(client.connect(reconnect=True), name="discord-gateway")
        ready = asyncio.create_task(client.wait_until_ready())
        done, _ = await asyncio.wait(
            (connection, ready), timeout=self.ready_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            try:
                if connection in done:
                    connection.result()  # raises what stopped it
                raise TimeoutError("the Discord gateway did not become ready")
            finally:
                await self._leave(connection)
        self.task = connection
        connection.add_done_callback(self._ended)
        adapter.gateway_up.set()
        if self.connected_once:  # events sent while no replica held the gateway are lost
            adapter.purchases.scan_soon()

    async def stop(self) -> None:
        """Leave the gateway (another replica takes it); REST stays usable."""
        connection, self.task = self.task, None
        self.adapter.gateway_up.clear()
        if connection is not None:
            connection.remove_done_callback(self._ended)
            await self._leave(connection)
        self.adapter.gateway_down.set()

    async def _leave(self, connection: asyncio.Task[None]) -> None:
        connection.cancel()
        with suppress(Exception, asyncio.CancelledError):
            await connection
        ws = self.client.ws
        if ws is not None and ws.open:
            with suppress(Exception):
                await ws.close(code=1000)
        if not self.client.is_closed():
            self.client._ready.clear()  # the next start waits for a new READY

    def _ended(self, connection: asyncio.Task[None]) -> None:
        """The connection ended by itself: Discord gave up on us (the process stops)."""
        if connection is self.task and not self.gave_up.done():
            if not connection.cancelled() and connection.exception() is not None:
                log.error("the Discord gateway connection failed: %s", connection.exception())
            self.gave_up.set_result(None)
