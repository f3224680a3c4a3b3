"""Real ``klingbot run`` replicas in Telegram webhook mode, behind the test balancer.

Each :class:`Replica` is one ``klingbot run`` process with its own data
folder and replica id, listening for webhook posts on a free loopback port
that it reports in its log (``webhook listening on 127.0.0.1:<port>/hook``);
:class:`Replicas` starts them, puts them behind a :class:`Balancer` whose URL
is the bot's ``TELEGRAM_WEBHOOK_URL`` (the operator's public URL), and can
SIGKILL one or start it again. Tests wait on the log and on the Bot API
stand-in's calls, with deadlines; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.adapters.conftest import TOKEN
from tests.adapters.standin import BotApiStandIn
from tests.replicas.balancer import Balancer
from tests.support.env import process_environment

WEBHOOK_PATH = "/hook"
LISTENING = re.compile(r"webhook listening on ([\d.]+):(\d+)" + re.escape(WEBHOOK_PATH))


class Replica:
    """One ``klingbot run`` process; its stderr is read line by line as it comes.

    It logs at INFO (``KLINGBOT_LOG_LEVEL``'s default), which has every line the tests
    wait on; ``verbose`` adds ``-v`` (DEBUG: every Bot API call, much slower).
    """

    def __init__(
        self, name: str, env: Mapping[str, str], cwd: Path, *, verbose: bool = False
    ) -> None:
        self.name = name
        self.verbose = verbose
        self.env = dict(env)
        self.cwd = cwd
        self.lines: list[str] = []
        self.changed = asyncio.Condition()
        self.process: asyncio.subprocess.Process | None = None
        self.address = ""
        """``host:port`` of its webhook server, once it listens."""

    async def start(self, timeout: float = 60) -> Replica:
        """Start the process and wait until it takes webhook posts."""
        self.lines.clear()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app", *(["-v"] if self.verbose else []), "run",
            cwd=self.cwd, env=self.env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self.reader = asyncio.create_task(self._read(self.process))
        found = await self.line(LISTENING.pattern, timeout)
        match = LISTENING.search(found)
        assert match is not None
        self.address = f"{match.group(1)}:{match.group(2)}"
        await self.line(r"Telegram bot @\w+ is up \(webhook\)", timeout)
        return self

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        async for raw in process.stderr:
            async with self.changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.changed.notify_all()
        async with self.changed:
            self.changed.notify_all()  # it ended: waiters look at the exit

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def line(self, pattern: str, timeout: float = 60) -> str:
        """The first log line matching ``pattern`` (waiting for it); fails if the process ends."""
        compiled = re.compile(pattern)

        def found() -> str | None:
            return next((x for x in self.lines if compiled.search(x)), None)

        async with self.changed:
            try:
                await asyncio.wait_for(
                    self.changed.wait_for(lambda: found() is not None or self.reader.done()),
                    timeout,
                )
            except TimeoutError:
                raise AssertionError(
                    f"{self.name}: no log line {pattern!r} in {timeout}s:\n{self.log()}"
                ) from None
        result = found()
        if result is None:
            raise AssertionError(f"{self.name} ended without {pattern!r}:\n{self.log()}")
        return result

    def count(self, pattern: str) -> int:
        return sum(1 for x in self.lines if re.search(pattern, x))

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no lease released, nothing flushed."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        await self.reader

    async def stop(self) -> int:
        """SIGTERM, and the exit status."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(self.process.wait(), 60)
        await self.reader
        return status

    async def close(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.kill()
            await self.process.wait()
        if self.process is not None:
            await self.reader

    def log(self) -> str:
        return "\n".join(self.lines)


def replica_environment(
    folder: Path,
    name: str,
    api: BotApiStandIn,
    webhook_url: str,
    **extra: str,
) -> dict[str, str]:
    """What one replica runs with: the shared settings, its own data folder and id."""
    return process_environment(
        {
            "KLINGBOT_DB": str(folder / "klingbot.db"),  # unused on PostgreSQL
            "KLINGBOT_DATA_DIR": str(folder / "data"),
            "KLINGBOT_REPLICA_ID": name,
            "TELEGRAM_TOKEN": TOKEN,
            "TELEGRAM_BASE_URL": api.base_url,
            "TELEGRAM_BASE_FILE_URL": api.base_file_url,
            "TELEGRAM_WEBHOOK_URL": webhook_url,
            "TELEGRAM_WEBHOOK_LISTEN": "127.0.0.1:0",
            "KLINGBOT_METRICS_LISTEN": "",
            **extra,
        }
    )


class Replicas:
    """Replicas ``a``, ``b``, ... behind one balancer; ``async with Replicas(...) as r:``."""

    def __init__(
        self, root: Path, api: BotApiStandIn, names: tuple[str, ...] = ("a", "b"), **settings: str
    ) -> None:
        self.root, self.api, self.names, self.settings = root, api, names, settings
        self.balancer = Balancer()
        self.replicas: dict[str, Replica] = {}

    async def __aenter__(self) -> Replicas:
        await self.balancer.__aenter__()
        try:
            for name in self.names:
                folder = self.root / name
                folder.mkdir(parents=True, exist_ok=True)
                env = replica_environment(
                    folder, name, self.api, self.balancer.url(WEBHOOK_PATH), **self.settings
                )
                self.replicas[name] = Replica(name, env, folder)
            await asyncio.gather(*(self.start(name) for name in self.names))
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(r.close() for r in self.replicas.values()))
        await self.balancer.__aexit__()

    def __getitem__(self, name: str) -> Replica:
        return self.replicas[name]

    async def start(self, name: str) -> Replica:
        """Start (or start again) replica ``name`` and put it behind the balancer."""
        replica = await self.replicas[name].start()
        self._route()
        return replica

    async def kill(self, name: str) -> None:
        """SIGKILL replica ``name``; the balancer keeps its address, as a real one would."""
        await self.replicas[name].kill()

    def _route(self) -> None:
        self.balancer.backends = [r.address for r in self.replicas.values() if r.address]

    def log(self) -> str:
        return "\n".join(f"--- {name}\n{replica.log()}" for name, replica in self.replicas.items())
