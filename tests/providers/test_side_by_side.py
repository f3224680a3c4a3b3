"""The side-by-side clip of /compare: labelled panels, one height, as long as the shortest clip."""

from __future__ import annotations

import numpy as np
import pytest

from bot.providers.local.sidebyside import GAP, Panel, layout, side_by_side
from tests.support.video import probe, write_mp4


def strip_has_text(picture: np.ndarray, left: int, right: int, strip: int) -> bool:
    """White label pixels on the dark strip above a panel."""
    return int((picture[:strip, left:right] > 200).all(axis=2).sum()) > 20


def test_three_panels_labelled_same_height_shortest_length(tmp_path):
    a, b, c = tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"
    write_mp4(a, 320, 240, frames=48)  # 4:3, 2 s
    write_mp4(b, 640, 480, frames=36)  # 4:3 larger, 1.5 s: the shortest
    write_mp4(c, 426, 240, frames=48)  # 16:9
    out = tmp_path / "side.mp4"

    made = side_by_side(
        [Panel(a, "Standard"), Panel(b, "High Quality"), Panel(c, "大师")], out, max_height=240
    )

    clip = probe(out, pictures=True)
    assert (clip.codec, clip.width, clip.height) == ("h264", made.width, made.height)
    assert (made.width, made.height) == (320 + 320 + 426 + 2 * GAP, 240 + 24)
    assert clip.frames == 36 and abs(clip.duration_s - 1.5) < 0.05
    first = clip.pictures[0]
    lefts = [0, 320 + GAP, 640 + 2 * GAP]
    for left, width in zip(lefts, (320, 320, 426), strict=True):
        assert strip_has_text(first, left, left + width, 24)
    # Between the panels, the gaps stay black below the strip.
    assert first[100, 320 : 320 + GAP].max() < 40
    assert not list(tmp_path.glob(".compare-*"))
    # Readable like the tiers' own clips (a clip-link server or a volume's other user reads it).
    assert out.stat().st_mode & 0o777 == 0o644


def test_the_panels_shrink_together_to_the_width_allowed():
    widths_and_height = layout([(1440, 1080), (1920, 1080)], max_width=1280, max_height=720)
    *widths, height = widths_and_height
    assert sum(widths) + GAP <= 1280 + 4 and height < 720
    assert abs(widths[0] / height - 4 / 3) < 0.02 and abs(widths[1] / height - 16 / 9) < 0.02


def test_one_clip_is_no_comparison(tmp_path):
    write_mp4(tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="two clips"):
        side_by_side([Panel(tmp_path / "a.mp4", "Standard")], tmp_path / "out.mp4")
