"""The adapters' key/value facts on SQLite: kept across a reopen, replaced in place."""

from __future__ import annotations

from storage.app_state import SqliteAppState
from storage.database import Database
from tests.unit.fakes import InMemoryAppState


async def test_values_survive_a_reopen_and_are_replaced(db_path):
    async with Database(db_path) as database:
        state = SqliteAppState(database)
        assert await state.get("discord.commands.1.global") is None
        await state.put("discord.commands.1.global", "abc")
        await state.put("discord.commands.1.global", "def")
        await state.put("discord.commands.1.42", "xyz")
    async with Database(db_path) as database:
        state = SqliteAppState(database)
        assert await state.get("discord.commands.1.global") == "def"
        assert await state.get("discord.commands.1.42") == "xyz"


async def test_the_fake_behaves_the_same():
    state = InMemoryAppState()
    assert await state.get("k") is None
    await state.put("k", "a")
    await state.put("k", "b")
    assert await state.get("k") == "b"
