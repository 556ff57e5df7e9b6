"""A small bounded HTTP/1.1 load generator (asyncio, keep-alive, loopback only).

Each of ``connections`` clients sends the next request as soon as the previous answer
arrived, for ``seconds``. Requests are prebuilt bytes, so the generator stays cheap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Result:
    requests: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    if b"connection: close" in head.lower():
        raise ConnectionResetError("server closed")
    return status


async def _client(
    host: str, port: int, make: Callable[[], bytes], stop_at: float, warm_until: float, out: Result
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    while time.perf_counter() < stop_at:
        started = time.perf_counter()
        try:
            writer.write(make())
            status = await _read_response(reader)
        except (ConnectionError, asyncio.IncompleteReadError):
            out.errors += 1
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
            continue
        if started >= warm_until:
            out.requests += 1
            out.statuses[status] = out.statuses.get(status, 0) + 1
            out.latencies.append(time.perf_counter() - started)
    writer.close()


def run(
    host: str,
    port: int,
    make: Callable[[], bytes],
    *,
    connections: int = 8,
    seconds: float = 8.0,
    warmup: float = 1.0,
) -> Result:
    """Load ``host:port`` with requests from ``make()``; returns counts and latencies."""
    out = Result()

    async def main() -> None:
        start = time.perf_counter()
        warm_until, stop_at = start + warmup, start + warmup + seconds
        await asyncio.gather(
            *(_client(host, port, make, stop_at, warm_until, out) for _ in range(connections))
        )

    asyncio.run(main())
    out.seconds = seconds
    return out
