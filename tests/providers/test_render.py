"""Tests for the local renderer: real MP4 files, read back with PyAV.

Clips are rendered for real (no mocks). Tests that are not about resolution use
small frames to keep the whole file fast.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bot.providers.local import (
    MOTIONS,
    RenderRequest,
    RenderResult,
    choose_motion,
    frame_size,
    render_clip,
)
from bot.providers.local.motion import camera_at, crop_box
from bot.providers.local.render import decode_image
from bot.providers.local.titlecard import cjk_font_path, load_font, wrap_text
from tests.support.video import probe as read_clip

SAMPLE = Path(__file__).resolve().parents[2] / "bot" / "assets" / "sample.jpg"
LOW = 144  # frame height for tests that are not about resolution


# --- helpers -----------------------------------------------------------------


def make_image(width: int, height: int, fmt: str = "JPEG") -> bytes:
    """Return a detailed test picture (gradients, stripes, discs) as JPEG or PNG bytes."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels = np.stack(
        [
            np.broadcast_to(x, (height, width)),
            np.broadcast_to(y, (height, width)),
            (np.sin(x / 9) * np.cos(y / 7) * 127 + 128).astype(np.float32),
        ],
        axis=-1,
    ).astype(np.uint8)
    picture = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(picture)
    for i in range(12):
        cx, cy = (i * 97) % width, (i * 61) % height
        r = 10 + (i * 13) % 40
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255 - i * 20, i * 20, 128))
    out = io.BytesIO()
    picture.save(out, fmt)
    return out.getvalue()


def probe(path: Path) -> dict:
    """Read a clip back (``tests.support.video``): codec, size, durations, every frame as RGB."""
    clip = read_clip(path, pictures=True)
    return {
        "codec": clip.codec,
        "width": clip.width,
        "height": clip.height,
        "pix_fmt": clip.pix_fmt,
        "container_duration": clip.container_duration_s,
        "stream_duration": clip.duration_s,
        "frames": clip.pictures,
    }


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference between two frames, in 8-bit levels."""
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


@pytest.fixture(scope="module")
def sample_bytes() -> bytes:
    return SAMPLE.read_bytes()


# --- resolution, codec, duration ---------------------------------------------


def test_720p_from_a_4_3_image_is_960x720_h264_of_5_seconds(
    tmp_path: Path, sample_bytes: bytes
) -> None:
    out = tmp_path / "clip.mp4"
    result = render_clip(RenderRequest(sample_bytes, "a robot waves", 720, 5), out)

    assert result == RenderResult(
        path=out, width=960, height=720, duration_s=5.0, frames=120, motion="push_in"
    )
    clip = probe(out)
    assert clip["codec"] == "h264"
    assert clip["pix_fmt"] == "yuv420p"
    assert (clip["width"], clip["height"]) == (960, 720)
    assert clip["container_duration"] == pytest.approx(5.0, abs=0.1)
    assert clip["stream_duration"] == pytest.approx(5.0, abs=0.1)
    assert len(clip["frames"]) == 24 * 5


def test_1080p_from_a_4_3_image_is_1440x1080(tmp_path: Path, sample_bytes: bytes) -> None:
    result = render_clip(RenderRequest(sample_bytes, "pan", 1080, 5), tmp_path / "hq.mp4")

    clip = probe(result.path)
    assert (result.width, result.height) == (1440, 1080)
    assert (clip["codec"], clip["width"], clip["height"]) == ("h264", 1440, 1080)
    assert len(clip["frames"]) == 120


def test_portrait_png_fits_the_width_to_the_resolution(tmp_path: Path) -> None:
    image = make_image(600, 800, "PNG")  # 3:4 portrait

    result = render_clip(RenderRequest(image, "follow", 720, 5), tmp_path / "tall.mp4")

    clip = probe(result.path)
    assert (result.width, result.height) == (720, 960)
    assert (clip["width"], clip["height"]) == (720, 960)
    assert clip["container_duration"] == pytest.approx(5.0, abs=0.1)


def test_10_second_clip_has_240_frames_and_lasts_10_seconds(tmp_path: Path) -> None:
    result = render_clip(
        RenderRequest(make_image(320, 240), "orbit", LOW, 10), tmp_path / "long.mp4"
    )

    clip = probe(result.path)
    assert result.frames == 240
    assert result.duration_s == 10.0
    assert len(clip["frames"]) == 240
    assert clip["container_duration"] == pytest.approx(10.0, abs=0.1)
    assert clip["stream_duration"] == pytest.approx(10.0, abs=0.1)


def test_other_frame_rates_keep_the_duration(tmp_path: Path) -> None:
    result = render_clip(
        RenderRequest(make_image(320, 240), "push", LOW, 5, fps=30), tmp_path / "30.mp4"
    )

    clip = probe(result.path)
    assert len(clip["frames"]) == 150
    assert clip["container_duration"] == pytest.approx(5.0, abs=0.1)


@pytest.mark.parametrize(
    ("image_size", "resolution", "expected"),
    [
        ((1280, 960), 720, (960, 720)),  # 4:3 landscape
        ((1920, 1080), 1080, (1920, 1080)),  # 16:9
        ((1000, 1000), 720, (720, 720)),  # square counts as landscape
        ((1080, 1920), 720, (720, 1280)),  # 9:16 portrait: the width is 720
        ((1001, 1000), 720, (720, 720)),  # rounded to even sides
        ((333, 1000), 1080, (1080, 2700)),  # taller than 1:2.5 is limited to 1:2.5
        ((5000, 1000), 720, (1800, 720)),  # wider than 2.5:1 is limited to 2.5:1
    ],
)
def test_frame_size_fits_the_aspect_ratio_with_even_sides(
    image_size: tuple[int, int], resolution: int, expected: tuple[int, int]
) -> None:
    width, height = frame_size(*image_size, resolution)
    assert (width, height) == expected
    assert width % 2 == 0 and height % 2 == 0


def test_exif_orientation_is_applied() -> None:
    picture = Image.open(io.BytesIO(make_image(400, 300)))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    out = io.BytesIO()
    picture.save(out, "JPEG", exif=exif)

    assert decode_image(out.getvalue()).size == (300, 400)


# --- motion --------------------------------------------------------------------


def test_frames_change_over_time(tmp_path: Path, sample_bytes: bytes) -> None:
    result = render_clip(RenderRequest(sample_bytes, "zoom in", LOW, 5), tmp_path / "m.mp4")

    frames = probe(result.path)["frames"]
    first, middle, last = frames[0], frames[len(frames) // 2], frames[-1]
    assert difference(first, middle) > 2.0
    assert difference(middle, last) > 2.0
    # Consecutive frames move only a little: the motion is smooth, not a jump cut.
    assert difference(frames[60], frames[61]) < difference(first, last)


def marker_picture(width: int = 640, height: int = 360) -> bytes:
    """Black, with a red disc left of centre and a blue one right of it (PNG)."""
    picture = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(picture)
    for x, colour in ((0.3 * width, (255, 0, 0)), (0.7 * width, (0, 0, 255))):
        y = 0.5 * height
        draw.ellipse((x - 20, y - 20, x + 20, y + 20), fill=colour)
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()


@dataclass(frozen=True)
class Marks:
    """Where the two discs are in one decoded frame (pixels), and the red one's area."""

    red_x: float
    red_y: float
    blue_x: float
    area: int

    @property
    def spread(self) -> float:
        return self.blue_x - self.red_x


