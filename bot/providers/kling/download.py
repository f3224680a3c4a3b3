"""Download a finished clip from Kling's result URL, with a size cap and a content check.

The result URL is a plain CDN link that expires: no token is ever sent to it.
The body goes to ``<destination>.part`` beside the destination (in the data
directory), is opened with PyAV (it must be an MP4 with a video stream, or
the member would be charged for a broken file), and only then is moved into
place. A 404, a 5xx or a timeout is :class:`RetryableError` (the runner
retries briefly, then fails the job and gives the credits back); an oversized
or unplayable file is a plain :class:`ProviderError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import av
import httpx

from bot.providers.base import ProviderError, RetryableError
from bot.providers.kling.client import DOWNLOAD_READ_TIMEOUT_S, timeouts

CHUNK_BYTES = 1 << 16


async def download_clip(
    http: httpx.AsyncClient, url: str, destination: Path, *, max_bytes: int
) -> Path:
    """Fetch ``url`` into ``destination``; raise RetryableError or ProviderError on failure."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    try:
        async with http.stream(
            "GET", url, timeout=timeouts(DOWNLOAD_READ_TIMEOUT_S), follow_redirects=True
        ) as response:
            if response.status_code in (404, 403, 410) or response.status_code >= 500:
                raise RetryableError(f"result URL answered HTTP {response.status_code}")
            if response.status_code != 200:
                raise ProviderError(f"result URL answered HTTP {response.status_code}")
            declared = int(response.headers.get("content-length") or 0)
            if declared > max_bytes:
                raise ProviderError(f"the clip is {declared} bytes, over the {max_bytes} cap")
            size = 0
            with partial.open("wb") as file:
                async for chunk in response.aiter_bytes(CHUNK_BYTES):
                    size += len(chunk)
                    if size > max_bytes:
                        raise ProviderError(f"the clip is over the {max_bytes} byte cap")
                    file.write(chunk)
        await asyncio.to_thread(check_mp4, partial)
        os.replace(partial, destination)
    except httpx.TimeoutException:
        raise RetryableError("the result download timed out") from None
    except httpx.HTTPError as error:
        raise RetryableError(f"the result download failed: {type(error).__name__}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return destination


def check_mp4(path: Path) -> None:
    """Raise ProviderError unless ``path`` is an MP4 whose first video frame decodes."""
    try:
        with av.open(str(path)) as container:
            if "mp4" not in container.format.name:
                raise ProviderError(f"the result is {container.format.name}, not an MP4")
            if not container.streams.video:
                raise ProviderError("the result has no video stream")
            next(container.decode(container.streams.video[0]))
    except ProviderError:
        raise
    except (av.FFmpegError, StopIteration, OSError) as error:
        raise ProviderError(f"the result is not a playable video: {error}") from None
