"""Rate limits on the JSON API: per key and per client address, fixed windows.

Counters live in Redis when ``CORRIGENDA_REDIS_URL`` is set (shared by every web
worker; reserved in small blocks, see ``RedisCounters``), in memory otherwise. If Redis is
unreachable the limiter counts in memory for a few seconds rather than failing requests.
A refused request gets 429 problem+json with ``Retry-After``.

Why not Flask-Limiter: measured on this machine it added 1.2 ms (memory storage: locks
and an expiry timer thread) to 1.9 ms (Redis: one round trip per limit) of Python to every
request for these two limits, more than the rest of the single-event path together. The
limit strings are parsed by ``limits`` (the library Flask-Limiter is built on), so the
``CORRIGENDA_RATE_LIMIT_*`` syntax is unchanged (``"3000/minute"``, ``"10/second;500/hour"``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass

import redis
from flask import Flask, Response, current_app, g, request
from limits import RateLimitItem, parse_many

from corrigenda.settings import Settings

from .blueprint import bp
from .problems import problem

log = logging.getLogger(__name__)

REDIS_BACKOFF_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Window:
    """One counter to bump: its storage key, its limit, its window length."""

    key: str
    amount: int
    seconds: int


class MemoryCounters:
    """Fixed-window counters in this process; old windows are dropped when a window rolls."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._purge_at = 0.0

    def hit(self, windows: list[Window], now: float) -> list[int]:
        with self._lock:
            if now >= self._purge_at:
                self._purge(now)
            counts = []
            for window in windows:
                count = self._counts.get(window.key, 0) + 1
                self._counts[window.key] = count
                counts.append(count)
            return counts

    def _purge(self, now: float) -> None:
        current = {k: v for k, v in self._counts.items() if _window_end_of(k) > now}
        self._counts = current
        self._purge_at = now + 1.0