def marks(frame: np.ndarray) -> Marks:
    r, g, b = (frame[..., i].astype(np.int16) for i in range(3))
    red = (r > 120) & (g < 90) & (b < 90)
    blue = (b > 120) & (r < 90) & (g < 90)
    red_ys, red_xs = np.nonzero(red)
    _, blue_xs = np.nonzero(blue)
    assert red_xs.size and blue_xs.size, "a disc left the frame"
    return Marks(float(red_xs.mean()), float(red_ys.mean()), float(blue_xs.mean()), int(red.sum()))


@pytest.fixture(scope="module")
def motion_marks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Marks]]:
    """Each motion rendered once (144p, 5 s at 8 fps: 40 frames), read back as disc positions."""
    folder, picture, seen = tmp_path_factory.mktemp("motions"), marker_picture(), {}
    for motion in MOTIONS:
        result = render_clip(
            RenderRequest(picture, motion.replace("_", " "), LOW, 5, fps=8),
            folder / f"{motion}.mp4",
        )
        assert result.motion == motion
        pictures = read_clip(result.path, pictures=True).pictures
        assert len(pictures) == 40
        seen[motion] = [marks(frame) for frame in pictures]
    return seen


def quarters(track: list[Marks]) -> list[Marks]:
    """The first frame, then the frames at a quarter, half, three quarters, and the last."""
    return [track[0], track[10], track[20], track[30], track[-1]]


