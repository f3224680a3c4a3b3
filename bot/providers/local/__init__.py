"""The embedded local renderer: a real H.264 clip from one picture, or from a prompt alone.

It needs no network and no API key, so the bot can be tried end to end on any
machine. Its public API:

- :class:`RenderRequest` and :class:`RenderResult`: what to render, and what was rendered;
- :func:`render_clip`: render a request into an MP4 file (synchronous; run it in a thread);
- :func:`choose_motion`: the camera motion a prompt asks for (one of :data:`MOTIONS`).
"""

from typing import Any

from bot.providers.local.motion import MOTIONS, choose_motion

_FROM_RENDER = frozenset({"RenderRequest", "RenderResult", "frame_size", "render_clip"})


def __getattr__(name: str) -> Any:
    """Load the renderer (PyAV, NumPy, Pillow, OpenCV: well under a second) only when used."""
    if name in _FROM_RENDER:
        from bot.providers.local import render

        return getattr(render, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MOTIONS",
    "RenderRequest",
    "RenderResult",
    "choose_motion",
    "frame_size",
    "render_clip",
]
