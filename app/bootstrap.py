"""The one place that wires settings, storage, the provider and the runner into the core."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from app.backend import Storage, open_storage, roles_for, sole_runner
from app.lease import Lease, RunnerLease, take_runner_lease
from bot.clock import Clock, SystemClock
from bot.deps import Deps, Generation
from bot.errors import StorageUnavailable
from bot.inputs import FileInputStore, InputStore
from bot.jobs.links import ClipLinks, link_secret
from bot.jobs.outbox import OutboxRouter
from bot.jobs.retention import DAY, HOUR, Retention, RetentionSettings
from bot.jobs.runner import JobRunner, RunnerSettings
from bot.jobs.store import JobStore
from bot.jobs.waits import ExpectedWaits
from bot.metrics import NullMetrics
from bot.providers.base import Provider
from bot.providers.local.provider import LocalProvider
from bot.roles import RETENTION, Role, Roles
from bot.settings import Settings

log = logging.getLogger(__name__)

CONSOLE_TIME_SCALE = 0.1
"""The console demo's speed-up: Master's ~200 s wait becomes ~20 s."""


@asynccontextmanager
async def open_core(
    settings: Settings,
    *,
    clock: Clock | None = None,
    default_time_scale: float = 1.0,
    provider: Provider | None = None,
    runner_lease: RunnerLease | None = None,
) -> AsyncIterator[Deps]:
    """Open the database (migrating it), build the core, and close everything on exit.

    The database is the SQLite file ``KLINGBOT_DB`` or, with
    ``KLINGBOT_DATABASE_URL``, PostgreSQL (:mod:`app.backend`).

    The runner is built and has queued the unfinished jobs of earlier runs
    (``JobRunner.load``), but is not started: adapters register their outbox
    on ``deps.generation.outboxes`` and may take presses (queued, not run),
    then ``deps.generation.runner.start()`` runs the queue in order, so
    resumed jobs can reach their chats and no job is launched twice.
    Creates the (SQLite) database's folder and the data folder when they are
    missing. Raises StorageUnavailable when a folder cannot be created or
    the database cannot be opened or written.

    With ``runner_lease`` (``klingbot run`` and ``console``, the backend's
    :func:`app.backend.runner_lease_for`), the lease is taken before the
    database is opened and held until everything is closed; while another
    process holds it this raises :class:`~app.lease.RunnerBusy` and touches
    nothing.
    """
    assert settings.data_dir is not None
    if not settings.postgres:
        make_folder(settings.db.absolute().parent, "the database (KLINGBOT_DB)")
    make_folder(settings.data_dir.absolute(), "clips and images (KLINGBOT_DATA_DIR)")
    clock = clock or SystemClock()
    if settings.provider == "kling":
        settings.require_kling_keys()  # before any file is made
        default_time_scale = 1.0  # Kling takes the time it takes: nothing to speed up
    time_scale = settings.time_scale if settings.time_scale is not None else default_time_scale
    async with (
        _holding(runner_lease, settings.database_shown),
        _core(
            settings,
            clock,
            time_scale,
            provider,
            sole_runner=sole_runner(settings, runner_lease),
            roles=roles_for(settings, runner=runner_lease is not None),
            runs_jobs=runner_lease is not None,
        ) as deps,
    ):
        yield deps


@asynccontextmanager
async def open_wallets(settings: Settings, *, clock: Clock | None = None) -> AsyncIterator[Deps]:
    """The core without jobs, for the wallet commands: the ledger, and nothing that runs.

    No runner, provider or job store is built, so a ``klingbot wallet``
    command beside running replicas never loads (or on PostgreSQL claims)
    their jobs, and works whatever the provider's settings. On SQLite it
    holds the database's shared lease like every other process. Like
    ``open_core`` it creates the database, its folder and the data folder
    when they are missing.
    """
    assert settings.data_dir is not None
    if not settings.postgres:
        make_folder(settings.db.absolute().parent, "the database (KLINGBOT_DB)")
    make_folder(settings.data_dir.absolute(), "clips and images (KLINGBOT_DATA_DIR)")
    async with open_storage(settings) as storage, _sharing(storage, settings):
        yield Deps(
            catalog=settings.catalog(),
            ledger=storage.ledger,
            clock=clock or SystemClock(),
            moderators=frozenset(settings.moderators),
            max_topup=settings.max_topup,
            welcome_credits=settings.welcome_credits,
            stars_packs=settings.telegram_stars_packs,
            sku_packs=settings.discord_sku_credits,
            state=storage.state,
            preferences=storage.preferences,
        )


@asynccontextmanager
async def _holding(lease: RunnerLease | None, database: str) -> AsyncIterator[None]:
    """Hold the runner lease (if any) for as long as the block runs."""
    if lease is None:
        yield
        return
    await take_runner_lease(lease, database)
    try:
        yield
    finally:
        await lease.release()


@asynccontextmanager
async def _core(
    settings: Settings,
    clock: Clock,
    time_scale: float,
    provider: Provider | None,
    *,
    sole_runner: bool,
    roles: Roles,
    runs_jobs: bool = False,
) -> AsyncIterator[Deps]:
    """The core on an open database, the shared lease held; see :func:`open_core`.

    ``roles``: where the retention sweep and the adapters take the roles one
    replica at a time holds; given up when the core closes.

    ``sole_runner``: this process holds the runner lease, so the delivery
    claims in the database are those of runners killed mid-send; they are
    cleared, and their clips are sent at once rather than when the claims
    would have gone stale.

    ``runs_jobs`` (``klingbot run`` and ``console``): on a database replicas
    share, the runner owns its jobs by lease (``bot.jobs.leases``) and adopts
    those of replicas that died; a wallet command's core adopts nothing.
    """
    catalog = settings.catalog()
    metrics = None
    if settings.metrics_listen:
        from app.metrics import ObservedJobStore, ObservedProvider, PrometheusMetrics

        metrics = PrometheusMetrics(catalog, settings.provider)
    async with open_storage(settings) as storage, _sharing(storage, settings):
        store = ObservedJobStore(storage.jobs, metrics) if metrics else storage.jobs
        waits = ExpectedWaits(catalog, time_scale)
        await waits.load(store)
        provider = provider or build_provider(settings, time_scale)
        served = ObservedProvider(provider, metrics) if metrics else provider
        outboxes = OutboxRouter()
        inputs = build_inputs(settings, storage)
        state = storage.state
        links = None
        if settings.public_url:
            links = ClipLinks(
                settings.public_url, await link_secret(state), settings.link_ttl_h * HOUR
            )
        runner = JobRunner(
            store=store,
            provider=served,
            outbox=outboxes,
            catalog=catalog,
            clock=clock,
            waits=waits,
            clips_dir=settings.clips_dir,
            settings=RunnerSettings(
                per_user=settings.max_jobs_per_user,
                queue_per_user=settings.max_queue_per_user,
                per_provider=settings.max_jobs_per_provider,
                status_interval_s=settings.status_interval_s,
                poll_interval_s=settings.poll_interval_s,
                time_scale=time_scale,
                delivery_retry_s=settings.delivery_retry_h * HOUR,
                **_remote_pacing(settings),
            ),
            retention=build_retention(
                settings, store, clock, await roles.claim(RETENTION), inputs
            ),
            links=links,
            leases=storage.leases if runs_jobs else None,
            replica_id=settings.replica,
            lease_s=settings.job_lease_s,
            inputs=inputs,
        )
        # Before any adapter can take a press: a job of an earlier run is
        # queued from here, a new one by admit(), never one twice.
        if sole_runner and (cleared := await store.clear_delivery_claims()):
            log.info("cleared %d delivery claims a stopped runner left", cleared)
        await runner.load()
        if metrics is not None:
            metrics.watch_runner(runner)
            metrics.watch_inputs(inputs)
            metrics.watch_roles(roles)
        callbacks = await _serve_callbacks(settings, provider)
        try:
            yield Deps(
                catalog=catalog,
                ledger=storage.ledger,
                clock=clock,
                moderators=frozenset(settings.moderators),
                max_topup=settings.max_topup,
                welcome_credits=settings.welcome_credits,
                stars_packs=settings.telegram_stars_packs,
                sku_packs=settings.discord_sku_credits,
                generation=Generation(
                    store=store,
                    runner=runner,
                    waits=waits,
                    outboxes=outboxes,
                    inputs_dir=settings.inputs_dir,
                    inputs=inputs,
                    quote_ttl_s=settings.quote_ttl_s,
                    blocked_words=settings.blocked_words,
                    max_open_quotes=settings.max_open_quotes,
                    quotes_per_minute=settings.quotes_per_minute,
                ),
                state=state,
                preferences=storage.preferences,
                metrics=metrics or NullMetrics(),
                roles=roles,
                pace=storage.pace,
            )
        finally:
            await runner.stop()
            await roles.close()
            if callbacks is not None:
                await callbacks.stop()
            await provider.close()


@asynccontextmanager
async def _sharing(storage: Storage, settings: Settings) -> AsyncIterator[None]:
    """SQLite: hold the file's shared lease, so ``klingbot db restore`` refuses while this runs."""
    if storage.kind != "sqlite":
        yield
        return
    lease = Lease(settings.db)
    lease.share()
    try:
        yield
    finally:
        lease.release()