def test_push_in_moves_the_camera_closer(motion_marks) -> None:
    track = motion_marks["push_in"]
    first, last = track[0], track[-1]
    # Closer: the discs grow and move apart, each outward from the centre of the frame.
    assert last.spread > first.spread * 1.15 and last.area > first.area * 1.3
    assert last.red_x < first.red_x - 5 and last.blue_x > first.blue_x + 5
    assert all(b.spread >= a.spread - 1 for a, b in itertools.pairwise(track))


def test_pull_out_moves_the_camera_away(motion_marks) -> None:
    track = motion_marks["pull_out"]
    first, last = track[0], track[-1]
    assert last.spread < first.spread / 1.15 and last.area < first.area / 1.3
    assert last.red_x > first.red_x + 5 and last.blue_x < first.blue_x - 5
    assert all(b.spread <= a.spread + 1 for a, b in itertools.pairwise(track))


def test_pan_glides_right_easing_in_and_out(motion_marks) -> None:
    track = motion_marks["pan"]
    # The camera moves right, so the picture slides left, at a constant distance.
    assert all(b.red_x <= a.red_x + 1 for a, b in itertools.pairwise(track))
    assert track[0].red_x - track[-1].red_x > 30
    assert max(m.spread for m in track) - min(m.spread for m in track) < 2
    q = quarters(track)
    first_quarter, second_quarter = q[0].red_x - q[1].red_x, q[1].red_x - q[2].red_x
    assert first_quarter < second_quarter / 2  # starts from rest


def test_follow_tracks_sideways_at_a_steady_pace(motion_marks) -> None:
    track = motion_marks["follow"]
    q = quarters(track)
    steps = [a.red_x - b.red_x for a, b in itertools.pairwise(q)]
    assert all(step > 3 for step in steps)  # always moving the same way
    assert max(steps[:3]) < 2 * min(steps[:3])  # no easing: about the same every quarter


def test_orbit_circles_and_comes_back(motion_marks) -> None:
    q = quarters(motion_marks["orbit"])
    start, right, half, left, end = q
    assert abs(start.red_x - end.red_x) < 1.5 and abs(start.red_y - end.red_y) < 1.5
    assert right.red_x < start.red_x - 5 < left.red_x - 10  # round one side, then the other
    assert half.red_y < start.red_y - 5  # and over the top


@pytest.mark.parametrize("motion", MOTIONS)
def test_the_camera_never_leaves_the_picture(motion: str) -> None:
    for frame, source in [((1440, 1080), (1728, 1296)), ((720, 1280), (865, 1537))]:
        for step in range(101):
            left, top, right, bottom = crop_box(camera_at(motion, step / 100), frame, source)
            assert 0.0 <= left < right <= source[0] + 1e-6
            assert 0.0 <= top < bottom <= source[1] + 1e-6
            # The crop keeps the frame's aspect ratio, so nothing is stretched.
            assert (right - left) / (bottom - top) == pytest.approx(frame[0] / frame[1])


@pytest.mark.parametrize(
    ("prompt", "motion"),
    [
        ("Slow push toward the robot", "push_in"),
        ("ZOOM IN on her face", "push_in"),
        ("pull back to reveal the city", "pull_out"),
        ("Zoom out slowly", "pull_out"),
        ("pan across the valley", "pan"),
        ("Camera Panning left", "pan"),
        ("orbit the statue", "orbit"),
        ("the camera moves around the car", "orbit"),
        ("follow the runner", "follow"),
        ("a cat sleeping in the sun", "push_in"),  # no keyword: the default
        ("", "push_in"),
        ("镜头缓缓推进", "push_in"),
        ("镜头拉远，展示全景", "pull_out"),
        ("镜头拉近她的脸", "push_in"),  # 拉近 is "bring closer", not 拉 (pull)
        ("水平平移镜头", "pan"),
        ("镜头左右摇动", "pan"),
        ("环绕雕像拍摄", "orbit"),
        ("围绕着汽车", "orbit"),
        ("跟随奔跑的人", "follow"),
        ("跟拍一只狗", "follow"),
        ("一只猫在阳光下睡觉", "push_in"),
        ("pan, then zoom in", "pan"),  # the keyword written first wins
        ("a panda in Japan", "push_in"),  # English keywords must be whole words
    ],
)
def test_choose_motion_maps_english_and_chinese_keywords(prompt: str, motion: str) -> None:
    assert choose_motion(prompt) == motion


def test_every_motion_can_be_asked_for() -> None:
    english = {choose_motion(motion.replace("_", " ")) for motion in MOTIONS}
    chinese = {choose_motion(word) for word in ("推进", "拉远", "平移", "环绕", "跟随")}
    assert english == set(MOTIONS)
    assert chinese == set(MOTIONS)


