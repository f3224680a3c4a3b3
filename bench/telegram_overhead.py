"""Telegram adapter overhead: /price updates handled per second, ours vs a bare PTB handler.

Run ``.venv/bin/python bench/telegram_overhead.py`` (or ``make bench``);
``--quick`` for a smoke run, ``--updates N`` and ``--rounds R`` to change the
load. Both bots poll the same Bot API stand-in (``tests/adapters/standin.py``),
which runs in its own process, pinned to its own core, so that its work is
charged to neither bot:

- **ours**: the production application from
  :func:`adapters.telegram.build_application` on a fresh SQLite database, so
  every ``/price`` goes through the adapter (caller, parsing, flood control,
  the reply sent from a background task), the core (a wallet read on the
  database thread, the price table, the translator) and back as a message
  with its inline button. Every member has a wallet, so the reply carries
  their balance line too, as it does for active members.
- **bare**: a python-telegram-bot ``Application`` with one ``CommandHandler``
  that answers ``/price`` with a constant string, awaiting the send.
- **same**: that bare handler answering with our exact ``/price`` text and
  button (rendered once at start), so that ours / same is what the adapter
  and the core cost, and same / bare what a real price table costs to send.

A round loads N ``/price`` updates from N different members (each in their
own private chat, so Telegram's per-chat limits do not come into it) and
times until the stand-in has received all N replies; the bot process's CPU
time per update is measured too. Rounds alternate the three sides, after a
warm-up round each; medians are reported, for our production concurrency
(16 updates at once) and for one update at a time. Target: ours at least 0.8
of bare. The figures move a lot when other work shares the machine; the
ratio, measured minutes apart on the same cores, is the number to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/ holds the stand-in

TOKEN = "123456789:AAH-bench-token-for-the-stand-in-only"
FIRST_USER = 500_000
WARM_UP = 200
SIDES = ("ours", "bare", "same")
"""Our bot; a bare handler answering a constant; a bare handler answering our exact reply."""
MODES = (16, 1)
"""Concurrent updates: our production setting, then one at a time."""


# --- the stand-in, in its own process ---------------------------------------------------


def serve_standin() -> None:
    """Child process: the stand-in plus /_bench routes; prints its port, runs until stdin ends."""
    from aiohttp import web

    from tests.adapters.standin import BotApiStandIn

    class BenchStandIn(BotApiStandIn):
        def add_routes(self, app: web.Application) -> None:
            app.router.add_post("/_bench/load", self._load)
            app.router.add_get("/_bench/done", self._done)

        async def _load(self, request: web.Request) -> web.Response:
            body = await request.json()
            self.calls.clear()
            for n in range(body["count"]):
                user_id = FIRST_USER + n
                self.push(
                    {
                        "message": {
                            "message_id": n + 1,
                            "date": int(time.time()),
                            "chat": {"id": user_id, "type": "private"},
                            "from": {"id": user_id, "is_bot": False, "first_name": f"m{n}",
                                     "language_code": "en"},
                            "text": "/price",
                            "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
                        }
                    }
                )  # fmt: skip
            return web.json_response({"loaded": body["count"]})

        async def _done(self, request: web.Request) -> web.Response:
            count = int(request.query["count"])
            await self.wait_for("sendMessage", count=count, timeout=600)
            return web.json_response({"replies": len(self.of("sendMessage"))})

    async def main() -> None:
        async with BenchStandIn(TOKEN) as standin:
            print(json.dumps({"port": standin.port}), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


# --- the bots ---------------------------------------------------------------------------


async def run_round(session, base: str, count: int) -> tuple[float, float]:
    """Load ``count`` updates, wait for every reply: (updates per second, bot CPU ms each)."""
    started, cpu = time.perf_counter(), time.process_time()
    async with session.post(f"{base}/_bench/load", json={"count": count}) as response:
        response.raise_for_status()
    async with session.get(f"{base}/_bench/done", params={"count": str(count)}) as response:
        response.raise_for_status()
    rate = count / (time.perf_counter() - started)
    return rate, (time.process_time() - cpu) * 1000 / count


def bare_application(api_url: str, concurrency: int, reply: tuple[str, object] | None = None):
    """python-telegram-bot with one handler that answers /price with a constant.

    The constant is a short string, or ``reply``: a text and its keyboard (ours, rendered once).
    """
    from telegram.ext import ApplicationBuilder, CommandHandler

    text, markup = reply or ("Prices: 20 / 35 / 100 credits", None)

    async def price(update, context) -> None:
        await context.bot.send_message(update.effective_chat.id, text, reply_markup=markup)

    application = (
        ApplicationBuilder()
        .token(TOKEN)
        .base_url(api_url)
        .concurrent_updates(concurrency)
        .job_queue(None)
        .build()
    )
    application.add_handler(CommandHandler("price", price))
    return application


@asynccontextmanager
async def running_bare(application):
    """The bare application started and stopped the plain PTB way."""
    async with application:
        await application.start()
        await application.updater.start_polling(poll_interval=0.0, timeout=10)
        try:
            yield application
        finally:
            await application.updater.stop()
            await application.stop()


async def measure(port: int, updates: int, rounds: int, modes: tuple[int, ...]) -> list[Result]:
    """Alternate ours and bare, ``rounds`` times per concurrency mode, after a warm-up round."""
    import aiohttp

    from adapters.telegram import build_application, running
    from app.bootstrap import open_core
    from bot.commands import UserRef
    from bot.ports import UserProfile
    from bot.settings import Settings

    base = f"http://127.0.0.1:{port}"
    api_url = f"{base}/bot"
    results = []
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            db=Path(folder) / "bench.db", telegram_token=TOKEN, telegram_base_url=api_url
        )
        async with open_core(settings) as deps, aiohttp.ClientSession() as session:
            for n in range(max(updates, WARM_UP)):
                profile = UserProfile(UserRef("telegram", str(FIRST_USER + n)), f"m{n}")
                await deps.ledger.open_wallet(profile, welcome_credits=150, now=0)
            same_reply = await our_price_reply(deps)
            for concurrency in modes:
                result = Result(concurrency)
                for round_number in range(rounds + 1):  # round 0 warms every side up
                    for name in SIDES:
                        # A fresh application each round: a PTB application starts once.
                        if name == "ours":
                            application = build_application(
                                settings, deps, concurrent_updates=concurrency
                            )
                            context = running(application, poll_timeout_s=10)
                        else:
                            reply = same_reply if name == "same" else None
                            context = running_bare(bare_application(api_url, concurrency, reply))
                        async with context:
                            count = WARM_UP if round_number == 0 else updates
                            rate, cpu_ms = await run_round(session, base, count)
                        if round_number:
                            result.rates[name].append(rate)
                            result.cpu[name].append(cpu_ms)
                print(f"  {result.line()}", flush=True)
                results.append(result)
    return results


async def our_price_reply(deps) -> tuple[str, object]:
    """The text and keyboard our bot sends a member with 150 credits, for the "same" side."""
    from adapters.telegram.render import keyboard, render
    from bot.commands import Caller, Price, UserRef
    from bot.service import handle

    [reply] = await handle(Price(), Caller(UserRef("telegram", str(FIRST_USER))), deps)
    rendered = render(reply, "en")
    return rendered.text, keyboard(rendered.buttons)


@dataclass
class Result:
    """The rounds of one concurrency mode."""

    concurrency: int
    rates: dict[str, list[float]] = field(default_factory=lambda: {n: [] for n in SIDES})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {n: [] for n in SIDES})

    def rate(self, name: str) -> float:
        return statistics.median(self.rates[name])

    def cost(self, name: str) -> float:
        return statistics.median(self.cpu[name])

    def line(self) -> str:
        return (
            f"concurrency {self.concurrency:>2}: "
            + ", ".join(
                f"{name} {self.rate(name):,.0f}/s ({self.cost(name):.2f} ms CPU)" for name in SIDES
            )
            + f", ratio {self.rate('ours') / self.rate('bare'):.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 300 updates, 1 round")
    parser.add_argument("--updates", type=int, default=1000, help="updates per round")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per side")
    parser.add_argument("--serve-standin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_standin:
        _pin(1)
        serve_standin()
        return 0
    updates, rounds = (300, 1) if args.quick else (args.updates, args.rounds)
    _pin(0)
    return asyncio.run(_main(updates, rounds))


def _pin(cpu: int) -> None:
    """Keep the bot and the stand-in on their own cores, where the OS allows it."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {cpu})


async def _main(updates: int, rounds: int) -> int:
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
            f"Telegram adapter overhead: /price, {updates:,} updates per round, {rounds} rounds"
            f" per side, {os.cpu_count()} CPUs (bot and stand-in pinned to one each)"
        )
        results = await measure(port, updates, rounds, MODES)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        await child.wait()
    print()
    print(
        f"{'concurrent':<11}{'ours /s':>9}{'bare /s':>9}{'same /s':>9}"
        f"{'ours/bare':>11}{'ours/same':>11}   CPU ms/update ours, bare, same"
    )
    for r in results:
        print(
            f"{r.concurrency:<11}{r.rate('ours'):>9,.0f}{r.rate('bare'):>9,.0f}"
            f"{r.rate('same'):>9,.0f}{r.rate('ours') / r.rate('bare'):>11.2f}"
            f"{r.rate('ours') / r.rate('same'):>11.2f}   "
            f"{r.cost('ours'):.2f}, {r.cost('bare'):.2f}, {r.cost('same'):.2f}"
        )
    print(
        "(medians. bare answers a constant string; same answers our exact /price text and"
        " button, so ours/same is the adapter and core alone. Target: ours/bare >= 0.80)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
