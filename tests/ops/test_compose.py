"""compose.yaml, parsed and interpolated as compose would, checked against the image and the docs.

Docker is not run here (the test machines have no engine). The file is read
with a small parser for the block YAML it is written in (mappings, lists,
quoted and plain scalars, comments): PyYAML is not a dependency. Its
``${NAME:-default}`` variables are filled in as compose fills them, and each
port is read as Docker reads ``ip:hostPort:containerPort``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from bot.settings import Settings
from tests.ops.test_container import final_stage

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "compose.yaml"


def parse_yaml(text: str) -> Any:
    """The block-style YAML subset compose.yaml uses; anything else is a ValueError."""
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise ValueError(f"line {number}: a tab in the indentation")
        body = _without_comment(raw).rstrip()
        if body.strip():
            lines.append((len(body) - len(body.lstrip()), body.strip(), number))
    value, end = _block(lines, 0, lines[0][0])
    if end != len(lines):
        raise ValueError(f"line {lines[end][2]}: unexpected indentation")
    return value


def _without_comment(line: str) -> str:
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index]
    if quote:
        raise ValueError(f"unclosed quote: {line!r}")
    return line


def _block(lines: list[tuple[int, str, int]], index: int, indent: int) -> tuple[Any, int]:
    if lines[index][1].startswith("- "):
        items = []
        while index < len(lines) and lines[index][0] == indent and lines[index][1][:2] == "- ":
            _, body, number = lines[index]
            item = body[2:].strip()
            if _is_entry(item):  # a mapping in a list: its first key sits after the dash
                lines[index] = (indent + 2, item, number)
                value, index = _block(lines, index, indent + 2)
            else:
                value, index = _scalar(item), index + 1
            items.append(value)
        return items, index
    mapping: dict[str, Any] = {}
    while index < len(lines) and lines[index][0] == indent:
        _, body, number = lines[index]
        if not _is_entry(body):
            raise ValueError(f"line {number}: not `key: value`: {body!r}")
        key, _, rest = body.partition(":")
        if key in mapping:
            raise ValueError(f"line {number}: {key} given twice")
        index += 1
        if rest.strip():
            mapping[key] = _scalar(rest.strip())
        elif index < len(lines) and lines[index][0] > indent:
            mapping[key], index = _block(lines, index, lines[index][0])
        elif index < len(lines) and lines[index][0] == indent and lines[index][1][:2] == "- ":
            mapping[key], index = _block(lines, index, indent)  # a list at the key's indent
        else:
            mapping[key] = None
    return mapping, index


def _is_entry(text: str) -> bool:
    return bool(re.match(r"[A-Za-z0-9_.-]+:( |$)", text))


def _scalar(text: str) -> str:
    if text[0] in "\"'":
        if len(text) < 2 or text[-1] != text[0]:
            raise ValueError(f"bad quoted scalar: {text!r}")
        return text[1:-1]
    if text[0] in "[{&*!|>":
        raise ValueError(f"flow, anchors and block scalars are not used here: {text!r}")
    return text


def interpolate(value: str, environment: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}`` and ``${NAME:?error}``.

    A required variable (``:?``) that is unset or empty is a ValueError with its message,
    as compose refuses to start.
    """

    def fill(match: re.Match[str]) -> str:
        name, operator, default = match.group(1), match.group(2), match.group(3) or ""
        if operator == ":-":
            return environment.get(name) or default
        if operator == "-":
            return environment.get(name, default)
        if operator == ":?":
            if not environment.get(name):
                raise ValueError(f"required variable {name} is missing a value: {default}")
            return environment[name]
        return environment.get(name, "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|-|:\?)([^}]*))?\}", fill, value)


def port_spec(spec: str) -> tuple[str, str, int]:
    """Docker's ``[[ip:]hostPort:]containerPort``: (host ip, host port or "" for any, container)."""
    match = re.fullmatch(r"(?:(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d*):)?(\d+)", spec)
    if match is None:
        raise ValueError(f"not a port mapping Docker accepts: {spec!r}")
    host_ip, host_port, container = match.groups()
    return host_ip or "0.0.0.0", host_port or "", int(container)


