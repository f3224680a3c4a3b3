"""The image's conventions, tested outside Docker: its entry point, health check and /data.

The final stage of the Dockerfile is read (ENV, USER, VOLUME, STOPSIGNAL,
HEALTHCHECK, ENTRYPOINT, CMD) and its command run as a real process with
the image's environment, ``/data`` mapped to a temporary folder, serving
the Telegram stand-in. A member's job is generating when SIGTERM arrives:
the process must exit cleanly within Docker's 10 s grace period, leave the
job paid and unfinished in the database, and the next start must resume
and deliver it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.adapters.conftest import TOKEN
from tests.adapters.standin import BotApiStandIn, Member

ROOT = Path(__file__).parents[2]
DOCKER_GRACE_S = 10.0


def final_stage(dockerfile: Path) -> dict[str, object]:
    """The instructions of the last stage (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    stage = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    found: dict[str, object] = {"BASES": froms, "ENV": {}}
    for line in stage:
        keyword, _, rest = line.partition(" ")
        if keyword == "ENV":
            found["ENV"].update(dict(pair.split("=", 1) for pair in rest.split()))  # type: ignore[union-attr]
        elif keyword == "HEALTHCHECK":
            found[keyword] = json.loads(rest[rest.index("CMD ") + 4 :])
        elif keyword in ("VOLUME", "ENTRYPOINT", "CMD"):
            found[keyword] = json.loads(rest)
        else:
            found[keyword] = rest
    return found


def test_the_dockerfile_follows_the_conventions():
    image = final_stage(ROOT / "Dockerfile")
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    bases = image["BASES"]
    assert len(bases) == 2 and bases[0] == bases[1], "the build and run stages differ"
    assert all(re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base) for base in bases), bases
    # Dependencies from the lock, hash-checked, in a layer that the code does not invalidate;
    # then the app alone, built with the locked setuptools.
    assert (
        text.index("COPY requirements/run.txt")
        < text.index("pip install --require-hashes --requirement requirements/run.txt")
        < text.index("COPY pyproject.toml")
        < text.index("COPY app")
    )
    assert "pip wheel --no-deps --no-build-isolation" in text
    assert "COPY --from=build /opt/venv /opt/venv" in text
    assert image["USER"] == "10001:10001"
    assert image["VOLUME"] == ["/data"]
    assert image["ENV"]["KLINGBOT_DB"] == "/data/klingbot.db"  # type: ignore[index]
    assert image["ENV"]["KLINGBOT_DATA_DIR"] == "/data"  # type: ignore[index]
    assert image["STOPSIGNAL"] == "SIGTERM"
    assert image["HEALTHCHECK"] == ["klingbot", "health"]
    assert image["ENTRYPOINT"] == ["klingbot"] and image["CMD"] == ["run"]
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "**" in ignored and "!pyproject.toml" in ignored and "tests" not in text
    assert "!requirements/run.txt" in ignored


class Bot:
    """``klingbot`` started as the image starts it, its stderr read line by line."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path) -> None:
        self.command, self.env, self.cwd = command, env, cwd
        self.lines: list[str] = []
        self.changed = asyncio.Condition()
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.command, cwd=self.cwd, env=self.env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            async with self.changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.changed.notify_all()

    async def line(self, pattern: str, timeout: float = 90) -> re.Match[str]:
        """The first stderr line matching ``pattern`` (waits for it)."""
        found: list[re.Match[str]] = []

        def seen() -> bool:
            found[:] = [m for line in self.lines if (m := re.search(pattern, line))]
            return bool(found) or (self._reader is not None and self._reader.done())

        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(seen), timeout)
        assert found, f"no line matching {pattern!r}:\n" + "\n".join(self.lines)
        return found[0]

    async def stop(self) -> tuple[int, float]:
        """SIGTERM; the exit status and the seconds it took."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(self.process.wait(), 30)
        took = time.monotonic() - started
        assert self._reader is not None
        await self._reader
        return status, took

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()


async def health(env: dict[str, str], cwd: Path, **extra: str) -> tuple[int, str]:
    """The image's HEALTHCHECK command."""
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "klingbot"), "health",
        cwd=cwd, env={**env, **extra}, stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode()


