"""klingbot.env.example and compose.yaml: a deployment's settings, and compose without klingbot.env.

The example is read as compose reads an env file (``NAME=value`` lines, ``#``
comments): every name it mentions, set or commented out, is a real setting,
and the real ``klingbot run`` started with it as its environment (a fresh
copy, nothing filled in) says in one line which token to set, exit 2.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.conftest import run_cli

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "klingbot.env.example"
ASSIGNMENT = re.compile(r"^#?([A-Z][A-Z0-9_]*)=(.*)$")


def example_lines() -> list[tuple[str, str, bool]]:
    """(name, value, set) for each ``NAME=value`` line, commented out or not."""
    found = []
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = ASSIGNMENT.match(line)
        if match:
            found.append((match.group(1), match.group(2), not line.startswith("#")))
    return found


def test_every_name_in_the_example_is_a_documented_setting():
    document = (ROOT / "docs" / "CONFIGURATION.md").read_text(encoding="utf-8")
    names = [name for name, _, _ in example_lines()]
    assert {"TELEGRAM_TOKEN", "DISCORD_TOKEN", "KLINGBOT_MODERATORS"} <= set(names)
    assert [name for name in names if f"| `{name}` |" not in document] == []


def test_a_fresh_copy_of_the_example_makes_run_name_the_tokens(tmp_path):
    environment = {name: value for name, value, is_set in example_lines() if is_set}
    assert environment.get("TELEGRAM_TOKEN") == ""  # to fill in; empty means unset
    result = run_cli("run", cwd=tmp_path, env=environment)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("klingbot: no platform to serve: set TELEGRAM_TOKEN or DISCORD_TOKEN")
    assert "klingbot.env.example" in line


def test_compose_starts_without_klingbot_env():
    compose = (ROOT / "compose.yaml").read_text(encoding="utf-8")
    # The Compose spec's long form: a missing file is skipped, not an error.
    assert "    env_file:\n      - path: klingbot.env\n        required: false\n" in compose
    assert "cp klingbot.env.example klingbot.env" in compose
