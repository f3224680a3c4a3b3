"""/metrics (parsed by the Prometheus client's own parser), /healthz and job log lines."""

from __future__ import annotations

import io
import json
import logging

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from adapters.telegram import build_application, running
from app.bootstrap import open_core
from app.logs import setup_logging
from app.serve import Served, start_operations, watch_telegram
from tests.adapters.conftest import TOKEN, VirtualTime
from tests.adapters.standin import BotApiStandIn, Member
from tests.e2e.conftest import fast_settings


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_and_health_after_a_gen_on_telegram(tmp_path):
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    async with BotApiStandIn(TOKEN) as api:
        settings = fast_settings(
            tmp_path,
            telegram_token=TOKEN,
            telegram_base_url=api.base_url,
            welcome_credits=500,
            metrics_listen="127.0.0.1:0",
            log_format="json",
            tiers={"master": {"resolution": 360}},  # a quick render
        )
        try:
            setup_logging(settings, stream=stream)
            async with open_core(settings) as deps:
                application = build_application(settings, deps, timing=VirtualTime().timing())
                served = Served()
                async with running(application, poll_timeout_s=5):
                    watch_telegram(application, served)
                    await deps.generation.runner.start()
                    server = await start_operations(settings, deps, served)
                    assert server is not None
                    base = f"http://127.0.0.1:{server.port}"
                    try:
                        alice = Member(api, 1001, "Alice")
                        api.fail_next("sendMessage", retry_after=3)  # Telegram's flood limit
                        alice.send("/gen a robot waves to the camera")
                        quote = await api.wait_for(
                            "sendMessage", chat_id=1001, where=lambda c: c.status == 200
                        )
                        alice.press(quote.result, "Master")
                        await api.wait_for("sendVideo", chat_id=1001)
                        await deps.generation.runner.idle()
                        async with aiohttp.ClientSession() as http:
                            async with http.get(f"{base}/metrics") as response:
                                assert response.status == 200
                                assert response.headers["Content-Type"].startswith("text/plain")
                                exposition = await response.text()
                            async with http.get(f"{base}/healthz") as response:
                                healthy = (response.status, await response.json())
                            await deps.generation.runner.stop()
                            async with http.get(f"{base}/healthz") as response:
                                stopped = (response.status, await response.json())
                    finally:
                        await server.stop()
        finally:
            root.handlers[:], _ = saved
            root.setLevel(saved[1])

    values = samples(exposition)
    price = deps.catalog.tier("master").price(5)
    expected = {
        ("klingbot_commands_total", (("command", "gen"), ("platform", "telegram"))): 1,
        ("klingbot_commands_total", (("command", "choose"), ("platform", "telegram"))): 1,
        ("klingbot_quotes_total", (("platform", "telegram"),)): 1,
        ("klingbot_presses_total", (("tier", "master"),)): 1,
        ("klingbot_presses_total", (("tier", "standard"),)): 0,
        ("klingbot_jobs_total", (("state", "delivered"), ("tier", "master"))): 1,
        ("klingbot_jobs_total", (("state", "failed"), ("tier", "master"))): 0,
        ("klingbot_generation_seconds_count", (("tier", "master"),)): 1,
        ("klingbot_credits_held_total", (("tier", "master"),)): price,
        ("klingbot_credits_captured_total", (("tier", "master"),)): price,
        ("klingbot_credits_released_total", (("tier", "master"),)): 0,
        ("klingbot_rate_limit_waits_total", (("platform", "telegram"),)): 1,
        ("klingbot_rate_limit_wait_seconds_total", (("platform", "telegram"),)): 3,
        ("klingbot_queue_length", ()): 0,
        ("klingbot_jobs_running", ()): 0,
        # The one process of an SQLite database holds every role it has a duty for.
        ("klingbot_role_held", (("role", "retention"),)): 1,
        ("klingbot_role_held", (("role", "telegram-polling"),)): 1,
    }
    assert {key: values.get(key) for key in expected} == expected
    assert ("klingbot_generation_seconds_bucket", (("le", "+Inf"), ("tier", "master"))) in values
    assert not [key for key in values if key[0] == "klingbot_provider_errors_total"]

    assert healthy == (
        200,
        {
            "status": "ok",
            "checks": {"database": "ok", "runner": "ok", "telegram": "ok"},
            "seconds": healthy[1]["seconds"],
        },
    )
    assert stopped[0] == 503 and stopped[1]["checks"]["runner"] == "the job runner is stopped"

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    job_lines = [line for line in lines if "job" in line]
    assert job_lines, lines
    assert {(line["tier"], line["platform"], line["user"]) for line in job_lines} == {
        ("master", "telegram", "telegram:1001")
    }
    assert any(line["message"].startswith("Telegram asked to wait 3 s") for line in lines)
    assert TOKEN not in stream.getvalue() and TOKEN.partition(":")[2] not in stream.getvalue()
