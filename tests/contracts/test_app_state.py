"""The AppState port's contract, on SQLite and the in-memory fake."""

from __future__ import annotations


async def test_values_are_kept_by_key_and_replaced(state):
    assert await state.get("discord:commands") is None
    await state.put("discord:commands", "hash-1")
    await state.put("discord:commands:guild", "hash-2")
    await state.put("discord:commands", "hash-3")

    assert await state.get("discord:commands") == "hash-3"
    assert await state.get("discord:commands:guild") == "hash-2"
    assert await state.get("DISCORD:COMMANDS") is None  # keys are exact


async def test_any_text_survives_the_round_trip(state):
    value = "名前 🎬 \n\t'quoted' \"and\" \\ " + "x" * 10_000
    await state.put("", value)
    await state.put("empty", "")
    assert await state.get("") == value
    assert await state.get("empty") == ""
