"""What one shared pacing reservation costs a job message (bot/pacing.py), per backend.

Run ``.venv/bin/python bench/chat_pace.py`` (``--quick`` for a smoke run).
Each backend takes ``--reservations`` reservations:

- **one at a time** in one chat: the latency a status edit or a clip pays
  before it is sent (p50 and p99 in milliseconds);
- **16 at once** over 100 chats: reservations a second, as a busy replica
  makes them;
- **16 at once in one chat**: every reservation waits for the same row lock.

Backends: in memory (one process), SQLite (one file, through the writer
thread) and PostgreSQL (``KLINGBOT_TEST_DATABASE_URL``, default
``postgresql://postgres@127.0.0.1:5432/test``; a scratch database is made
and dropped; without a server those lines say so), both the UNLOGGED
``chat_pace`` table the migration makes and, for comparison, the same
table logged (each reservation a durable commit).
Nothing is sent anywhere: this is the pacing's own cost.
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
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.pacing import TELEGRAM_GROUP, ChatPace, MemoryChatPace

SERVER = os.environ.get("KLINGBOT_TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
SCRATCH = "klingbot_bench_chat_pace"


async def measure(pace: ChatPace, reservations: int) -> dict[str, float]:
    now = time.time()
    latencies = []
    for _ in range(reservations):
        started = time.perf_counter()
        await pace.reserve("telegram:-1", TELEGRAM_GROUP, now)
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()

    async def crowd(chat: Callable[[int], str]) -> float:
        queue = iter(range(reservations))

        async def worker() -> None:
            for n in queue:
                await pace.reserve(chat(n), TELEGRAM_GROUP, now)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(16)))
        return reservations / (time.perf_counter() - started)

    return {
        "p50_ms": round(statistics.median(latencies), 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 3),
        "per_s_100_chats": round(await crowd(lambda n: f"telegram:{n % 100}")),
        "per_s_one_chat": round(await crowd(lambda n: "telegram:-2")),
    }


async def postgres(reservations: int, *, logged: bool) -> dict[str, float]:
    import asyncpg

    from storage.postgres.database import PgDatabase
    from storage.postgres.pace import PgChatPace
    from tests.support.postgres import database_url

    server = await asyncpg.connect(SERVER)
    try:
        await server.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")
        await server.execute(f"CREATE DATABASE {SCRATCH}")
        async with PgDatabase(database_url(SCRATCH, SERVER), min_size=4, max_size=16) as db:
            if logged:
                await db.execute("ALTER TABLE chat_pace SET LOGGED")
            return await measure(PgChatPace(db), reservations)
    finally:
        await server.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")
        await server.close()


async def sqlite(reservations: int) -> dict[str, float]:
    from storage.database import Database
    from storage.pace import SqliteChatPace

    with tempfile.TemporaryDirectory() as folder:
        async with Database(Path(folder) / "pace.db") as db:
            return await measure(SqliteChatPace(db), reservations)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reservations", type=int, default=2000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 100 if args.quick else args.reservations
    sides: dict[str, Callable[[], Awaitable[dict[str, float]]]] = {
        "memory": lambda: measure(MemoryChatPace(), n),
        "sqlite": lambda: sqlite(n),
        "postgres (unlogged, as migrated)": lambda: postgres(n, logged=False),
        "postgres (logged, for comparison)": lambda: postgres(n, logged=True),
    }
    results: dict[str, object] = {}
    for name, side in sides.items():
        try:
            results[name] = await side()
        except (OSError, ImportError) as error:  # no server here: say so, measure the rest
            results[name] = f"not measured: {type(error).__name__}: {error}"
    print(json.dumps({"reservations": n, "load": os.getloadavg()[0], **results}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
