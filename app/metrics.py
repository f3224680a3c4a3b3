"""Prometheus metrics and the health endpoint (``KLINGBOT_METRICS_LISTEN``, off by default).

:class:`PrometheusMetrics` implements the core's metrics port
(:mod:`bot.metrics`) with the official client library, on a registry of its
own (one per core, so tests can run several). What the core does not report
itself is observed where it is committed:

- :class:`ObservedJobStore` wraps the job store (SQLite's or PostgreSQL's):
  quotes saved, holds made (a job created), every state change that moved
  (final states, the capture with its generation time, the releases);
- :class:`ObservedProvider` wraps the provider: every error it raises or
  reports, by kind;
- :class:`RateLimitWatcher` reads the two log lines that say a platform made
  the bot wait (Telegram's flood control, discord.py's HTTP client), so the
  adapters need no metrics code;
- the queue's length and the running jobs are read from the runner at each
  scrape, and the input images kept (files and bytes) from their folder
  (:class:`InputFiles`), or, on PostgreSQL, from the ``inputs`` table
  (:class:`StoredInputs`, read before each scrape by :meth:`PrometheusMetrics.refresh`).

:class:`OperationsServer` serves ``/metrics`` in the Prometheus text format
and ``/healthz``: 200 when the database answers, the runner is alive and
each adapter is connected, 503 with the failing checks otherwise (JSON).
With ``KLINGBOT_PUBLIC_URL`` it also serves the signed clip links
(``app.clip_links``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest

from bot.catalog import Catalog
from bot.inputs import FileInputStore, InputStore, InputUsage, folder_usage
from bot.jobs.model import TERMINAL, Job, JobState, Quote
from bot.jobs.runner import JobRunner
from bot.jobs.store import JobStore
from bot.providers.base import GenerationRequest, Provider, ProviderError, TaskStatus
from bot.roles import Roles

log = logging.getLogger(__name__)

GENERATION_BUCKETS = (1, 5, 15, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800, 3600)
"""Seconds from the provider starting a clip to the clip existing (Kling: minutes)."""

RATE_LIMIT_LOGGERS = {"adapters.telegram.flood": "telegram", "discord.http": "discord"}
"""The loggers whose "wait before retrying" lines :class:`RateLimitWatcher` counts."""


class PrometheusMetrics:
    """The core's metrics port on a private Prometheus registry."""

    def __init__(self, catalog: Catalog, provider: str = "local") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.provider = provider
        self._refreshers: list[Callable[[], Awaitable[None]]] = []
        """Reads a scrape cannot make itself (a database query), run by :meth:`refresh`."""
        r = self.registry
        self.commands = Counter(
            "klingbot_commands",
            "Commands and button presses handled",
            ["platform", "command"],
            registry=r,
        )
        self.quotes = Counter("klingbot_quotes", "Quotes offered", ["platform"], registry=r)
        self.presses = Counter("klingbot_presses", "Tier buttons pressed", ["tier"], registry=r)
        self.jobs = Counter("klingbot_jobs", "Jobs by final state", ["tier", "state"], registry=r)
        self.generation = Histogram(
            "klingbot_generation_seconds",
            "Time from the provider starting a clip to the clip existing",
            ["tier"],
            buckets=GENERATION_BUCKETS,
            registry=r,
        )
        self.held = Counter(
            "klingbot_credits_held", "Credits held when a tier was pressed", ["tier"], registry=r
        )
        self.captured = Counter(
            "klingbot_credits_captured", "Held credits spent on a made clip", ["tier"], registry=r
        )
        self.released = Counter(
            "klingbot_credits_released",
            "Held credits given back (failed or cancelled jobs)",
            ["tier"],
            registry=r,
        )
        self.provider_errors = Counter(
            "klingbot_provider_errors",
            "Errors the provider raised or reported, by kind",
            ["provider", "kind"],
            registry=r,
        )
        self.rate_limit_waits = Counter(
            "klingbot_rate_limit_waits",
            "Times a platform told the bot to wait before retrying",
            ["platform"],
            registry=r,
        )
        self.rate_limit_seconds = Counter(
            "klingbot_rate_limit_wait_seconds",
            "Seconds a platform told the bot to wait",
            ["platform"],
            registry=r,
        )
        self.queue = Gauge("klingbot_queue_length", "Jobs paid for, waiting for a slot", registry=r)
        self.running = Gauge("klingbot_jobs_running", "Jobs generating or delivering", registry=r)
        for tier in catalog.tiers:  # every series exists from the start, at zero
            self.presses.labels(tier.key)
            self.generation.labels(tier.key)
            for counter in (self.held, self.captured, self.released):
                counter.labels(tier.key)
            for state in TERMINAL:
                self.jobs.labels(tier.key, state)

    # --- the core's port -------------------------------------------------------------

    def command(self, platform: str, command: str) -> None:
        """A command or button press was handled."""
        self.commands.labels(platform, command).inc()

    def press(self, tier: str) -> None:
        """A tier button was pressed."""
        self.presses.labels(tier).inc()

    # --- observed around the store and the provider ----------------------------------

    def quote(self, platform: str) -> None:
        """A quote was offered."""
        self.quotes.labels(platform).inc()

    def job_moved(self, job: Job, state: JobState) -> None:
        """A job's state change was committed (with its ledger entry)."""
        if state == "held":
            self.held.labels(job.tier).inc(job.price)
        elif state == "succeeded":
            self.captured.labels(job.tier).inc(job.price)
            began = job.started_at or job.submitted_at
            if began is not None and job.finished_at is not None:
                self.generation.labels(job.tier).observe(max(0, job.finished_at - began))
        if state in ("failed", "cancelled"):
            self.released.labels(job.tier).inc(job.price)
        if state in TERMINAL:
            self.jobs.labels(job.tier, state).inc()

    def provider_error(self, kind: str) -> None:
        """The provider raised or reported an error of this kind."""
        self.provider_errors.labels(self.provider, kind).inc()

    def rate_limited(self, platform: str, seconds: float) -> None:
        """A platform told the bot to wait ``seconds`` before retrying."""
        self.rate_limit_waits.labels(platform).inc()
        self.rate_limit_seconds.labels(platform).inc(max(0.0, seconds))

    def watch_runner(self, runner: JobRunner) -> None:
        """Read the queue's length and the running jobs from ``runner`` at each scrape."""
        self.queue.set_function(runner.waiting_count)
        self.running.set_function(runner.running_count)

    def watch_roles(self, roles: Roles) -> None:
        """Show at each scrape which roles this replica holds (``klingbot_role_held{role}``)."""
        self.registry.register(RolesHeld(roles))

    def watch_inputs(self, inputs: InputStore | Path) -> None:
        """Count the input images kept (files and bytes) at each scrape.

        Files in a folder are counted by the scrape itself; a store in the
        database (PostgreSQL) is asked by :meth:`refresh`, before each scrape.
        """
        if isinstance(inputs, FileInputStore):
            inputs = inputs.folder
        if isinstance(inputs, Path):
            self.registry.register(InputFiles(inputs))
            return
        stored = StoredInputs(inputs)
        self.registry.register(stored)
        self._refreshers.append(stored.refresh)

    async def refresh(self) -> None:
        """Read what the next scrape shows and only a query can tell (``/metrics`` calls it).

        A failed read keeps the last values (and is logged): the scrape goes on.
        """
        for refresher in self._refreshers:
            try:
                await refresher()
            except Exception as error:
                log.warning("a metric could not be read: %s", error)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