# --- text-only title cards -------------------------------------------------------


def test_text_only_chinese_prompt_gives_a_1920x1080_clip(tmp_path: Path) -> None:
    prompt = "一只可爱的机器人在草地上散步，夕阳西下。A cute robot at sunset."

    result = render_clip(RenderRequest(None, prompt, 1080, 5), tmp_path / "card.mp4")

    clip = probe(result.path)
    assert (result.width, result.height) == (1920, 1080)
    assert (clip["codec"], clip["width"], clip["height"]) == ("h264", 1920, 1080)
    assert clip["container_duration"] == pytest.approx(5.0, abs=0.1)
    assert len(clip["frames"]) == 120
    # The text is there: white-ish pixels in the middle of the frame, on a dark background.
    middle = clip["frames"][60][300:780, 300:1620]
    assert (middle.min(axis=-1) > 200).mean() > 0.01
    assert difference(clip["frames"][0], clip["frames"][-1]) > 1.0  # the card moves


def test_chinese_renders_as_glyphs_not_boxes() -> None:
    assert cjk_font_path() is not None, "pylopdf-fonts-zh-cn (Noto Sans SC) is not installed"
    font = load_font(48)
    masks = {char: bytes(font.getmask(char)) for char in "你好机器"}
    # A font without Chinese draws every character as the same empty box.
    assert len(set(masks.values())) == 4
    assert all(any(mask) for mask in masks.values())


def test_long_text_is_truncated_with_an_ellipsis() -> None:
    font = load_font(32)
    text = "机器人在未来城市的街道上穿梭。" * 170  # 2550 characters

    lines, truncated = wrap_text(text, font, max_width=600, max_lines=5)

    assert truncated
    assert len(lines) == 5
    assert lines[-1].endswith("…")
    assert all(font.getlength(line) <= 600 for line in lines)


def test_short_text_wraps_between_words() -> None:
    font = load_font(32)
    lines, truncated = wrap_text("a robot walks along the winding path", font, 250, 10)

    assert not truncated
    assert len(lines) > 1
    assert " ".join(lines) == "a robot walks along the winding path"
    assert all(font.getlength(line) <= 250 for line in lines)


def test_2500_character_text_only_prompt_renders(tmp_path: Path) -> None:
    prompt = ("A lone astronaut walks across a red desert under two moons. " * 50)[:2500]

    result = render_clip(RenderRequest(None, prompt, LOW, 5), tmp_path / "long.mp4")

    assert (result.width, result.height) == (256, 144)
    assert len(probe(result.path)["frames"]) == 120


# --- progress and failures ---------------------------------------------------------


def test_progress_is_reported_and_ends_at_1(tmp_path: Path) -> None:
    calls: list[float] = []

    render_clip(
        RenderRequest(make_image(320, 240), "pan", LOW, 10), tmp_path / "p.mp4", calls.append
    )

    assert 2 <= len(calls) <= 21
    assert calls == sorted(calls)
    assert all(0.0 < fraction <= 1.0 for fraction in calls)
    assert calls[-1] == 1.0


def test_a_corrupt_image_raises_value_error_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    broken = make_image(320, 240)[:200]  # a JPEG cut short

    for data in (b"not an image at all", broken):
        with pytest.raises(ValueError, match="image"):
            render_clip(RenderRequest(data, "push", LOW, 5), out)

    assert list(tmp_path.iterdir()) == []


def test_a_render_that_fails_midway_leaves_out_path_untouched(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"the previous clip")

    def cancel(fraction: float) -> None:
        if fraction > 0.5:
            raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        render_clip(RenderRequest(make_image(320, 240), "pan", LOW, 5), out, cancel)

    assert out.read_bytes() == b"the previous clip"
    assert [path.name for path in tmp_path.iterdir()] == ["clip.mp4"]  # no temp file left


def test_a_failed_first_render_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"

    def cancel(fraction: float) -> None:
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError):
        render_clip(RenderRequest(make_image(320, 240), "pan", LOW, 5), out, cancel)

    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "request_",
    [
        RenderRequest(None, "   ", 720, 5),  # text-only needs a prompt
        RenderRequest(None, "hello", 0, 5),
        RenderRequest(None, "hello", 720, 0),
        RenderRequest(None, "hello", 720, 5, fps=0),
    ],
)
def test_impossible_requests_raise_value_error(tmp_path: Path, request_: RenderRequest) -> None:
    with pytest.raises(ValueError):
        render_clip(request_, tmp_path / "clip.mp4")
    assert list(tmp_path.iterdir()) == []