async def test_the_image_command_serves_stops_on_sigterm_in_time_and_resumes(tmp_path):
    image = final_stage(ROOT / "Dockerfile")
    data = tmp_path / "data"  # the /data volume
    data.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLINGBOT_", "TELEGRAM_"))}
    env.pop("DISCORD_TOKEN", None)
    for name, value in image["ENV"].items():  # type: ignore[union-attr]
        if name.startswith("KLINGBOT_"):
            env[name] = value.replace("/data", str(data))
    env.update(
        LANG="C.UTF-8",
        KLINGBOT_METRICS_LISTEN="127.0.0.1:0",  # the image's port, on loopback and free
        KLINGBOT_WELCOME_CREDITS="500",
        KLINGBOT_TIERS='{"master": {"resolution": 360}}',  # a quick render
    )
    command = [str(Path(sys.executable).parent / image["ENTRYPOINT"][0]), *image["CMD"]]  # type: ignore[index]
    async with BotApiStandIn(TOKEN) as api:
        env.update(TELEGRAM_TOKEN=TOKEN, TELEGRAM_BASE_URL=api.base_url)
        first = Bot(command, {**env, "KLINGBOT_TIME_SCALE": "0.2"}, data)  # Master waits ~40 s
        second = Bot(command, {**env, "KLINGBOT_TIME_SCALE": "0.001"}, data)
        try:
            await first.start()
            port = (await first.line(r"metrics and health on http://127\.0\.0\.1:(\d+)/")).group(1)
            status, said = await health(env, data, KLINGBOT_METRICS_LISTEN=f"127.0.0.1:{port}")
            assert status == 0 and said == "healthy: database, runner, telegram\n", said

            alice = Member(api, 1001, "Alice")
            alice.send("/gen a robot waves to the camera")
            quote = await api.wait_for("sendMessage", chat_id=1001, timeout=60)
            alice.press(quote.result, "Master")
            await api.wait_for(
                "editMessageText", where=lambda c: "generating" in c.params["text"], timeout=60
            )
            status, took = await first.stop()
            assert status == 0, "\n".join(first.lines)
            assert took < DOCKER_GRACE_S, f"stopping took {took:.1f} s"
            print(f"SIGTERM with a job generating: exited in {took:.2f} s")
            assert any("stopping: unfinished jobs resume" in line for line in first.lines)
            assert not api.of("sendVideo")
            with sqlite3.connect(data / "klingbot.db") as db:
                (job_id, state), = db.execute("SELECT job_id, state FROM jobs").fetchall()
                holds = db.execute("SELECT state FROM holds").fetchall()
            assert state in ("submitted", "running") and holds == [("open",)]
            status, said = await health(env, data, KLINGBOT_METRICS_LISTEN="")  # the lease: free
            assert status == 1 and said.startswith("unhealthy: no klingbot process holds")

            await second.start()
            await second.line(rf"resuming job {job_id} in state {state}")
            video = await api.wait_for("sendVideo", chat_id=1001, timeout=120)
            assert video.params.get("caption", "").startswith("🎞️")
            status, said = await health(env, data, KLINGBOT_METRICS_LISTEN="")  # the lease
            assert status == 0 and said.startswith("healthy: a klingbot process holds"), said
            status, took = await second.stop()
            assert status == 0 and took < DOCKER_GRACE_S, "\n".join(second.lines)
        finally:
            first.kill()
            second.kill()
    with sqlite3.connect(data / "klingbot.db") as db:
        assert db.execute("SELECT state FROM jobs").fetchall() == [("delivered",)]
        assert db.execute("SELECT state FROM holds").fetchall() == [("captured",)]
    layout = sorted(str(p.relative_to(data)) for p in data.rglob("*") if "__" not in str(p))
    assert {"klingbot.db", "klingbot.db.lock", "clips", f"clips/{job_id}.mp4"} <= set(layout)
    assert all(not name.startswith("..") for name in layout)
    assert TOKEN not in "\n".join(first.lines + second.lines)


def test_a_shutdown_that_hangs_is_cut_short_by_the_deadline():
    hung = (
        "import threading\n"
        "from app.serve import ShutdownDeadline\n"
        "ShutdownDeadline(0.2).arm()\n"
        "threading.Event().wait(60)  # a drain that never ends\n"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", hung], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    assert "still stopping after 0.2 s: exiting now" in result.stderr
