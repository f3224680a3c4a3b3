"""Fixtures for the roles tests: the Bot API stand-in (from the adapter tests)."""

from __future__ import annotations

from tests.adapters.conftest import api  # noqa: F401  (the fixture, re-exported)
