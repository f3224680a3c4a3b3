"""The Discord adapter, on discord.py: interactions -> core commands -> messages and edits.

``build_client(settings, deps)`` makes the client and ``running(client)``
serves it; ``klingbot run`` does both when ``DISCORD_TOKEN`` is set. See
docs/DISCORD.md.
"""

from adapters.discord.client import (
    DiscordAdapter,
    KlingClient,
    KlingShardedClient,
    build_client,
    pointed_at,
    running,
)

__all__ = [
    "DiscordAdapter",
    "KlingClient",
    "KlingShardedClient",
    "build_client",
    "pointed_at",
    "running",
]
