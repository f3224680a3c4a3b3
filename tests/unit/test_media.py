"""The /gen input checks: images by content and size, prompts by length and blocked words."""

from __future__ import annotations

import pytest

from bot.errors import UserError
from bot.i18n import LOCALES, Translator, catalog
from bot.media import (
    MAX_IMAGE_BYTES,
    MAX_PROMPT,
    MESSAGE_KEYS,
    ImageInfo,
    check_file_size,
    check_prompt,
    inspect_image,
    sniff,
)
from bot.replies import text as message
from tests.unit import images


def refusal(data: bytes) -> UserError:
    with pytest.raises(UserError) as caught:
        inspect_image(data)
    return caught.value


def prompt_refusal(text: str | None, **options) -> UserError:
    with pytest.raises(UserError) as caught:
        check_prompt(text, **options)
    return caught.value


# -- accepted images ------------------------------------------------------------------


def test_a_jpeg_is_accepted():
    data = images.jpeg(400, 300)
    assert inspect_image(data) == ImageInfo("jpeg", ".jpg", 400, 300, len(data))


def test_a_png_is_accepted():
    data = images.png(300, 400)
    assert inspect_image(data) == ImageInfo("png", ".png", 300, 400, len(data))


@pytest.mark.parametrize(
    ("width", "height"),
    [(300, 300), (750, 300), (300, 750), (8000, 3200), (3200, 8000)],
    ids=["300px-square", "2.5:1", "1:2.5", "8000px-wide", "8000px-tall"],
)
def test_the_limits_are_inclusive(width, height):
    info = inspect_image(images.flat_png(width, height))
    assert (info.width, info.height) == (width, height)


def test_the_limits_are_inclusive_for_jpeg_too():
    info = inspect_image(images.jpeg(750, 300))
    assert (info.format, info.width, info.height) == ("jpeg", 750, 300)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P"])
def test_png_colour_modes_are_accepted(mode):
    data = images.encode(images.noise(300, 300, "L").convert(mode), "PNG")
    assert inspect_image(data).format == "png"


def test_an_animated_png_is_accepted_as_a_png():
    assert inspect_image(images.apng()).format == "png"


def test_exif_rotation_reports_the_size_as_shown():
    info = inspect_image(images.jpeg_with_orientation(400, 300, orientation=6))
    assert (info.width, info.height) == (300, 400)


def test_exactly_10_mb_passes_the_size_check():
    data = images.PNG_SIGNATURE + bytes(MAX_IMAGE_BYTES - 8)
    assert refusal(data).key == "image.corrupt"


# -- refused images -------------------------------------------------------------------


def test_an_empty_file_is_refused():
    assert refusal(b"").key == "image.empty"


def test_over_10_mb_is_refused_before_decoding():
    error = refusal(b"\xff\xd8\xff" + bytes(MAX_IMAGE_BYTES - 2))
    assert error.key == "image.file_too_big"
    assert error.params == {"size_mb": "10.1", "limit_mb": 10}


def test_the_size_in_mb_is_rounded_up():
    error = refusal(b"\x89PNG\r\n\x1a\n" + bytes(12 * 1024 * 1024))
    assert error.params["size_mb"] == "12.1"


