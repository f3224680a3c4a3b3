"""The signed clip links (``bot.jobs.links``), served on the bot's HTTP server.

``GET /clips/<job id>.mp4?expires=...&sig=...`` answers the clip, with
range requests (players seek, downloads resume), while the link is valid and
the clip is kept; every other case (a changed or expired link, an unknown
job, a clip removed by retention or missing from disk) is the same plain
404, so a link reveals nothing once it no longer works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.clock import Clock
from bot.jobs.links import ClipLinks
from bot.jobs.store import JobStore

ROUTE = "/clips/{name}"

SERVABLE_STATES = ("succeeded", "delivered")


class ClipLinkRoute:
    """Answers ``GET`` (and ``HEAD``) of a signed clip link."""

    def __init__(self, links: ClipLinks, store: JobStore, clock: Clock) -> None:
        self.links = links
        self.store = store
        self.clock = clock

    async def serve(self, request: Any) -> Any:
        """The clip (aiohttp's ``FileResponse`` handles ranges), or 404."""
        from aiohttp import web

        path = await self._clip(request)
        if path is None:
            return web.Response(status=404, text="404: Not Found\n")
        return web.FileResponse(
            path,
            headers={
                "Content-Type": "video/mp4",
                "Content-Disposition": f'inline; filename="{path.name}"',
                "Cache-Control": "private, max-age=3600",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def _clip(self, request: Any) -> Path | None:
        name: str = request.match_info["name"]
        job_id = name.removesuffix(".mp4")
        expires = request.query.get("expires", "")
        signature = request.query.get("sig", "")
        if not self.links.valid(job_id, expires, signature, self.clock.now()):
            return None
        job = await self.store.get_job(job_id)
        if (
            job is None
            or job.job_id != job_id
            or job.state not in SERVABLE_STATES
            or job.result_path is None
            or job.clip_removed_at is not None
        ):
            return None
        path = Path(job.result_path)
        return path if path.is_file() else None
