"""Floods cost nothing: open quotes and the quote rate per member, in the console and the process.

A member's open quotes are capped (a new one closes their oldest and removes
its image at once) and so are their quote requests per minute (a translated
"slow down" that stores nothing); an image over the size limit is named at
its real size.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from app.bootstrap import open_core
from tests.e2e.conftest import GenConsole, fast_settings, run_cli
from tests.unit.fakes import FakeClock

MB = 1024 * 1024


def inputs_on_disk(gen: GenConsole) -> list[Path]:
    folder = gen.settings.inputs_dir
    return sorted(folder.iterdir()) if folder.exists() else []


def gauges(gen: GenConsole) -> dict[str, float]:
    exposition = gen.deps.metrics.exposition().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name.startswith("klingbot_input_")
    }


async def test_a_new_quote_closes_the_oldest_beyond_five_and_removes_its_image(tmp_path):
    clock = FakeClock()
    settings = fast_settings(
        tmp_path, max_open_quotes=5, quotes_per_minute=100, metrics_listen="127.0.0.1:0"
    )
    async with open_core(settings, clock=clock) as deps:
        gen = GenConsole(settings, deps)
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.push(chat, "/gen sample the first one")
        first = gen.button("Standard ·")
        for n in range(2, 8):
            await gen.push(chat, f"/gen sample quote {n}")
        on_disk = inputs_on_disk(gen)
        assert len(on_disk) == 5
        assert gauges(gen) == {
            "klingbot_input_files": 5,
            "klingbot_input_bytes": sum(path.stat().st_size for path in on_disk),
        }

        closed = await gen.push(chat, first)
        assert closed.endswith(
            "This quote was closed by your newer ones: you can have 5 open quotes at a time."
            " Nothing was charged."
        )
        assert await gen.push(chat, "/balance") == "Your balance: 100 credits (¥10.00)."
        # The five newest still work.
        chosen = await gen.push(chat, gen.button("Standard ·"))
        assert "✅ Standard chosen: 20 credits (¥2.00) held for job" in chosen


async def test_the_sixth_quote_in_a_minute_is_told_to_slow_down_and_stores_nothing(tmp_path):
    clock = FakeClock()
    settings = fast_settings(tmp_path, max_open_quotes=5, quotes_per_minute=5)
    async with open_core(settings, clock=clock) as deps:
        gen = GenConsole(settings, deps)
        chat, zh = gen.chat(), gen.chat(user="ming", lang="zh-CN")
        for n in range(5):
            assert "Pick a tier" in await gen.push(chat, f"/gen sample quote {n}")
            clock.advance(10)
        slow = await gen.push(chat, "/gen sample one too many")
        assert slow == (
            "Slow down: 5 quotes a minute at most. Try again in 10 s. Nothing was charged."
        )
        assert len(inputs_on_disk(gen)) == 5
        for n in range(5):  # another member has a minute of their own
            await gen.push(zh, f"/gen sample 第 {n} 个")
        assert await gen.push(zh, "/gen sample 太多了") == (
            "请慢一点：每分钟最多 5 个报价。请 60 秒后再试，没有扣费。"
        )
        clock.advance(10)  # the first request leaves the minute
        assert "Pick a tier" in await gen.push(chat, "/gen sample again")


def test_the_console_names_an_image_over_the_limit_at_its_real_size(tmp_path):
    for name, size in (("big.jpg", 123 * MB // 10), ("bigger.jpg", 185 * MB // 10)):
        with (tmp_path / name).open("wb") as file:
            file.write(b"\xff\xd8\xff\xe0")
            file.truncate(size)  # sparse: nothing is written, the size is real
    result = run_cli(
        "console", cwd=tmp_path, stdin="/gen big.jpg a cat\n/gen bigger.jpg a cat\n/balance\n"
    )
    assert result.returncode == 0, result.stderr
    limit = " over the 10 MB limit. Send a smaller JPG or PNG"
    assert f"That image is 12.3 MB,{limit}" in result.stdout
    assert f"That image is 18.5 MB,{limit}" in result.stdout
    assert "Pick a tier" not in result.stdout
    inputs = tmp_path / "klingbot-data" / "inputs"  # beside the default database
    assert (tmp_path / "klingbot.db").exists() and not (inputs.exists() and any(inputs.iterdir()))


async def test_reroll_counts_as_a_quote_and_closing_it_keeps_the_jobs_image(tmp_path):
    clock = FakeClock()
    settings = fast_settings(tmp_path, max_open_quotes=2, quotes_per_minute=4)
    async with open_core(settings, clock=clock) as deps:
        gen = GenConsole(settings, deps)
        await deps.generation.runner.start()
        chat = gen.chat()
        await gen.push(chat, "/topup me 100")
        await gen.push(chat, "/gen sample a robot waves")
        await gen.push(chat, gen.button("Standard ·"))
        await gen.settle()
        [image] = inputs_on_disk(gen)
        first = gen.button("Reroll")
        for _ in range(3):  # three quotes of the job's image: the first is closed
            assert "Pick a tier" in await gen.push(chat, first)
        assert inputs_on_disk(gen) == [image]  # the job still names it: kept
        slow = await gen.push(chat, gen.button("Other tier"))
        assert slow.startswith("Slow down: 4 quotes a minute at most. Try again in 60 s.")
        clock.advance(60)
        assert "High Quality ·" in await gen.push(chat, gen.button("Other tier"))
        assert await gen.push(chat, "/balance") == "Your balance: 80 credits (¥8.00)."