@pytest.mark.parametrize(
    ("size", "shown"),
    [(123 * 1024 * 1024 // 10, "12.3"), (185 * 1024 * 1024 // 10, "18.5"), (0, None)],
)
def test_a_declared_size_is_judged_and_named_as_it_is(size, shown):
    with pytest.raises(UserError) as refused:
        check_file_size(size)
    if shown is None:
        assert refused.value.key == "image.empty"
    else:
        assert refused.value.params == {"size_mb": shown, "limit_mb": 10}
    check_file_size(MAX_IMAGE_BYTES)  # the limit itself is fine


@pytest.mark.parametrize(
    "data",
    [b"hello, this is a prompt", b"BMW is a car, not a bitmap", b"\x00" * 64, b"x"],
    ids=["text", "text-starting-BM", "zeros", "one-byte"],
)
def test_something_that_is_not_an_image_is_refused(data):
    assert refusal(data).key == "image.not_image"


@pytest.mark.parametrize(
    ("fmt", "key"),
    [
        ("GIF", "image.gif"),
        ("WEBP", "image.webp"),
        ("BMP", "image.bmp"),
        ("TIFF", "image.tiff"),
        ("PDF", "image.pdf"),
        ("ICO", "image.not_image"),
    ],
)
def test_other_image_formats_made_by_pillow_are_named(fmt, key):
    # Only bytes reach inspect_image, so a GIF uploaded as photo.jpg is still a GIF.
    data = images.encode(images.noise(64, 64), fmt)
    assert refusal(data).key == key


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "image.pdf"),
        (images.ftyp(b"heic", b"mif1", b"heic"), "image.heic"),
        (images.ftyp(b"heix", b"mif1"), "image.heic"),
        (images.ftyp(b"mif1", b"heic"), "image.heic"),
        (images.ftyp(b"msf1", b"hevc"), "image.heic"),
        (images.ftyp(b"avif", b"mif1", b"miaf"), "image.avif"),
        (images.ftyp(b"mif1", b"avif", b"miaf"), "image.avif"),
        (images.ftyp(b"isom", b"iso2", b"avc1", b"mp41"), "image.video"),
        (images.ftyp(b"qt  ", b"qt  "), "image.video"),
        (images.ftyp(b"zzzz"), "image.not_image"),
    ],
    ids=[
        "pdf",
        "heic",
        "heix",
        "mif1-heic",
        "msf1",
        "avif",
        "mif1-avif",
        "mp4",
        "mov",
        "ftyp-unknown",
    ],
)
def test_hand_made_headers_are_named(data, key):
    assert refusal(data).key == key


