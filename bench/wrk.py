"""Load with ``wrk`` (C, LuaJIT) when it is installed: far cheaper per request than the
asyncio generator in ``loadgen.py``, which on this 2-core machine took a share of a core
from the server it measured. Same model: ``connections`` keep-alive clients, each sending
its next request as soon as the answer arrived, a warm-up run, then ``seconds`` measured.

A scenario gives the request as a Lua function ``body(n)`` (``n`` counts this wrk
thread's requests); ``uuid()`` returns a fresh event UUID (unique per run, thread and
request). Statuses are counted per response and reported with the latency percentiles.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field

import orjson

THREADS = 2

_SCRIPT = """
wrk.method = "POST"
wrk.path = {path}
wrk.headers = {headers}
local run = {run}
local threads = {{}}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  statuses = {{}}
  sent = 0
end

function uuid()
  sent = sent + 1
  return string.format("%s-%04x-4%03x-8%03x-%012x", run, tid % 65536, 0, 0, sent)
end

{data}

function request()
  return wrk.format(nil, nil, nil, body(sent))
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {{}}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      merged[tostring(status)] = (merged[tostring(status)] or 0) + count
    end
  end
  local parts = {{}}
  for status, count in pairs(merged) do
    table.insert(parts, string.format('"%s": %d', status, count))
  end
  local errors = summary.errors
  io.write(string.format(
    'WRK-RESULT {{"requests": %d, "micros": %d, "p50": %d, "p99": %d, "errors": %d,'
    .. ' "statuses": {{%s}}}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.connect + errors.read + errors.write + errors.timeout, table.concat(parts, ", ")))
end
"""


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return {0.5: self.p50_ms, 0.99: self.p99_ms}[q]


def available() -> bool:
    return shutil.which("wrk") is not None


def version() -> str:
    found = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return (found.stdout or found.stderr).split("[", 1)[0].strip()


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def lua_list(items: list[str]) -> str:
    return "{" + ", ".join(lua_string(item) for item in items) + "}"


def run(
    host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    lua: str,
    *,
    connections: int = 8,
    seconds: float = 8.0,
    warmup: float = 1.0,
) -> WrkResult:
    """Load ``http://host:port/path`` with bodies from the Lua ``body(n)`` in ``lua``."""
    url = f"http://{host}:{port}{path}"
    if warmup > 0:
        _wrk(url, _script(path, headers, lua), connections, warmup)
    return _wrk(url, _script(path, headers, lua), connections, seconds)


def _script(path: str, headers: dict[str, str], lua: str) -> str:
    """The Lua script with a run id of its own: every wrk run (the warm-up too) sends new
    event UUIDs, never the previous run's (which would be answered as duplicates)."""
    pairs = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())
    return _SCRIPT.format(
        path=lua_string(path),
        headers="{" + pairs + "}",
        run=lua_string(uuid.uuid4().hex[:8]),
        data=lua,
    )


def _wrk(url: str, script: str, connections: int, seconds: float) -> WrkResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="corrigenda-wrk-") as file:
        file.write(script)
        file.flush()
        command = [
            "wrk", "-t", str(min(THREADS, connections)), "-c", str(connections),
            "-d", f"{max(1, round(seconds))}s", "--timeout", "10s", "-s", file.name, url,
        ]  # fmt: skip
        found = subprocess.run(command, capture_output=True, text=True, check=True)
    line = next(x for x in found.stdout.splitlines() if x.startswith("WRK-RESULT "))
    data = orjson.loads(line.removeprefix("WRK-RESULT "))
    return WrkResult(
        requests=data["requests"],
        seconds=data["micros"] / 1e6,
        p50_ms=data["p50"] / 1000,
        p99_ms=data["p99"] / 1000,
        errors=data["errors"],
        statuses={int(k): v for k, v in data["statuses"].items()},
    )
