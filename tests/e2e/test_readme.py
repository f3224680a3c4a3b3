"""The README's console examples, run as written against a real ``klingbot console`` process.

The quick-start transcript is split into what the member types (commands
and button numbers) and what the bot prints; the typed lines are piped in
character for character, and every printed line must appear in the output,
in order. Only what changes from run to run is masked: job ids, the clip's
file name, elapsed times, progress bars and the login name.
"""

import re
import shlex
from pathlib import Path

from tests.e2e.conftest import run_cli
from tests.e2e.video import probe

README = Path(__file__).parents[2] / "README.md"

_VOLATILE = [
    (re.compile(r"to \S+ \(console:local\)"), "to <login name> (console:local)"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<clip>"),
    (re.compile(r"\b[0-9a-f]{8}\b"), "<job>"),
    (re.compile(r"\b\d+:\d\d\b"), "<m:ss>"),
    (re.compile(r"[▓░]+ \d+%"), "<progress>"),
]


def _masked(line: str) -> str:
    for pattern, replacement in _VOLATILE:
        line = pattern.sub(replacement, line)
    return line


def _typed(line: str) -> bool:
    return line.startswith("/") or line.isdigit()


def _quick_start() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("```\n/topup me 300\n") + 4
    return text[start : text.index("```", start)].rstrip("\n").split("\n")


def _assert_in_order(expected: list[str], output: list[str]) -> None:
    remaining = iter(_masked(line) for line in output)
    for line in expected:
        wanted = _masked(line)
        if not any(seen == wanted for seen in remaining):
            raise AssertionError(
                f"README line not printed (in order): {line!r}\n" + "\n".join(output)
            )


def test_the_quick_start_transcript_is_what_the_console_prints(tmp_path):
    block = _quick_start()
    typed = [line for line in block if _typed(line)]
    assert typed == [
        "/topup me 300",
        "/gen sample 一个金属机器人专注地弹奏黑色钢琴，围绕主体运镜",
        "2",
    ]
    result = run_cli(
        "console", cwd=tmp_path, stdin="".join(f"{line}\n" for line in typed), timeout=120
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout.splitlines()
    _assert_in_order([line for line in block if not _typed(line)], output)
    [clip_line] = [line for line in output if line.startswith("  🎞️ ")]
    clip = probe(tmp_path / clip_line.removeprefix("  🎞️ "))
    assert (clip.width, clip.height) == (1440, 1080)
    assert result.stderr == ""


def test_the_piped_example_presses_what_it_says(tmp_path):
    text = README.read_text(encoding="utf-8")
    [command] = re.findall(r"`(printf '[^`]*' \| \.venv/bin/klingbot console)`", text)
    printf_argument = shlex.split(command)[1]
    lines = printf_argument.encode().decode("unicode_escape").encode("latin-1").decode()
    assert lines == "/topup me 100\n/price\n/gen sample a robot waves\n1\n"
    result = run_cli("console", cwd=tmp_path, stdin=lines, timeout=120)
    assert result.returncode == 0, result.stderr
    output = result.stdout
    assert "  [1] Standard · 720p · 20 credits (¥2.00) · ~4 s" in output
    assert re.search(
        r"✅ Standard chosen: 20 credits \(¥2\.00\) held for job [0-9a-f]{8}\.", output
    )
    assert re.search(r"✅ Standard · job [0-9a-f]{8} · done in \d+:\d\d · 20 credits", output)
    [clip_line] = [line for line in output.splitlines() if line.startswith("  🎞️ ")]
    assert probe(tmp_path / clip_line.removeprefix("  🎞️ ")).height == 720
