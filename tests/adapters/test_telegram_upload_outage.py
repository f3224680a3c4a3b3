"""A paid clip reaches its Telegram member through an upload outage.

The real adapter talks to the Bot API stand-in, which answers every upload
with 502 Bad Gateway for the first 45 seconds after the press and takes
them again afterwards. The job runner runs on virtual time, so the retries'
waits take no real time: the clip must arrive in the same process, be paid
for once (read back from the ledger), and no message may name a path on
the bot's server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.console.chat import sample_image
from bot.commands import UserRef
from storage.audit import audit
from tests.adapters.conftest import MODERATOR_ID, telegram_bot
from tests.adapters.standin import buttons
from tests.adapters.upload_outage import OUTAGE_S, no_server_path, paid_for
from tests.e2e.scripted_provider import Script, ScriptedProvider
from tests.support.clock import VirtualTime
from tests.support.runner_harness import on_virtual_time

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


async def test_a_telegram_upload_outage_ends_with_the_clip_in_the_chat_paid_once(
    tmp_path, api, tiny_clip
):
    time = VirtualTime(monotonic_start=1_000.0)
    provider = ScriptedProvider(tiny_clip, Script(progress=()))
    async with telegram_bot(
        tmp_path,
        api,
        clock=time,
        provider=provider,
        rewire=lambda deps: on_virtual_time(deps, time),
        time_scale=1.0,
        status_interval_s=3.0,
        poll_interval_s=2.0,
    ) as telegram:
        alice = telegram.member(1001, "Alice", "alice")
        moderator = telegram.member(MODERATOR_ID, "Mod", "mod")
        since = len(api.calls)
        moderator.send("/topup telegram:1001 100")
        await api.wait_for("sendMessage", since=since, chat_id=MODERATOR_ID)
        since = len(api.calls)
        alice.send("/gen a robot waves", photo=sample_image(), size=(1280, 960))
        quote = await api.wait_for("sendMessage", since=since, chat_id=1001)

        outage_ends = time.elapsed + OUTAGE_S
        api.uploads_refused = lambda: time.elapsed < outage_ends
        alice.press(quote.result, "Standard")
        await telegram.idle()  # the press is handled: the job is queued
        await telegram.settle()
        await telegram.idle()

        [job] = await telegram.deps.generation.store.jobs_of(UserRef("telegram", "1001"), 5)
        uploads = api.of("sendVideo", since=since)
        assert [call.status for call in uploads][-1] == 200
        assert [call.status for call in uploads][:-1] == [502] * (len(uploads) - 1)
        assert len(uploads) >= 3  # refused, tried again without a restart, then taken
        assert uploads[-1].files["video"] == Path(job.result_path).read_bytes()
        assert (job.state, job.delivery) == ("delivered", "uploaded")
        assert job.delivery_attempts == len(uploads) - 1

        edits = api.of("editMessageText", since=since, chat_id=1001)
        waiting = [call for call in edits if "as soon as it does" in call.params["text"]]
        assert [call.params["text"] for call in waiting] == [
            f"✅ Standard · job {job.short_id} · your clip is ready (20 credits (¥2.00) paid)."
            " This chat did not accept it yet; I will send it as soon as it does."
        ]
        assert buttons(waiting[0]) == [("📤 Send again", f"resend:{job.job_id}")]
        assert edits[-1].params["text"].startswith(f"✅ Standard · job {job.short_id} · done in")
        texts = [
            call.params.get("text") or call.params.get("caption") or ""
            for call in api.calls[since:]
            if call.method in ("sendMessage", "editMessageText", "sendVideo", "sendDocument")
        ]
        no_server_path(texts, tmp_path)

        assert await paid_for(telegram.deps, UserRef("telegram", "1001"), job.job_id) == [
            "hold",
            "capture",
        ]
        assert await telegram.balance(1001) == 80
        assert await audit(telegram.deps.ledger.db) == []