@pytest.mark.parametrize(
    "data",
    [images.jpeg(), images.png()],
    ids=["jpeg", "png"],
)
def test_a_file_cut_in_half_is_corrupt(data):
    error = refusal(data[: len(data) // 2])
    assert (error.key, error.params) == ("image.corrupt", {})


def test_a_jpeg_missing_its_end_is_corrupt():
    assert refusal(images.jpeg()[:-2]).key == "image.corrupt"


def test_a_progressive_jpeg_cut_in_half_is_corrupt():
    data = images.jpeg(progressive=True)
    assert refusal(data[: len(data) // 2]).key == "image.corrupt"


def test_flipped_png_pixel_data_is_corrupt():
    assert refusal(images.with_idat_flipped(images.png())).key == "image.corrupt"


@pytest.mark.parametrize(
    "data", [b"\xff\xd8\xff", b"\xff\xd8\xff\xe0" + bytes(40), images.png()[:30]]
)
def test_a_header_alone_is_corrupt(data):
    assert refusal(data).key == "image.corrupt"


@pytest.mark.parametrize(
    ("width", "height"),
    [(299, 400), (400, 299), (299, 299)],
)
def test_a_side_under_300_px_is_refused(width, height):
    error = refusal(images.png(width, height))
    assert error.key == "image.too_small"
    assert error.params == {"width": width, "height": height, "min": 300}


def test_a_small_jpeg_is_refused_too():
    assert refusal(images.jpeg(299, 400)).params == {"width": 299, "height": 400, "min": 300}


@pytest.mark.parametrize(
    ("width", "height"),
    [(30000, 1000), (1000, 30000), (8001, 4000), (30000, 30000), (2**31 - 1, 2**31 - 1)],
)
def test_a_side_over_8000_px_is_refused_from_the_header(width, height):
    # The pixel data is a 400x300 image's: decoding it would report corruption,
    # so the size error proves the header is checked first (and nothing huge is allocated).
    data = images.with_ihdr_size(images.png(), width, height)
    error = refusal(data)
    assert error.key == "image.too_large"
    assert error.params == {"width": width, "height": height, "max": 8000}


def test_a_claimed_size_in_range_with_the_wrong_pixels_is_corrupt():
    data = images.with_ihdr_size(images.png(400, 300), 800, 600)
    assert refusal(data).key == "image.corrupt"


@pytest.mark.parametrize(
    ("width", "height", "ratio"),
    [(300, 900, "1:3"), (900, 300, "3:1"), (751, 300, "2.51:1"), (300, 7500, "1:25")],
)
def test_an_aspect_ratio_beyond_2_5_is_refused(width, height, ratio):
    error = refusal(images.flat_png(width, height))
    assert error.key == "image.aspect"
    assert error.params == {"width": width, "height": height, "ratio": ratio, "limit": "2.5"}


def test_the_aspect_check_uses_the_header_too():
    data = images.with_ihdr_size(images.png(), 3000, 1000)
    assert refusal(data).params["ratio"] == "3:1"


def test_sniff_names_formats_by_content():
    assert sniff(images.jpeg()) == "jpeg"
    assert sniff(images.png()) == "png"
    assert sniff(b"GIF89a") == "gif"
    assert sniff(b"plain text") is None
    assert sniff(b"") is None


# -- prompts --------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t \r", "\x00\x07\x1b", " \x00 \x7f "])
def test_an_empty_prompt_is_refused_when_required(text):
    error = prompt_refusal(text, required=True)
    assert (error.key, error.params) == ("prompt.required", {})


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t \r", "\x00\x07\x1b"])
def test_an_empty_prompt_is_fine_with_an_image(text):
    assert check_prompt(text, required=False) == ""


def test_control_characters_go_and_whitespace_is_trimmed():
    assert check_prompt("  a cat\x00 on a\x1b[31m boat \n", required=True) == "a cat on a[31m boat"


def test_line_breaks_and_tabs_become_spaces():
    assert check_prompt("a cat\non a\tboat", required=True) == "a cat on a boat"


def test_emoji_joiners_and_format_marks_stay():
    family = "👨\u200d👩\u200d👧"
    flag = "🏳️\u200d🌈"
    text = f"{family} waving {flag} \u200bflags"
    assert check_prompt(text, required=True) == text


def test_a_lone_surrogate_is_dropped():
    assert check_prompt("cat\ud800 boat", required=True) == "cat boat"


def test_the_prompt_is_returned_cleaned():
    assert check_prompt("  一只猫在冲浪  ", required=False) == "一只猫在冲浪"


def test_2500_characters_are_fine():
    text = "a" * MAX_PROMPT
    assert check_prompt(text, required=True) == text


def test_2501_characters_are_refused_with_length_and_limit():
    error = prompt_refusal("a" * (MAX_PROMPT + 1), required=True)
    assert error.key == "prompt.too_long"
    assert error.params == {"length": 2501, "limit": 2500}


def test_2500_chinese_characters_are_fine():
    text = "猫" * MAX_PROMPT
    assert check_prompt(text, required=True) == text
    assert prompt_refusal(text + "猫", required=True).params["length"] == 2501


def test_length_is_counted_after_cleaning():
    text = "  \x00" + "a" * MAX_PROMPT + "\x00\n  "
    assert check_prompt(text, required=True) == "a" * MAX_PROMPT


@pytest.mark.parametrize(
    "text",
    [
        "a bad idea",
        "a BAD idea",
        "a Bad idea",
        "abadidea",
        "a b a d idea",
        "a B\tA D idea",
        "a b\u200ba\u200bd idea",
        "a ｂａｄ idea",
    ],
)
def test_a_blocked_word_is_found_in_any_case_and_spacing(text):
    error = prompt_refusal(text, required=True, blocked_words=["bad"])
    assert (error.key, error.params) == ("prompt.blocked", {})


def test_the_blocked_message_names_no_word():
    error = prompt_refusal("so bad", required=True, blocked_words=["Bad"])
    assert "bad" not in str(error).casefold()
    assert error.params == {}


def test_a_blocked_phrase_matches_with_or_without_its_spaces():
    for text in ("very bad thing", "verybadthing", "VERY  BAD THING"):
        assert (
            prompt_refusal(text, required=True, blocked_words=["Very Bad"]).key == "prompt.blocked"
        )


def test_blocked_words_in_chinese_and_german_casefolding():
    assert (
        prompt_refusal("一只 坏 猫", required=True, blocked_words=["坏猫"]).key == "prompt.blocked"
    )
    assert (
        prompt_refusal("STRASSE", required=True, blocked_words=["straße"]).key == "prompt.blocked"
    )


def test_clean_prompts_and_empty_blocked_words_pass():
    assert (
        check_prompt("a good idea", required=True, blocked_words=["bad", "", "  "]) == "a good idea"
    )


def test_an_empty_prompt_is_not_blocked():
    assert check_prompt("  ", required=False, blocked_words=["bad"]) == ""


def test_the_negative_prompt_names_its_own_field():
    too_long = prompt_refusal("a" * 2501, required=False, field="negative")
    assert (too_long.key, too_long.params) == ("negative.too_long", {"length": 2501, "limit": 2500})
    blocked = prompt_refusal("BAD", required=False, blocked_words=["bad"], field="negative")
    assert blocked.key == "negative.blocked"
    assert prompt_refusal(" ", required=True, field="negative").key == "negative.required"
    assert check_prompt(" blur ", required=False, field="negative") == "blur"


def test_an_unknown_field_is_a_programming_error():
    with pytest.raises(ValueError, match="field"):
        check_prompt("x", required=True, field="title")


# -- every refusal has a message ----------------------------------------------------------

REFUSALS = {
    "image.empty": lambda: inspect_image(b""),
    "image.file_too_big": lambda: inspect_image(images.PNG_SIGNATURE + bytes(MAX_IMAGE_BYTES)),
    "image.not_image": lambda: inspect_image(b"hello"),
    "image.gif": lambda: inspect_image(b"GIF89a" + bytes(20)),
    "image.webp": lambda: inspect_image(b"RIFF\x00\x00\x00\x00WEBPVP8 "),
    "image.heic": lambda: inspect_image(images.ftyp(b"heic")),
    "image.avif": lambda: inspect_image(images.ftyp(b"avif")),
    "image.bmp": lambda: inspect_image(images.encode(images.noise(8, 8), "BMP")),
    "image.tiff": lambda: inspect_image(b"II*\x00" + bytes(20)),
    "image.pdf": lambda: inspect_image(b"%PDF-1.4"),
    "image.video": lambda: inspect_image(images.ftyp(b"isom")),
    "image.too_small": lambda: inspect_image(images.flat_png(299, 300)),
    "image.too_large": lambda: inspect_image(images.with_ihdr_size(images.png(), 30000, 1000)),
    "image.aspect": lambda: inspect_image(images.flat_png(300, 900)),
    "image.corrupt": lambda: inspect_image(images.png()[:500]),
    "prompt.required": lambda: check_prompt(" ", required=True),
    "prompt.too_long": lambda: check_prompt("a" * 2501, required=True),
    "prompt.blocked": lambda: check_prompt("bad", required=True, blocked_words=["bad"]),
    "negative.required": lambda: check_prompt(" ", required=True, field="negative"),
    "negative.too_long": lambda: check_prompt("a" * 2501, required=False, field="negative"),
    "negative.blocked": lambda: check_prompt(
        "bad", required=False, blocked_words=["bad"], field="negative"
    ),
}


def test_message_keys_lists_every_refusal():
    assert set(REFUSALS) == MESSAGE_KEYS
    for key, refuse in REFUSALS.items():
        with pytest.raises(UserError) as caught:
            refuse()
        assert caught.value.key == key


@pytest.mark.parametrize("locale", LOCALES)
def test_every_refusal_renders(locale):
    assert set(catalog(locale)) >= MESSAGE_KEYS, sorted(MESSAGE_KEYS - set(catalog(locale)))
    translate = Translator(locale)
    for refuse in REFUSALS.values():
        with pytest.raises(UserError) as caught:
            refuse()
        rendered = translate(message(caught.value.key, **caught.value.params))
        assert "{" not in rendered
        assert "JPG" in rendered or caught.value.key.startswith(("prompt.", "negative."))
