"""A replica in a process of its own that claims one role and says when it holds it.

``python -m tests.roles.holder URL ROLE LEASE_S`` prints ``held`` once it
holds ROLE (or ``standby``), then waits until it is killed;
``python -m tests.roles.holder URL replica:ID LEASE_S`` takes the runner
lease of replica ID instead (``held``, or ``refused``).
"""

from __future__ import annotations

import asyncio
import sys

from app.replica_lease import PgRunnerLease
from storage.postgres.locks import AdvisoryRoles


async def main(url: str, name: str, lease_s: float) -> None:
    if name.startswith("replica:"):
        lease = PgRunnerLease(url, name.removeprefix("replica:"), lease_s=lease_s)
        print("held" if await lease.acquire() else "refused", flush=True)
        await asyncio.Event().wait()
    roles = AdvisoryRoles(url, lease_s=lease_s, label="klingbot test holder")
    role = await roles.claim(name)
    if not role.held:
        print("standby", flush=True)
        await role.wait_held()
    print("held", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