class RedisCounters:
    """Fixed-window counters in Redis, shared by every process, reserved in blocks.

    A Redis round trip per request (INCR + EXPIRE for each window) cost ~0.6 ms of CPU per
    request under load, most of it thread wake-ups and GIL hand-overs around the wait. So a
    process reserves units of a window in blocks (``INCRBY``) and hands them out locally;
    one pipelined round trip renews every window whose block ran out.

    Reserved units count as used in Redis, so all processes together never admit more than
    the limit. A block is at most 1/``BLOCK_SHARE`` of what the window had left at the
    previous reservation (and at most ``MAX_BLOCK``): it shrinks to one unit as the window
    fills, so near the limit every request is counted in Redis as before, and units another
    process reserved but did not use can refuse a request early by at most that small block.
    Small limits (under ``BLOCK_SHARE`` × 2) are always counted one request at a time.
    """

    MAX_BLOCK = 32
    BLOCK_SHARE = 16

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        self._blocks: dict[str, Block] = {}
        self._lock = threading.Lock()
        self._purge_at = 0.0

    def hit(self, windows: list[Window], now: float) -> list[int]:
        """Each window's count including this request (above the limit means refused)."""
        counts: list[int | None] = []
        renew: list[tuple[int, Window, int]] = []
        with self._lock:
            if now >= self._purge_at:
                self._purge(now)
            for index, window in enumerate(windows):
                block = self._blocks.get(window.key)
                if block is not None and block.next <= block.last:
                    counts.append(block.next)
                    block.next += 1
                else:
                    seen = block.reserved_to if block is not None else 0
                    size = (window.amount - seen) // self.BLOCK_SHARE
                    renew.append((index, window, max(1, min(self.MAX_BLOCK, size))))
                    counts.append(None)
        if renew:
            self._reserve(renew, counts)
        return counts  # type: ignore[return-value]

    def _reserve(self, renew: list[tuple[int, Window, int]], counts: list[int | None]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for _, window, size in renew:
            pipe.incrby(window.key, size)
            pipe.expire(window.key, window.seconds + 1)
        totals = [int(total) for total in pipe.execute()[::2]]
        with self._lock:
            for (index, window, size), total in zip(renew, totals, strict=True):
                first = total - size + 1  # our units are first..total
                counts[index] = first
                usable = min(total, window.amount)
                self._blocks[window.key] = Block(next=first + 1, last=usable, reserved_to=total)

    def _purge(self, now: float) -> None:
        self._blocks = {k: b for k, b in self._blocks.items() if _window_end_of(k) > now}
        self._purge_at = now + 1.0


@dataclass(slots=True)
class Block:
    """Units ``next``..``last`` of a window are this process's to hand out."""

    next: int
    last: int
    reserved_to: int  # the window's total in Redis after our last reservation


class RateLimiter:
    """Per-key and per-address limits for every request of the API blueprint."""

    def __init__(self, settings: Settings) -> None:
        self.per_key = parse_many(settings.rate_limit_per_key)
        self.per_address = parse_many(settings.rate_limit_per_address)
        self.prefix = _key_prefix(settings)
        self.memory = MemoryCounters()
        self.shared = RedisCounters(settings.redis_url) if settings.redis_url else None
        self._redis_down_until = 0.0

    def check(self, key_identity: str, address: str) -> Response | None:
        """None if the request may go on, else the 429 answer."""
        now = time.time()
        windows = self._windows("key", key_identity, self.per_key, now)
        windows += self._windows("addr", address, self.per_address, now)
        counts = self._hit(windows, now)
        refused = [w for w, n in zip(windows, counts, strict=True) if n > w.amount]
        if not refused:
            return None
        retry_after = max(_window_end(w) for w in refused) - now
        return problem(
            429,
            "Too Many Requests",
            "rate limit exceeded; retry after the number of seconds in Retry-After",
            headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
        )

    def _windows(
        self, scope: str, who: str, items: list[RateLimitItem], now: float
    ) -> list[Window]:
        windows = []
        for item in items:
            seconds = item.get_expiry()
            end = (int(now) // seconds + 1) * seconds
            key = f"{self.prefix}{scope}:{who}:{item.amount}/{seconds}:{end}"
            windows.append(Window(key, item.amount, seconds))
        return windows

    def _hit(self, windows: list[Window], now: float) -> list[int]:
        if self.shared is not None and now >= self._redis_down_until:
            try:
                return self.shared.hit(windows, now)
            except redis.RedisError as exc:
                log.warning("rate-limit storage unreachable, counting in memory: %s", exc)
                self._redis_down_until = now + REDIS_BACKOFF_SECONDS
        return self.memory.hit(windows, now)


def _window_end(window: Window) -> float:
    return _window_end_of(window.key)


def _window_end_of(key: str) -> float:
    return float(key.rsplit(":", 1)[1])


def client_key_identity() -> str:
    """Who is calling, by key: a digest of the presented key (never the key itself)."""
    from .auth import presented_key

    digest = g.get("key_digest")
    if digest is None:
        plaintext, _ = presented_key(allow_query=True)
        digest = hashlib.sha256(plaintext.encode()).hexdigest() if plaintext else "anonymous"
    return "key:" + digest[:32]


def init_limiter(app: Flask, settings: Settings) -> RateLimiter:
    """One limiter per app (tests build many apps); limits apply to the whole api blueprint."""
    limiter = RateLimiter(settings)
    app.extensions["corrigenda.limiter"] = limiter
    return limiter


@bp.before_request
def _rate_limit() -> Response | None:
    limiter: RateLimiter = current_app.extensions["corrigenda.limiter"]
    return limiter.check(client_key_identity(), request.remote_addr or "unknown")


def _key_prefix(settings: Settings) -> str:
    # Shared by every process of one deployment; unique per app in tests, so parallel
    # test runs on one Redis never share counters.
    deployment = hashlib.sha256(settings.resolved_database_url().encode()).hexdigest()[:12]
    return f"corrigenda:{deployment}:rl:" + (uuid.uuid4().hex[:8] + ":" if settings.testing else "")
