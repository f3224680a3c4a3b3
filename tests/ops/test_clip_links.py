"""Signed clip links: a clip too large for its chat goes as one, served by the bot's HTTP server.

The core runs on a real SQLite file with the scripted provider and virtual
time; the link goes out in the member's chat, and the bot's own
``OperationsServer`` (aiohttp on 127.0.0.1) answers it: the clip while the
link is valid (ranges too), 404 for a changed link, once it expired, and
once retention removed the clip.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from app.serve import Served, start_operations
from bot.jobs.links import ClipLinks
from tests.support.runner_harness import harness, service

PUBLIC = "https://bot.example.com"
LINK = re.compile(
    re.escape(PUBLIC)
    + r"/clips/(?P<job>[0-9a-f]{32})\.mp4\?expires=(?P<expires>\d+)&sig=(?P<sig>[\w-]+)"
)


def test_a_link_is_valid_only_unchanged_and_before_it_expires():
    links = ClipLinks(PUBLIC, b"k" * 32, ttl_s=3600)
    job = "0123456789abcdef0123456789abcdef"
    found = LINK.fullmatch(links.url(job, now=1000))
    assert found and found["job"] == job and found["expires"] == "4600"
    sig = found["sig"]
    assert links.valid(job, "4600", sig, now=4599)
    assert not links.valid(job, "4600", sig, now=4600)  # expired
    assert not links.valid(job, "4601", sig, now=1000)  # a later expiry, same signature
    assert not links.valid(job.replace("0", "1", 1), "4600", sig, now=1000)  # another job
    assert not links.valid(job, "4600", sig[:-1] + ("A" if sig[-1] != "A" else "B"), now=1000)
    assert not links.valid(job, "4600", "", now=1000)
    assert not links.valid("../../etc/passwd", "4600", sig, now=1000)
    other_key = ClipLinks(PUBLIC, b"j" * 32, ttl_s=3600)
    assert not other_key.valid(job, "4600", sig, now=1000)


async def test_a_clip_too_large_for_the_chat_goes_as_a_signed_link_served_with_ranges(
    tmp_path, tiny_clip
):
    provider = service(tiny_clip)
    async with harness(
        tmp_path,
        provider,
        public_url=PUBLIC,
        metrics_listen="127.0.0.1:0",
        link_ttl_h=72,
    ) as gen:
        gen.router.upload_limit = 10  # bytes: every clip is too large for this chat
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.order(chat, "a kite too large")
        await gen.settle()

        job = await gen.job("a kite too large")
        assert (job.state, job.delivery) == ("delivered", "link")
        [sent] = [s for s in gen.router.shown if "Download it here" in s.text]
        assert sent.text.startswith(
            f"Your clip for job {job.short_id} is too large to upload here. Download it here"
            " (the link works for 72 hours): https://bot.example.com/clips/"
        )
        assert str(tmp_path) not in sent.text
        found = LINK.search(sent.text)
        assert found and found["job"] == job.job_id
        assert await gen.balance(chat) == "Your balance: 80 credits (¥8.00)."
        clip = Path(job.result_path).read_bytes()

        server = await start_operations(gen.settings, gen.deps, Served())
        assert server is not None
        local = f"http://127.0.0.1:{server.port}"
        path = found.group(0).removeprefix(PUBLIC)
        try:
            async with aiohttp.ClientSession() as http:

                async def get(url: str, **headers: str) -> tuple[int, bytes, dict]:
                    async with http.get(local + url, headers=headers) as response:
                        return response.status, await response.read(), dict(response.headers)

                status, body, headers = await get(path)
                assert (status, body) == (200, clip)
                assert headers["Content-Type"] == "video/mp4"
                assert headers["Accept-Ranges"] == "bytes"

                status, body, headers = await get(path, Range="bytes=100-199")
                assert (status, body) == (206, clip[100:200])
                assert headers["Content-Range"] == f"bytes 100-199/{len(clip)}"

                sig = found["sig"]
                tampered = [
                    path.replace(sig, sig[::-1]),
                    path.replace("expires=", "expires=1"),
                    path.replace(job.job_id, job.job_id[::-1]),
                    path.split("&sig=")[0],
                    "/clips/" + job.job_id + ".mp4",
                ]
                for url in tampered:
                    assert (await get(url))[0] == 404, url

                gen.time.advance(72 * 3600)  # the link's lifetime is over
                assert (await get(path))[0] == 404
                gen.time.advance(-72 * 3600)
                assert (await get(path))[0] == 200

                # Retention removes the clip: the link no longer serves it.
                Path(job.result_path).unlink()
                await gen.deps.generation.store.note_clip_removed(job.job_id, now=gen.time.now())
                assert (await get(path))[0] == 404
        finally:
            await server.stop()
