"""Discord adapter overhead: /price interactions answered per second, ours vs bare discord.py.

Run ``.venv/bin/python bench/discord_overhead.py`` (part of ``make bench``);
``--quick`` for a smoke run, ``--interactions N``, ``--rounds R`` and
``--concurrency C`` to change the load, ``--profile PATH`` to save each
side's CPU profile. Every side talks to the same Discord
stand-in (``tests/adapters/discord_standin.py``), which runs in its own
process, pinned to its own core, so that its work (parsing and checking each
reply, storing its message) is charged to no side; it also drives the load,
so the bot process does nothing but be the bot:

- **ours**: the production client from :func:`adapters.discord.build_client`
  on a fresh SQLite database, run by :func:`adapters.discord.running`: every
  ``/price`` goes through the adapter (caller, moderator check, the command
  line parsed by the core), the core (the price table, the member's wallet
  line, the translator) and back as an ephemeral message with its persistent
  "Show 10 s prices" button. Every member has a wallet, so the reply carries
  their balance line too, as it does for active members.
- **bare**: a ``discord.Client`` with one ``app_commands`` command answering
  ``/price`` with a constant string, ephemeral too: the issue's baseline.
- **same**: that bare command answering with our exact ``/price`` text and
  button (rendered once at start, the view built once and, as ours' views,
  never kept in discord.py's view store), so that ours / same
  is what the adapter and the core cost, and same / bare what sending a real
  price table with a button costs.

A round pushes N ``/price`` interactions from 200 members, keeping C
unanswered at once (a new one as soon as one is acknowledged), and times
until all are answered; the bot process's CPU time per interaction is
measured too. Rounds alternate the three sides (a fresh client each round,
connected before the clock starts) after a warm-up round each; medians are
reported. Target: ours at least 0.9 of the bare rate. The figures move a lot
when other work shares the machine; the ratios, measured seconds apart on
the same cores, are the numbers to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/ holds the stand-in

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.YmVuY2g.bench-token-for-the-stand-in-only"
MEMBERS = 200
WARM_UP = 200
SIDES = ("ours", "bare", "same")
"""Our bot; a bare command answering a constant; a bare command answering our exact reply."""
BARE_REPLY = "Prices: see the website."


# --- the stand-in, in its own process ---------------------------------------------------


def serve_standin() -> None:
    """Child process: the stand-in plus /_bench routes; prints its port, runs until stdin ends."""
    from aiohttp import web

    from tests.adapters.discord_standin import DiscordStandIn

    class BenchStandIn(DiscordStandIn):
        def add_routes(self, app: web.Application) -> None:
            app.router.add_get("/_bench/world", self._world)
            app.router.add_post("/_bench/run", self._run)

        def build_world(self) -> None:
            self.bench_guild = self.add_guild("Bench")
            self.bench_members = [self.bench_guild.add_member(f"member{n}") for n in range(MEMBERS)]

        async def _world(self, request: web.Request) -> web.Response:
            return web.json_response(
                {
                    "guild": self.bench_guild.id,
                    "members": [m.id for m in self.bench_members],
                    "channel": self.bench_guild.text_channels[0].id,
                }
            )

        async def _run(self, request: web.Request) -> web.Response:
            """Push ``count`` /price interactions, ``concurrency`` unanswered at once."""
            body = await request.json()
            count, concurrency = body["count"], body["concurrency"]
            self.calls.clear()  # keep the stand-in's own work the same round after round
            self.messages.clear()
            self.interactions.clear()
            self._by_token.clear()
            pending: list = []
            members = self.bench_members
            started = time.perf_counter()
            for n in range(count):
                pending.append(members[n % len(members)].slash("price"))
                if len(pending) >= concurrency:
                    await self.wait_until(lambda: any(i.acknowledged for i in pending), timeout=60)
                    pending[:] = [i for i in pending if not i.acknowledged]
            await self.wait_until(lambda: all(i.acknowledged for i in pending), timeout=60)
            seconds = time.perf_counter() - started
            replies = [i.original.content for i in self.interactions.values() if i.original]
            return web.json_response(
                {"seconds": seconds, "answered": len(replies), "sample": replies[-1]}
            )

    async def main() -> None:
        async with BenchStandIn(TOKEN) as standin:
            standin.build_world()
            print(json.dumps({"port": standin.port}), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


# --- the bots ---------------------------------------------------------------------------


@asynccontextmanager
async def running_ours(settings, deps) -> AsyncIterator[None]:
    """The production client and core, connected."""
    from adapters.discord import build_client, running

    client = build_client(settings, deps, guild_ready_timeout=0.05)
    async with running(client):
        yield


@asynccontextmanager
async def running_bare(
    api_base: str, gateway_url: str, guild_id: int, reply
) -> AsyncIterator[None]:
    """A bare discord.py client whose /price answers ``reply`` (text and view) or a constant."""
    import discord
    from discord import app_commands

    from tests.adapters.discord_standin import discord_py_pointed_at

    intents = discord.Intents.none()
    intents.guilds = True  # what ours asks for, as a server bot does (Intents.default() has it)
    client = discord.Client(
        intents=intents,
        max_messages=None,
        member_cache_flags=discord.MemberCacheFlags.none(),
        chunk_guilds_at_startup=False,
        guild_ready_timeout=0.05,
    )
    tree = app_commands.CommandTree(client)
    scope = discord.Object(guild_id)
    if reply is None:

        @tree.command(name="price", description="Prices", guild=scope)
        async def price(interaction: discord.Interaction) -> None:
            await interaction.response.send_message(BARE_REPLY, ephemeral=True)

    else:
        content, buttons = reply

        class SentOnlyView(discord.ui.View):
            """Sent as ours sends its views: serialized, not kept in discord.py's view store.

            A plain ``View`` would be stored (and its ephemeral timeout armed) on
            every send, work ours does not do and that says nothing about the
            cost of the reply's payload.
            """

            def is_finished(self) -> bool:
                return True

        view = SentOnlyView(timeout=None)
        for label, custom_id in buttons:
            view.add_item(discord.ui.Button(label=label, custom_id=custom_id))

        @tree.command(name="price", description="Prices", guild=scope)
        async def price(interaction: discord.Interaction) -> None:
            await interaction.response.send_message(content, view=view, ephemeral=True)

    # No sync: the stand-in already has /price (ours synced it), and the tree
    # dispatches by name; a sync here would replace our commands every round.
    with discord_py_pointed_at(api_base, gateway_url):
        await client.login(TOKEN)
        connection = asyncio.create_task(client.connect())
        await client.wait_until_ready()
        try:
            yield
        finally:
            await client.close()
            await asyncio.gather(connection, return_exceptions=True)


async def our_price_reply(deps, member_id: str, channel_id: str, guild_id: str):
    """The text and buttons our bot sends a member with a wallet, for the "same" side."""
    from adapters.discord.buttons import PREFIX
    from adapters.discord.chats import chat_ref
    from adapters.discord.render import render
    from bot.commands import Caller, Price, UserRef
    from bot.service import handle

    caller = Caller(
        UserRef("discord", member_id), chat=chat_ref(int(guild_id), int(channel_id), int(member_id))
    )
    [reply] = await handle(Price(), caller, deps)
    rendered = render(reply, "en")
    return rendered.text, [(label, PREFIX + action) for label, action in rendered.buttons]


async def run_round(session, base: str, count: int, concurrency: int) -> tuple[float, float, str]:
    """One round: (interactions per second, bot CPU ms per interaction, a sample reply)."""
    cpu = time.process_time()
    async with session.post(
        f"{base}/_bench/run", json={"count": count, "concurrency": concurrency}
    ) as response:
        response.raise_for_status()
        result = await response.json()
    if result["answered"] != count:
        raise AssertionError(f"{result['answered']} of {count} interactions answered")
    cpu_ms = (time.process_time() - cpu) * 1000 / count
    return count / result["seconds"], cpu_ms, result["sample"]


@dataclass
class Result:
    """The measured rounds."""

    rates: dict[str, list[float]] = field(default_factory=lambda: {n: [] for n in SIDES})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {n: [] for n in SIDES})

    def rate(self, name: str) -> float:
        return statistics.median(self.rates[name])

    def cost(self, name: str) -> float:
        return statistics.median(self.cpu[name])


async def measure(
    port: int, count: int, rounds: int, concurrency: int, profile_to: Path | None = None
) -> Result:
    """Alternate the three sides ``rounds`` times, after a warm-up round each.

    With ``profile_to``, each side's measured rounds run under cProfile on the
    process's CPU time, saved as ``<profile_to>.<side>.pstats`` (the rates then
    carry the profiler's own cost).
    """
    import cProfile

    import aiohttp

    from app.bootstrap import open_core
    from bot.commands import UserRef
    from bot.ports import UserProfile
    from bot.settings import Settings

    base = f"http://127.0.0.1:{port}"
    api_base, gateway_url = f"{base}/api", f"ws://127.0.0.1:{port}/"
    result = Result()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/_bench/world") as response:
            world = await response.json()
        guild_id = int(world["guild"])
        with tempfile.TemporaryDirectory() as folder:
            settings = Settings(
                db=Path(folder) / "bench.db",
                discord_token=TOKEN,
                discord_api_base=api_base,
                discord_gateway_url=gateway_url,
                discord_guild_ids=(guild_id,),
            )
            async with open_core(settings) as deps:
                for n, member_id in enumerate(world["members"]):
                    profile = UserProfile(UserRef("discord", member_id), f"member{n}")
                    await deps.ledger.open_wallet(profile, welcome_credits=100, now=0)
                gc.collect()  # as `klingbot run` does once started: the long-lived objects
                gc.freeze()  # stay out of every collection, for all three sides alike
                same_reply = await our_price_reply(
                    deps, world["members"][0], world["channel"], world["guild"]
                )
                samples = {}
                profilers = {name: cProfile.Profile(time.process_time) for name in SIDES}
                for round_number in range(rounds + 1):  # round 0 warms every side up
                    for name in SIDES:
                        if name == "ours":
                            context = running_ours(settings, deps)
                        else:
                            reply = same_reply if name == "same" else None
                            context = running_bare(api_base, gateway_url, guild_id, reply)
                        async with context:
                            size = WARM_UP if round_number == 0 else count
                            profiling = profile_to is not None and round_number > 0
                            if profiling:
                                profilers[name].enable()
                            rate, cpu_ms, samples[name] = await run_round(
                                session, base, size, concurrency
                            )
                            if profiling:
                                profilers[name].disable()
                        if round_number:
                            result.rates[name].append(rate)
                            result.cpu[name].append(cpu_ms)
                            print(
                                f"  round {round_number} {name:<4} {rate:>6,.0f}/s"
                                f" ({cpu_ms:.2f} ms CPU)",
                                flush=True,
                            )
                if profile_to is not None:
                    for name, profiler in profilers.items():
                        profiler.dump_stats(f"{profile_to}.{name}.pstats")
                if samples["ours"] != same_reply[0]:
                    raise AssertionError(f"ours and same differ:\n{samples['ours']}\n{same_reply}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 300, 1 round")
    parser.add_argument("--interactions", type=int, default=1000, help="per round")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per side")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--profile", type=Path, help="save each side's cProfile (CPU time) as PROFILE.<side>.pstats"
    )
    parser.add_argument("--serve-standin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_standin:
        _pin(1)
        serve_standin()
        return 0
    count, rounds = (300, 1) if args.quick else (args.interactions, args.rounds)
    _pin(0)
    return asyncio.run(_main(count, rounds, args.concurrency, args.profile))


def _pin(cpu: int) -> None:
    """Keep the bot and the stand-in on their own cores, where the OS allows it."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {cpu})


async def _main(count: int, rounds: int, concurrency: int, profile: Path | None) -> int:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve-standin",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        port = json.loads(await child.stdout.readline())["port"]
        print(
            f"Discord adapter overhead: /price, {count:,} interactions per round at concurrency"
            f" {concurrency}, {rounds} rounds per side, {os.cpu_count()} CPUs"
            " (bot and stand-in pinned to one each)"
        )
        result = await measure(port, count, rounds, concurrency, profile)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        await child.wait()
    ours, bare, same = (result.rate(name) for name in SIDES)
    print()
    print(
        f"{'ours /s':>9}{'bare /s':>9}{'same /s':>9}{'ours/bare':>11}{'ours/same':>11}"
        "   CPU ms/interaction ours, bare, same"
    )
    print(
        f"{ours:>9,.0f}{bare:>9,.0f}{same:>9,.0f}{ours / bare:>11.2f}{ours / same:>11.2f}   "
        + ", ".join(f"{result.cost(name):.2f}" for name in SIDES)
    )
    print(
        "(medians. bare answers a constant string; same answers our exact /price text and"
        " button, so ours/same is the adapter and core alone. Target: ours/bare >= 0.90)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