def service() -> dict[str, Any]:
    return parse_yaml(COMPOSE.read_text(encoding="utf-8"))["services"]["klingbot"]


def published(environment: dict[str, str]) -> dict[int, tuple[str, str]]:
    """Container port -> (host ip, host port) with compose's variables from ``environment``."""
    specs = [port_spec(interpolate(entry, environment)) for entry in service()["ports"]]
    return {container: (ip, port) for ip, port, container in specs}


def listen_port(address: str) -> int:
    return int(address.rpartition(":")[2])


def test_the_parser_refuses_what_it_does_not_understand():
    assert parse_yaml("a:\n  b: 'x # y'  # note\n  c:\n    - 1\n    - k: v\n      w: z\n") == {
        "a": {"b": "x # y", "c": ["1", {"k": "v", "w": "z"}]}
    }
    for bad in ("a:\n  b: 1\n c: 2\n", "a: [1, 2]\n", "a:\n  b: 1\n  b: 2\n", "a: 'x\n"):
        with pytest.raises(ValueError):
            parse_yaml(bad)
    with pytest.raises(ValueError):
        port_spec("127.0.0.1:x:8080")


def test_compose_runs_the_image_with_its_volume_env_file_and_stop_rules():
    compose = parse_yaml(COMPOSE.read_text(encoding="utf-8"))
    klingbot = compose["services"]["klingbot"]
    assert klingbot["build"] == "."
    assert klingbot["env_file"] == [{"path": "klingbot.env", "required": "false"}]
    assert klingbot["volumes"] == ["klingbot-data:/data"]
    # Named as is: compose would prefix it with the project, and the README's
    # `docker run -v klingbot-data:/data` (a restore) would see another, empty volume.
    assert compose["volumes"] == {"klingbot-data": {"name": "klingbot-data"}}
    image = final_stage(ROOT / "Dockerfile")
    assert klingbot["stop_signal"] == image["STOPSIGNAL"] == "SIGTERM"
    assert klingbot["stop_grace_period"] == "10s"
    assert klingbot["restart"] == "unless-stopped"


def test_compose_rotates_the_logs():
    logging = service()["logging"]
    assert logging["driver"] == "json-file"
    assert re.fullmatch(r"\d+m", logging["options"]["max-size"]), logging
    assert int(logging["options"]["max-file"]) >= 2


def test_webhook_and_callback_ports_are_published_where_the_operator_says():
    image = final_stage(ROOT / "Dockerfile")["ENV"]
    webhook = listen_port(Settings.model_fields["telegram_webhook_listen"].default)
    callback = listen_port(image["KLING_CALLBACK_LISTEN"])  # type: ignore[index]
    metrics = listen_port(image["KLINGBOT_METRICS_LISTEN"])  # type: ignore[index]
    assert image["KLING_CALLBACK_LISTEN"].startswith("0.0.0.0:")  # type: ignore[index]
    # Nothing set: loopback only, and no fixed host port that another service could hold.
    assert published({}) == {
        metrics: ("127.0.0.1", str(metrics)),
        webhook: ("127.0.0.1", ""),
        callback: ("127.0.0.1", ""),
    }
    # Set in .env (or the shell): a port, or an address and a port.
    chosen = published(
        {"KLINGBOT_WEBHOOK_PUBLISH": "8443", "KLINGBOT_CALLBACK_PUBLISH": "127.0.0.1:8090"}
    )
    assert chosen[webhook] == ("0.0.0.0", "8443")
    assert chosen[callback] == ("127.0.0.1", "8090")


def test_every_docker_volume_in_the_docs_is_the_compose_volume():
    [(_, declared)] = parse_yaml(COMPOSE.read_text(encoding="utf-8"))["volumes"].items()
    volume = declared["name"]
    for document in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = document.read_text(encoding="utf-8")
        for name in re.findall(r"-v ([\w.-]+):/data\b", text):
            assert name == volume, f"{document.name}: volume {name}, compose.yaml: {volume}"
