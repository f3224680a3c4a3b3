"""Bad /gen input through the console: a clear message in the member's language, no charge."""

import pytest

from tests.unit import images


def files(tmp_path):
    """Every kind of bad file a member sends, written to disk as the console reads them."""
    jpeg = images.jpeg(800, 600)
    made = {
        "notes.txt": b"just some text, not a picture\n",
        "scan.pdf": b"%PDF-1.7\n1 0 obj << >> endobj\n",
        "empty.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "corrupt.png": images.with_idat_flipped(images.png(400, 300)),
        "anim.jpg": images.encode(images.noise(400, 300), "GIF"),
        "photo.jpg": images.encode(images.noise(400, 300), "WEBP"),
        "iphone.jpg": images.ftyp(b"heic", b"mif1") + b"\x00" * 64,
        "small.png": images.png(299, 400),
        "huge.png": images.with_ihdr_size(images.png(400, 300), 30000, 1000),
        "tall.png": images.png(300, 900),
        "big.jpg": b"\xff\xd8\xff" + b"\x00" * (10 * 1024 * 1024 + 10),
    }
    for name, data in made.items():
        (tmp_path / name).write_bytes(data)
    return made


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("notes.txt", "That doesn't look like an image. Send a JPG or PNG image."),
        ("scan.pdf", "That looks like a PDF."),
        ("empty.jpg", "That file is empty. Send a JPG or PNG image."),
        ("truncated.jpg", "I couldn't read that image: the file looks damaged or incomplete."),
        ("corrupt.png", "I couldn't read that image"),
        ("anim.jpg", "That looks like a GIF."),
        ("photo.jpg", "That looks like a WebP image."),
        ("iphone.jpg", "That looks like a HEIC photo"),
        ("small.png", "That image is 299 × 400 px; each side must be at least 300 px."),
        ("huge.png", "That image is 30,000 × 1,000 px; each side can be at most 8,000 px."),
        ("tall.png", "That image is 300 × 900 px, a 1:3 shape."),
        ("big.jpg", "over the 10 MB limit"),
        ("missing.jpg", "There is no file missing.jpg."),
    ],
)
async def test_bad_images_cost_nothing(gen, tmp_path, name, message):
    files(tmp_path)
    chat = gen.chat()
    await gen.push(chat, "/topup me 100")
    answer = await gen.push(
        chat, f"/gen {tmp_path / name if name != 'missing.jpg' else name} a cat"
    )
    assert message in answer
    assert "Pick a tier" not in answer and "Traceback" not in answer
    assert await gen.push(chat, "/balance") == "Your balance: 100 credits (¥10.00)."


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/gen sample " + "x" * 2501, "Your prompt is 2,501 characters long; the limit is 2,500."),
        ("/gen", "Please describe the video you want: the prompt can't be empty."),
        ("/gen    \x07\x1b  ", "Please describe the video you want"),
        ("/gen sample a cat --duration 7", "A clip is 5 or 10 seconds long, not 7."),
        (
            "/gen sample a cat --negative " + "n" * 2501,
            "Your negative prompt (what to avoid) is 2,501",
        ),
    ],
)
async def test_bad_prompts_and_options(gen, line, message):
    chat = gen.chat()
    answer = await gen.push(chat, line)
    assert message in answer and "Pick a tier" not in answer


async def test_an_image_alone_is_enough(gen):
    chat = gen.chat()
    answer = await gen.push(chat, "/gen sample")
    assert "🎬 Quote for a 5 s clip of your image. Pick a tier:" in answer


async def test_chinese_messages(gen, tmp_path):
    files(tmp_path)
    chat = gen.chat(lang="zh-CN")
    answer = await gen.push(chat, f"/gen {tmp_path / 'anim.jpg'} 一只猫")
    assert answer.startswith("这看起来是 GIF 动图。请改发 JPG 或 PNG 图片")
    await gen.push(chat, "/topup me 100")
    quote = await gen.push(chat, "/gen sample 一只猫在跳舞")
    assert "请选择档位" in quote and "高品质 · 1080p · 35 灵感值（¥3.50）" in quote


async def test_blocked_words_refuse_before_any_quote(tmp_path):
    from app.bootstrap import open_core
    from tests.e2e.conftest import GenConsole, fast_settings

    settings = fast_settings(tmp_path, blocked_words=("forbidden",))
    async with open_core(settings) as deps:
        gen = GenConsole(settings, deps)
        chat = gen.chat()
        answer = await gen.push(chat, "/gen sample a FoRbIdDeN dance")
        assert answer == "I can't make a video from that prompt. Please rephrase it and try again."
        assert "forbidden" not in answer.lower()


async def test_a_tenth_concurrent_job_is_refused(tmp_path):
    from app.bootstrap import open_core
    from tests.e2e.conftest import GenConsole, fast_settings

    # Waits scaled up so nothing finishes while the queue fills.
    settings = fast_settings(tmp_path, time_scale=100.0)
    async with open_core(settings) as deps:
        gen = GenConsole(settings, deps)
        await deps.generation.runner.start()
        chat = gen.chat()
        await gen.push(chat, "/topup me 1000")
        answers = []
        for _ in range(10):
            await gen.push(chat, "/gen sample a cat")
            answers.append(await gen.push(chat, gen.button("Standard ·")))
        refused = [a for a in answers if "already have 7 videos queued or in progress" in a]
        assert len(refused) == 3  # 2 running + 5 queued; the 8th, 9th and 10th are refused
        assert await gen.push(chat, "/balance") == (
            "Your balance: 860 credits (¥86.00).\n"
            "On hold for 7 running jobs: 140 credits (¥14.00)."
        )
        await deps.generation.runner.stop()