def build_inputs(settings: Settings, storage: Storage) -> InputStore:
    """Where members' images are kept: files in ``<data>/inputs`` on SQLite, a table on PostgreSQL.

    On PostgreSQL every replica reaches every image; each materializes the
    images of its own jobs into ``<data>/input-cache`` (docs/ARCHITECTURE.md).
    """
    files = FileInputStore(settings.inputs_dir)
    if storage.kind != "postgresql":
        return files
    from storage.postgres.inputs import PgInputStore

    assert settings.data_dir is not None
    return PgInputStore(storage.database, cache=settings.data_dir / "input-cache", files=files)


def build_retention(
    settings: Settings,
    store: JobStore,
    clock: Clock,
    role: Role | None = None,
    inputs: InputStore | None = None,
) -> Retention:
    """The sweep that removes input images and clips nothing needs (run by ``role``'s holder)."""
    return Retention(
        store,
        clock,
        role=role,
        inputs=inputs,
        replicas=settings.postgres,
        inputs_dir=settings.inputs_dir,
        clips_dir=settings.clips_dir,
        settings=RetentionSettings(
            input_keep_s=settings.input_retention_h * HOUR,
            clip_keep_s=settings.clip_retention_days * DAY or None,
            interval_s=settings.retention_sweep_interval_s,
        ),
    )


