"""compose.scale.yaml and deploy/Caddyfile: PostgreSQL, two replicas, an HTTPS proxy in front.

Parsed and interpolated as compose would (the parser of tests/ops/test_compose.py;
no Docker engine here), then checked against what the bot and Telegram need:
one database every replica reaches and nothing outside does, a replica id and
a data folder of its own per replica, the webhook path the proxy serves equal
to the one each replica listens on, TLS on a port Telegram posts to, and the
operator's two values required rather than silently empty.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bot.settings import Settings
from tests.ops.test_compose import interpolate, parse_yaml, port_spec
from tests.ops.test_container import final_stage
from tests.ops.test_docs_settings import setting_variables

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "compose.scale.yaml"
CADDYFILE = ROOT / "deploy" / "Caddyfile"
OPERATOR = {"KLINGBOT_PUBLIC_HOST": "bot.example.com", "POSTGRES_PASSWORD": "s3cret0"}
REPLICAS = ("klingbot-a", "klingbot-b")
TELEGRAM_PORTS = {80, 88, 443, 8443}
"""The only ports Telegram posts webhooks to."""


def compose() -> dict[str, Any]:
    return parse_yaml(COMPOSE.read_text(encoding="utf-8"))


def filled(value: Any, environment: dict[str, str] = OPERATOR) -> Any:
    """``value`` with compose's variables filled in, all the way down."""
    if isinstance(value, dict):
        return {k: filled(v, environment) for k, v in value.items()}
    if isinstance(value, list):
        return [filled(v, environment) for v in value]
    return interpolate(value, environment) if isinstance(value, str) else value


def caddy_sites(text: str) -> dict[str, str]:
    """Top-level site blocks of a Caddyfile: address -> body (comments dropped)."""
    lines = [re.sub(r"(^|\s)#.*", "", line).rstrip() for line in text.splitlines()]
    sites: dict[str, str] = {}
    depth, address, body = 0, "", []
    for line in lines:
        if not line.strip():
            continue
        if depth == 0:
            assert line.endswith("{"), line
            address, body = line[:-1].strip(), []
        else:
            body.append(line.strip())
        depth += line.count("{") - line.count("}")
        if depth == 0:
            sites[address] = "\n".join(body[:-1])
    assert depth == 0, "unbalanced braces"
    return sites


def test_the_operator_must_give_the_host_name_and_the_database_password():
    services = compose()["services"]
    for missing in OPERATOR:
        given = {k: v for k, v in OPERATOR.items() if k != missing}
        with pytest.raises(ValueError, match=missing):
            filled(services, given)
    filled(services)  # both given: everything interpolates


def test_one_database_reached_by_every_replica_and_by_nothing_outside():
    services = filled(compose()["services"])
    postgres = services["postgres"]
    assert re.fullmatch(r"postgres:15\.\d+(-\w+)?", postgres["image"]), postgres["image"]
    assert "ports" not in postgres  # never published
    assert postgres["volumes"] == ["klingbot-pg:/var/lib/postgresql/data"]
    assert "pg_isready" in postgres["healthcheck"]["test"][-1]
    env = postgres["environment"]
    urls = {services[name]["environment"]["KLINGBOT_DATABASE_URL"] for name in REPLICAS}
    assert urls == {
        f"postgresql://{env['POSTGRES_USER']}:{OPERATOR['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{env['POSTGRES_DB']}"
    }
    for name in REPLICAS:
        assert services[name]["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_each_replica_has_its_own_id_and_data_folder_and_publishes_nothing():
    services = filled(compose()["services"])
    image = final_stage(ROOT / "Dockerfile")
    ids, folders = set(), set()
    for name in REPLICAS:
        replica = services[name]
        assert replica["build"] == "." and replica["image"] == "klingbot:latest"
        assert replica["env_file"] == [{"path": "klingbot.env", "required": "false"}]
        assert "ports" not in replica  # only the proxy faces the internet
        ids.add(replica["environment"]["KLINGBOT_REPLICA_ID"])
        [volume] = replica["volumes"]
        folder, _, mount = volume.partition(":")
        assert mount == image["ENV"]["KLINGBOT_DATA_DIR"]  # type: ignore[index]
        folders.add(folder)
        assert replica["stop_signal"] == image["STOPSIGNAL"] == "SIGTERM"
        assert replica["restart"] == "unless-stopped"
    assert len(ids) == len(folders) == len(REPLICAS)


def test_every_variable_the_replicas_set_is_a_setting():
    known = setting_variables()
    for name in REPLICAS:
        for variable in compose()["services"][name]["environment"]:
            assert variable in known, f"{name}: {variable} is not a setting"


def test_the_proxy_serves_the_webhook_over_tls_and_spreads_it_over_the_replicas():
    services = filled(compose()["services"])
    proxy = services["proxy"]
    assert re.fullmatch(r"caddy:2\.\d+\.\d+(-\w+)?", proxy["image"]), proxy["image"]
    published = {port_spec(spec)[2]: port_spec(spec)[1] for spec in proxy["ports"]}
    assert published == {80: "80", 443: "443"}  # 80: ACME HTTP-01; 443: the webhook
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]

    urls = {services[name]["environment"]["TELEGRAM_WEBHOOK_URL"] for name in REPLICAS}
    [url] = urls
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.hostname == OPERATOR["KLINGBOT_PUBLIC_HOST"]
    assert (parts.port or 443) in TELEGRAM_PORTS and (parts.port or 443) == 443

    sites = caddy_sites(CADDYFILE.read_text(encoding="utf-8"))
    # The site address is the host name (Caddy's automatic HTTPS), from the proxy's env.
    [(address, body)] = sites.items()
    assert address == "{$KLINGBOT_PUBLIC_HOST}" and "KLINGBOT_PUBLIC_HOST" in proxy["environment"]
    assert f"handle {parts.path} {{" in body
    listens = {services[name]["environment"]["TELEGRAM_WEBHOOK_LISTEN"] for name in REPLICAS}
    [listen] = listens
    port = listen.rpartition(":")[2]
    upstreams = re.search(r"reverse_proxy ([^{]+)\{", body)
    assert upstreams is not None
    assert upstreams.group(1).split() == [f"{name}:{port}" for name in REPLICAS]
    # A replica that does not answer: the post goes to the other one.
    assert re.search(r"lb_try_duration \d+s", body) and "lb_policy round_robin" in body
    assert Settings.model_fields["telegram_webhook_listen"].default.endswith(f":{port}")
