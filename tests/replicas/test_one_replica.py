"""``klingbot run`` in webhook mode as a real process, behind the balancer: the harness itself.

One replica on SQLite (no PostgreSQL server needed): Telegram posts each
update through the balancer and the member's commands are answered. The
tests with two replicas on one PostgreSQL database (test_two_replicas.py)
build on the same harness.
"""

from __future__ import annotations

from tests.adapters.standin import Member
from tests.replicas.harness import Replicas


async def test_a_member_is_answered_through_the_webhook_of_a_real_process(tmp_path, api):
    alice = Member(api, 1001, "Alice")
    async with Replicas(tmp_path, api, names=("a",)) as replicas:
        alice.send("/price")
        price = await api.wait_for("sendMessage", chat_id=alice.id, timeout=30)
        alice.send("/balance")
        balance = await api.wait_for("sendMessage", chat_id=alice.id, count=2, timeout=30)
        assert await replicas["a"].stop() == 0, replicas.log()

    [webhook] = api.of("setWebhook")
    assert webhook.params["url"] == replicas.balancer.url("/hook")
    assert webhook.params["secret_token"]  # derived from the token: the same on every replica
    assert price.params["text"].startswith("Kling 2.1 prices for a 5 s clip")
    assert balance.params["text"] == "Your balance: 0 credits (¥0.00)."
    assert [d.status for d in api.deliveries] == [200, 200]
    assert replicas.balancer.forwarded == {replicas["a"].address: 2}