def make_folder(folder: Path, purpose: str) -> None:
    """Create ``folder`` and its parents if missing; a failure is one operator-readable line."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or str(error)
        message = f"cannot create the folder {folder} for {purpose}: {reason}"
        raise StorageUnavailable(message) from None


def build_provider(settings: Settings, time_scale: float) -> Provider:
    """The provider ``KLINGBOT_PROVIDER`` names; ConfigError when its settings are incomplete."""
    if settings.provider == "kling":
        from bot.providers.kling import kling_provider

        return kling_provider(settings, time_scale=time_scale)
    return LocalProvider(
        settings.data_dir / "renders",  # type: ignore[operator]
        time_scale=time_scale,
        max_renders=settings.max_local_renders,
    )


def _remote_pacing(settings: Settings) -> dict[str, object]:
    """Kling's polls back off up to a cap, and each tier has its own total timeout."""
    if settings.provider != "kling":
        return {}
    return {
        "poll_backoff_cap_s": settings.kling_poll_cap_s,
        "tier_timeouts_s": dict(settings.kling_timeouts_s),
    }


async def _serve_callbacks(settings: Settings, provider: Provider) -> Any:
    """With ``KLING_CALLBACK_URL``: listen for Kling's posts (each one only triggers a poll)."""
    from bot.providers.kling import KlingProvider

    if not settings.kling_callback_url or not isinstance(provider, KlingProvider):
        return None
    from bot.providers.kling.callback import CallbackServer

    server = CallbackServer(provider, settings.kling_callback_url, settings.kling_callback_listen)
    await server.start()
    return server
