"""The extraction providers' circuit states, as the workers last reported them, in ONE Redis hash.

Each worker writes its own field (its name -> when, and the state of each provider's circuit) on
every poll and removes it when it stops; the hash expires when no worker has written for a while.
Readiness reads that one small key (HGETALL) instead of scanning the keyspace, ignores reports older
than their freshness window, and answers with one state per provider (the worst any worker reported)
and how many workers reported: never worker names, host names or PIDs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from redis.asyncio import Redis

KEY = "invoice-service:circuits"
# Worst first: a provider is as bad as its worst circuit among the workers.
SEVERITY = {"open": 2, "half_open": 1, "closed": 0}


def fresh_seconds(poll_seconds: float) -> int:
    """How long a worker's report counts: ten polls, at least 10 s (a busy worker still polls)."""
    return max(10, int(poll_seconds * 10))


@dataclass(frozen=True)
class Report:
    """What readiness shows: one state per provider, and how many workers are reporting."""

    providers: dict[str, str]
    workers: int

    @property
    def degraded(self) -> bool:
        """Whether any provider's circuit is not closed."""
        return any(state != "closed" for state in self.providers.values())


async def publish(redis: Redis, worker: str, states: dict[str, str], fresh_seconds: int) -> None:
    """This worker's field, and the hash's lifetime renewed (one round trip)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(KEY, worker, json.dumps({"at": time.time(), "states": states}))
        pipe.expire(KEY, fresh_seconds)
        await pipe.execute()


async def withdraw(redis: Redis, worker: str) -> None:
    """Remove this worker's field (it stops)."""
    await redis.hdel(KEY, worker)


def summarise(fields: dict[bytes | str, bytes | str], fresh_seconds: float, now: float) -> Report:
    """The report from the hash's fields; reports older than fresh_seconds or unreadable are ignored."""
    providers: dict[str, str] = {}
    workers = 0
    for raw in fields.values():
        try:
            entry = json.loads(raw)
            at, states = float(entry["at"]), dict(entry["states"])
        except (ValueError, KeyError, TypeError):
            continue
        if now - at > fresh_seconds:
            continue
        workers += 1
        for provider, state in states.items():
            current = providers.get(str(provider))
            if current is None or SEVERITY.get(str(state), 2) > SEVERITY.get(current, 2):
                providers[str(provider)] = str(state)
    return Report(providers=dict(sorted(providers.items())), workers=workers)


async def read(redis: Redis, fresh_seconds: float) -> Report:
    """The current report (one HGETALL)."""
    return summarise(await redis.hgetall(KEY), fresh_seconds, time.time())
