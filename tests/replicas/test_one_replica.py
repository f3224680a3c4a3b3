"""``klingbot run`` in webhook mode as a real process, behind the balancer: the harness itself.

One replica on SQLite: Telegram posts each update through the balancer, the
member gets a quote, presses a tier and receives the clip. (The tests with
two replicas on one PostgreSQL database build on the same harness.)
"""

from __future__ import annotations

from tests.adapters.standin import Member
from tests.replicas.harness import Replicas


async def test_a_member_generates_through_the_webhook_of_a_real_process(tmp_path, api):
    alice = Member(api, 1001, "Alice")
    async with Replicas(
        tmp_path,
        api,
        names=("a",),
        KLINGBOT_WELCOME_CREDITS="500",
        KLINGBOT_TIERS='{"master": {"resolution": 360}}',
        KLINGBOT_TIME_SCALE="0.005",
        KLINGBOT_STATUS_INTERVAL_S="0.2",
    ) as replicas:
        alice.send("/gen a robot waves to the camera")
        quote = await api.wait_for("sendMessage", chat_id=alice.id, timeout=30)
        alice.press(quote.result, "Master")
        video = await api.wait_for("sendVideo", chat_id=alice.id, timeout=60)
        assert await replicas["a"].stop() == 0, replicas.log()

    [webhook] = api.of("setWebhook")
    assert webhook.params["url"] == replicas.balancer.url("/hook")
    assert all(d.ok for d in api.deliveries) and len(api.deliveries) == 2
    assert replicas.balancer.forwarded == {replicas["a"].address: 2}
    assert b"ftyp" in video.files["video"][:16]  # an MP4
    assert len(api.of("sendVideo")) == 1