class RolesHeld:
    """A collector: 1 for each role this replica holds, 0 for each it stands by for."""

    def __init__(self, roles: Roles) -> None:
        self.roles = roles

    def describe(self) -> list[GaugeMetricFamily]:
        """The gauge, without values."""
        return [_roles_held()]

    def collect(self) -> list[GaugeMetricFamily]:
        """Whether each role claimed is held now."""
        family = _roles_held()
        for role in self.roles.claimed():
            family.add_metric([role.name], 1 if role.held else 0)
        return [family]


def _roles_held() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "klingbot_role_held",
        "1 while this replica holds the role (one replica at a time does its work)",
        labels=["role"],
    )


class InputFiles:
    """A collector: the members' input images on disk, as two gauges read at each scrape.

    What the disk holds, not what the database believes: a file left behind
    by a crash counts too. One ``scandir`` of one flat folder.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def describe(self) -> list[GaugeMetricFamily]:
        """The two gauges, without values (so registering them reads no folder)."""
        return [_input_files(), _input_bytes()]

    def collect(self) -> list[GaugeMetricFamily]:
        """Count the files and their bytes now."""
        usage = folder_usage(self.folder)
        return [_input_files(usage.files), _input_bytes(usage.bytes)]


class StoredInputs:
    """A collector: the members' input images an input store keeps (PostgreSQL's table).

    The store is asked by :meth:`refresh` (a query cannot run inside a
    scrape); the scrape shows what it last answered.
    """

    def __init__(self, inputs: InputStore) -> None:
        self.inputs = inputs
        self.usage = InputUsage(0, 0)

    async def refresh(self) -> None:
        """Ask the store now."""
        self.usage = await self.inputs.usage()

    def describe(self) -> list[GaugeMetricFamily]:
        """The two gauges, without values."""
        return [_input_files(), _input_bytes()]

    def collect(self) -> list[GaugeMetricFamily]:
        """What the store last answered."""
        return [_input_files(self.usage.files), _input_bytes(self.usage.bytes)]


def _input_files(value: int | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily("klingbot_input_files", "Members' input images kept", value=value)


def _input_bytes(value: int | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "klingbot_input_bytes", "Bytes of the members' input images kept", value=value
    )


@JobStore.register
class ObservedJobStore:
    """Any job store, reporting each committed quote, hold and state change.

    A wrapper, not a subclass: it works around SQLite's store, PostgreSQL's
    or a test's alike. Every call it does not observe goes to the wrapped
    store as it is (``__getattr__``), so a call the port gains later needs
    nothing here; it counts as a :class:`~bot.jobs.store.JobStore`.
    """

    def __init__(self, inner: JobStore, metrics: PrometheusMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (a copy being made): no endless recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def save_quote(self, quote: Quote, *, max_open: int | None = None) -> tuple[str, ...]:
        """Save, then count the quote."""
        freed = await self.inner.save_quote(quote, max_open=max_open)
        self.metrics.quote(quote.user.platform)
        return freed

    async def create_job(self, job: Job, *, max_active: int, now: int) -> Job:
        """Create (hold the price), then count the credits held."""
        created = await self.inner.create_job(job, max_active=max_active, now=now)
        self.metrics.job_moved(created, "held")
        return created

    async def transition(
        self,
        job_id: str,
        from_states: tuple[JobState, ...],
        to_state: JobState,
        *,
        now: int,
        **fields: Any,
    ) -> Job | None:
        """Move, then count the move if it happened."""
        moved = await self.inner.transition(job_id, from_states, to_state, now=now, **fields)
        if moved is not None and to_state not in from_states:
            self.metrics.job_moved(moved, to_state)
        return moved


class ObservedProvider(Provider):
    """A provider that counts the errors of the one it wraps."""

    def __init__(self, inner: Provider, metrics: PrometheusMetrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.name = inner.name
        self.stops_tasks = inner.stops_tasks
        self.remakes_clips = inner.remakes_clips

    async def _watch(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except ProviderError as error:
            self.metrics.provider_error(error.kind)
            raise

    async def submit(self, request: GenerationRequest) -> str:
        """The inner provider's submit."""
        return await self._watch(self.inner.submit(request))

    async def poll(self, task_id: str) -> TaskStatus:
        """The inner provider's poll; a failed task counts its error."""
        status: TaskStatus = await self._watch(self.inner.poll(task_id))
        if status.state == "failed":
            self.metrics.provider_error(status.error.kind if status.error else "provider")
        return status

    async def fetch(self, task_id: str, destination: Path) -> Path:
        """The inner provider's fetch."""
        return await self._watch(self.inner.fetch(task_id, destination))

    async def cancel(self, task_id: str) -> bool:
        """The inner provider's cancel."""
        return await self._watch(self.inner.cancel(task_id))

    async def find(self, request: GenerationRequest) -> str | None:
        """The inner provider's find."""
        return await self._watch(self.inner.find(request))

    async def result_link(self, task_id: str) -> str | None:
        """The inner provider's result link."""
        return await self._watch(self.inner.result_link(task_id))

    def listen(self, on_change: Callable[[str], None]) -> None:
        """The inner provider tells ``on_change`` of its tasks' changes."""
        self.inner.listen(on_change)

    async def close(self) -> None:
        """Close the inner provider."""
        await self.inner.close()


