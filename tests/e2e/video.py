"""Moved to :mod:`tests.support.video`; kept so older imports still work."""

from tests.support.video import Clip, probe

__all__ = ["Clip", "probe"]
