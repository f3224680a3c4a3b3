"""Every setting the docs name exists, and every TOML key they show is one the loader takes.

The docs are README.md, docs/*.md, klingbot.example.toml, klingbot.env.example
(when there is one), compose.yaml, compose.scale.yaml and the Dockerfile. Three kinds of
drift fail here:

- an environment variable named anywhere (``KLINGBOT_*``, ``KLING_*``,
  ``TELEGRAM_*``, ``DISCORD_*``) that the settings model does not read under
  that name or alias (nor is it one of compose.yaml's own variables);
- a settings table whose TOML key column disagrees with its variables (the
  README once said ``TELEGRAM_TOKEN`` had no TOML key), or a guide that says
  its settings can go in the TOML file "under its lower-case name" when one
  cannot;
- a TOML key in any table or inline example that the real loader refuses:
  each is written into a TOML file of its own, with the value
  klingbot.example.toml gives it, and loaded with :func:`load_settings`.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices

from app.config_docs import ENV_ONLY, OTHER_VARIABLES
from bot.settings import ConfigError, Settings, load_settings

ROOT = Path(__file__).parents[2]
EXAMPLE_TOML = ROOT / "klingbot.example.toml"
VARIABLE = re.compile(r"\b(?:KLINGBOT|KLING|TELEGRAM|DISCORD)_[A-Z][A-Z0-9_]*\b")
INLINE_TOML = re.compile(r"`([a-z_][a-z0-9_]*\s*=\s*[^`]+)`")
LOWER_CASE_CLAIM = "under its lower-case name"
LOADED_TOGETHER = {"public_url": ("metrics_listen",), "discord_shard_ids": ("discord_shard_count",)}
"""Settings a model validator refuses alone: the server of the clip links, the shard count."""


def documents() -> list[Path]:
    """Every file that tells an operator about settings."""
    paths = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), EXAMPLE_TOML]
    paths += [
        ROOT / name
        for name in ("klingbot.env.example", "compose.yaml", "compose.scale.yaml", "Dockerfile")
    ]
    return [path for path in paths if path.exists()]


def setting_variables() -> dict[str, str]:
    """Each environment name the settings model reads, and the field it sets."""
    names: dict[str, str] = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str) and choice.isupper():
                    names[choice] = field_name
        else:
            names[f"KLINGBOT_{field_name.upper()}"] = field_name
    return names


def compose_variables() -> set[str]:
    """The variables the compose files interpolate (``${NAME:-default}``): compose reads them."""
    names: set[str] = set()
    for name in ("compose.yaml", "compose.scale.yaml"):
        text = (ROOT / name).read_text(encoding="utf-8")
        names |= set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    return names


TEST_VARIABLES = frozenset({"KLINGBOT_TEST_DATABASE_URL", "KLINGBOT_REQUIRE_POSTGRES"})
"""Read by the test suite (tests/support/postgres.py), not the bot: named for contributors."""


def unknown_variables(text: str) -> list[str]:
    """The variables ``text`` names that nothing reads."""
    known = set(setting_variables()) | set(OTHER_VARIABLES) | compose_variables() | TEST_VARIABLES
    return sorted({name for name in VARIABLE.findall(text) if name not in known})


def tables(text: str) -> Iterator[tuple[list[str], list[list[str]]]]:
    """Each Markdown table: its header cells and its rows' cells."""
    lines = text.splitlines()
    for index, line in enumerate(lines[:-1]):
        if line.startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[index + 1]):
            header = _cells(line)
            rows = []
            for row in lines[index + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(_cells(row))
            yield header, rows


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def toml_keys_of(cell: str) -> list[str]:
    """The top-level TOML keys a table cell names: `db`, `[tiers.<key>]`, `[kling_timeouts_s]`."""
    spans = re.findall(r"`([^`]+)`", cell)
    return [span.strip("[]").split(".")[0] for span in spans]


def table_problems(text: str) -> list[str]:
    """Rows whose TOML key column does not match their variables, or lower-case claims that fail."""
    fields = setting_variables()
    problems = []
    for header, rows in tables(text):
        lowered = [cell.lower() for cell in header]
        if lowered[0] not in ("variable", "environment"):
            continue
        toml_column = lowered.index("toml key") if "toml key" in lowered else None
        for row in rows:
            variables = VARIABLE.findall(row[0])
            expected = {fields[name] for name in variables if name in fields} - ENV_ONLY
            if toml_column is not None:
                documented = set(toml_keys_of(row[toml_column]))
                if documented != expected:
                    problems.append(
                        f"{row[0]}: TOML key column says {sorted(documented) or '—'}, "
                        f"the settings say {sorted(expected) or '—'}"
                    )
            elif LOWER_CASE_CLAIM in text:
                problems += [
                    f"{name}: no TOML key `{name.lower()}` (the guide says each has one)"
                    for name in variables
                    if name.lower() not in Settings.model_fields
                ]
    return problems


def documented_toml_keys(text: str) -> set[str]:
    """The TOML keys a Markdown document names in a table's TOML key column."""
    keys = set()
    for header, rows in tables(text):
        lowered = [cell.lower() for cell in header]
        if "toml key" in lowered:
            column = lowered.index("toml key")
            for row in rows:
                keys.update(toml_keys_of(row[column]))
    return keys


def inline_toml(text: str) -> list[str]:
    """Settings written out as TOML in a document: `setting = value` spans and ```toml blocks.

    A span counts when its key is a setting: the docs also write ``attempt = 2``
    or ``balance = sum(amount)`` about other things. Made-up keys are caught
    in the tables (:func:`documented_toml_keys`); here the values are checked.
    """
    snippets = [
        span
        for span in INLINE_TOML.findall(text)
        if span.split("=")[0].strip() in Settings.model_fields
    ]
    snippets += re.findall(r"```toml\n(.*?)```", text, flags=re.DOTALL)
    return snippets


def uncommented_example() -> str:
    """klingbot.example.toml with every commented-out key and table header switched on."""
    lines = []
    for line in EXAMPLE_TOML.read_text(encoding="utf-8").splitlines():
        body = line.removeprefix("# ")
        if re.match(r"[a-z_][a-z0-9_]*\s*=|\[[a-z_.]+\]", body):
            lines.append(body)
    return "\n".join(lines) + "\n"


def example_values() -> dict[str, Any]:
    return tomllib.loads(uncommented_example())


def toml_line(key: str, value: Any) -> str:
    """``key = value`` (or a table) in TOML, for the values klingbot.example.toml holds."""
    if isinstance(value, dict):
        if all(isinstance(inner, dict) for inner in value.values()):
            return "".join(toml_line(f"{key}.{name}", inner) for name, inner in value.items())
        return f"[{key}]\n" + "".join(toml_line(name, inner) for name, inner in value.items())
    return f"{key} = {_toml_value(value)}\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)  # a TOML basic string, integer or float


def load_toml(tmp_path: Path, text: str, name: str) -> Settings:
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings({"KLINGBOT_CONFIG": str(path)})


@pytest.mark.parametrize("document", documents(), ids=lambda path: path.name)
def test_every_variable_a_document_names_is_read(document):
    assert unknown_variables(document.read_text(encoding="utf-8")) == [], (
        f"{document.name} names settings that bot/settings.py does not read"
    )


@pytest.mark.parametrize("document", documents(), ids=lambda path: path.name)
def test_settings_tables_give_each_variable_its_toml_key(document):
    assert table_problems(document.read_text(encoding="utf-8")) == []


def test_the_example_file_uncommented_loads_and_sets_every_key(tmp_path):
    text = uncommented_example()
    settings = load_toml(tmp_path, text, "example")
    keys = set(tomllib.loads(text))
    assert keys <= settings.model_fields_set, keys - settings.model_fields_set
    # The example shows every setting the file can hold.
    assert keys == set(Settings.model_fields) - ENV_ONLY


def test_every_documented_toml_key_is_accepted_by_the_loader(tmp_path):
    values = example_values()
    documented: dict[str, list[str]] = {}
    for document in documents():
        if document.suffix == ".md":
            for key in documented_toml_keys(document.read_text(encoding="utf-8")):
                documented.setdefault(key, []).append(document.name)
    assert len(documented) > 40, sorted(documented)  # the README's and CONFIGURATION.md's tables
    for key, where in sorted(documented.items()):
        named = f"`{key}` ({', '.join(where)})"
        try:
            needed = [toml_line(other, values[other]) for other in LOADED_TOGETHER.get(key, ())]
            text = "".join(needed) + toml_line(key, values.get(key, 1))
            settings = load_toml(tmp_path, text, key)
        except ConfigError as error:
            pytest.fail(f"{named} is refused by the settings loader: {error}")
        assert key in settings.model_fields_set, f"{named} was not read"
        assert key in values, f"{named} has no example in {EXAMPLE_TOML.name}"


def test_every_toml_example_in_the_docs_loads(tmp_path):
    snippets = [
        (document.name, snippet)
        for document in documents()
        if document.suffix == ".md"
        for snippet in inline_toml(document.read_text(encoding="utf-8"))
    ]
    assert snippets, "no inline TOML found: the pattern no longer matches the docs"
    for index, (name, snippet) in enumerate(snippets):
        settings = load_toml(tmp_path, snippet + "\n", f"snippet{index}")
        assert set(tomllib.loads(snippet)) <= settings.model_fields_set, (name, snippet)


def test_a_made_up_name_in_a_document_fails(tmp_path):
    """The checks above can fail: a document naming what does not exist is caught."""
    text = (
        "Set `KLINGBOT_MADE_UP` or `TELEGRAM_TOKEN`.\n\n"
        "| variable | TOML key | default | meaning |\n|---|---|---|---|\n"
        "| `KLINGBOT_DB` | `database` | `klingbot.db` | the database |\n"
        "| `TELEGRAM_TOKEN` | — | none | the token |\n"
    )
    assert unknown_variables(text) == ["KLINGBOT_MADE_UP"]
    assert table_problems(text) == [
        "`KLINGBOT_DB`: TOML key column says ['database'], the settings say ['db']",
        "`TELEGRAM_TOKEN`: TOML key column says —, the settings say ['telegram_token']",
    ]
    guide = f"| variable | default |\n|---|---|\n| `DISCORD_MADE_UP` | none |\n{LOWER_CASE_CLAIM}"
    assert table_problems(guide) == [
        "DISCORD_MADE_UP: no TOML key `discord_made_up` (the guide says each has one)"
    ]
    assert inline_toml("`telegram_admin_chats = [1]`, `attempt = 2`") == [
        "telegram_admin_chats = [1]"
    ]
    with pytest.raises(ConfigError, match="made_up_key"):
        load_toml(tmp_path, toml_line("made_up_key", 1), "made_up")