class RateLimitWatcher(logging.Handler):
    """Counts the platforms' "wait N seconds" log lines as rate-limit waits.

    Telegram: ``Telegram asked to wait %s s before %s%s`` (our flood control);
    Discord: discord.py's ``We are being rate limited. %s %s responded with
    429. Retrying in %.2f seconds.``. Attached to those two loggers only.
    """

    def __init__(self, metrics: PrometheusMetrics) -> None:
        super().__init__(level=logging.DEBUG)
        self.metrics = metrics

    def emit(self, record: logging.LogRecord) -> None:
        """Count the record if it is one of the two lines."""
        platform = RATE_LIMIT_LOGGERS.get(record.name)
        args = record.args if isinstance(record.args, tuple) else ()
        message = str(record.msg)
        try:
            if platform == "telegram" and message.startswith("Telegram asked to wait") and args:
                self.metrics.rate_limited(platform, float(args[0]))
            elif platform == "discord" and "Retrying in" in message and len(args) >= 3:
                self.metrics.rate_limited(platform, float(args[-1]))
        except (TypeError, ValueError):
            self.metrics.rate_limited(platform or "unknown", 0.0)

    def install(self) -> None:
        """Attach to the rate-limit loggers (DEBUG, so a quiet log level still counts)."""
        for name in RATE_LIMIT_LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(self)
            if logger.level == logging.NOTSET or logger.level > logging.WARNING:
                logger.setLevel(logging.WARNING)

    def uninstall(self) -> None:
        """Detach from the loggers."""
        for name in RATE_LIMIT_LOGGERS:
            logging.getLogger(name).removeHandler(self)


Check = Callable[[], Awaitable[str | None]]
"""A health check: None when healthy, else what is wrong."""

CHECK_TIMEOUT_S = 2.0


class OperationsServer:
    """``/metrics`` and ``/healthz`` over HTTP (aiohttp) on ``host:port``."""

    def __init__(self, metrics: PrometheusMetrics, listen: str) -> None:
        self.metrics = metrics
        host, _, port = listen.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.checks: dict[str, Check] = {}
        self.routes: list[tuple[str, Any]] = []
        """More ``GET`` routes (path, handler) on the same server, added before :meth:`start`."""
        self._runner: Any = None
        self._watcher = RateLimitWatcher(metrics)

    def add_check(self, name: str, check: Check) -> None:
        """Add a named check to ``/healthz``."""
        self.checks[name] = check

    async def start(self) -> None:
        """Listen (port 0: any free port, then ``self.port`` says which)."""
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        for path, handler in self.routes:
            app.router.add_get(path, handler)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.create_server((self.host, self.port), family=family)
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._watcher.install()
        log.info("metrics and health on http://%s:%d/metrics and /healthz", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening."""
        self._watcher.uninstall()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def health(self) -> dict[str, str]:
        """Every check's result: ``ok`` or what is wrong."""
        results: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                problem = await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
            except TimeoutError:
                problem = f"no answer within {CHECK_TIMEOUT_S:g} s"
            except Exception as error:
                problem = f"{type(error).__name__}: {error}"
            results[name] = problem or "ok"
        return results

    async def _metrics(self, request: Any) -> Any:
        from aiohttp import web

        await self.metrics.refresh()
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: Any) -> Any:
        from aiohttp import web

        started = time.monotonic()
        results = await self.health()
        healthy = all(value == "ok" for value in results.values())
        body = {
            "status": "ok" if healthy else "failing",
            "checks": results,
            "seconds": round(time.monotonic() - started, 3),
        }
        return web.Response(
            text=json.dumps(body) + "\n",
            status=200 if healthy else 503,
            content_type="application/json",
        )
