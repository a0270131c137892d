"""Benchmark: the operator web page's first load, and the delay from the agent's output to the
page while 20 turns stream at once.

Runs the real App with the web plugin (aiohttp, the scripted agent as real subprocesses). The
"browser" is another process (this script with ``--read``), so it does not share the
server's event loop: it logs in, loads the page (HTML, script, style sheet, and the event
stream's first message, the snapshot the script renders) and reads the server-sent events,
stamping each text with ``time.monotonic()`` — one clock for every process on Linux. The
server side stamps each text event as it reaches the plugins. Printed, all measured in this
run:

- first load, p50 and p99 of ``--loads`` loads: idle, and while ``--turns`` turns stream;
  against the baseline of a bare aiohttp server handing out the same bytes (ratio);
- output-to-page delay p50 / p99 / max: one turn streaming (the baseline), then ``--turns``
  at once (ratio); every chunk must arrive (target: p99 under 1.5 s, the issue's bound).

    python bench/web.py [--turns 20] [--chunks 100] [--interval 0.05] [--loads 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cadenza.api import ChatRef, StreamEvent, hookimpl
from cadenza.testing import CHAT

PASSWORD = "bench-password"
PASSWORD_ENV = "CADENZA_BENCH_WEB_PASSWORD"
STATIC = ("app.js", "style.css")
READ_TIMEOUT = 300  # seconds a reader waits for the turns it expects


# --- the browser: a separate process ---------------------------------------------------------

async def first_load(session: aiohttp.ClientSession, url: str) -> float:
    """Seconds from asking for the page to holding everything it shows: the HTML, its
    script and style sheet, and the stream's snapshot."""
    start = time.perf_counter()
    async with session.get(url) as page:
        assert page.status == 200, page.status
        await page.read()
    for name in STATIC:
        async with session.get(f"{url}static/{name}") as item:
            await item.read()
    async with session.get(f"{url}events") as stream:
        async for line in stream.content:
            if line.startswith(b"data: "):
                break
    return time.perf_counter() - start


async def login(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(f"{url}login", data={"password": PASSWORD}) as answer:
        assert answer.status == 200, f"login: {answer.status}"


async def read(url: str, mode: str, count: int) -> Any:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        await login(session, url)
        if mode == "load":
            await first_load(session, url)  # warm-up: the connection, the server's caches
            return [await first_load(session, url) for _ in range(count)]
        seen: list[tuple[str, str, float]] = []
        ends = 0
        async with asyncio.timeout(READ_TIMEOUT), session.get(f"{url}events") as stream:
            print("ready", flush=True)
            async for line in stream.content:
                if not line.startswith(b"data: "):
                    continue
                message = json.loads(line[6:])
                if message["type"] == "text":
                    seen.append((message["id"], message["text"], time.monotonic()))
                elif message["type"] == "end":
                    ends += 1
                    if ends >= count:
                        break
        return seen


def reader(url: str, mode: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, "--read", url, mode, str(count)],
                            stdout=subprocess.PIPE, text=True)


async def result_of(process: subprocess.Popen[str]) -> Any:
    out, _ = await asyncio.to_thread(process.communicate)
    assert process.returncode == 0, f"reader exited {process.returncode}"
    return json.loads(out.splitlines()[-1])


async def wait_ready(process: subprocess.Popen[str]) -> None:
    line = await asyncio.to_thread(process.stdout.readline)  # type: ignore[union-attr]
    assert line.strip() == "ready", line


# --- the server side ---------------------------------------------------------------------------

class Probe:
    """A plugin stamping each text event as it reaches the plugins: the agent's output."""

    def __init__(self) -> None:
        self.emitted: dict[tuple[str, str], float] = {}

    @hookimpl
    def on_stream_event(self, event: StreamEvent) -> None:
        if event.kind == "text":
            self.emitted[(event.turn.id, event.text)] = time.monotonic()


async def bare_server() -> tuple[web.AppRunner, str]:
    """The baseline: aiohttp alone, handing out bytes like the page's (no login, no board)."""
    static = resources.files("cadenza.frontends.web") / "static"
    page = ("<!doctype html>" + "x" * 3000).encode()
    app = web.Application()

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"type": "snapshot"}\n\n')
        return response

    app.add_routes([
        web.get("/", lambda r: _bytes(page, "text/html")),
        web.post("/login", lambda r: _bytes(b"ok", "text/html")),
        web.get("/events", stream),
        *(web.get(f"/static/{name}", lambda r, n=name: _bytes((static / n).read_bytes(),
                                                               "text/plain"))
          for name in STATIC)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}/"


async def _bytes(body: bytes, kind: str) -> web.Response:
    return web.Response(body=body, content_type=kind)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def stream_turns(h: Any, probe: Probe, url: str, turns: int, chunks: int,
                       interval: float, loads_meanwhile: int = 0) -> tuple[list[float],
                                                                           list[float]]:
    """Delays (s) of every chunk of ``turns`` turns streaming at once, from the probe's
    stamp to the reader's; and ``loads_meanwhile`` first loads made while they all stream."""
    probe.emitted.clear()
    process = reader(url, "stream", turns)
    await wait_ready(process)
    for index in range(turns):
        chat = ChatRef(CHAT.frontend, f"bench-{index}")
        await h.say(f"tick {chunks} {interval} chunk", chat=chat)
    busy: list[float] = []
    if loads_meanwhile:
        async with asyncio.timeout(READ_TIMEOUT):  # every turn streaming first
            while len({turn for turn, _ in probe.emitted}) < turns:
                await asyncio.sleep(0.01)
        busy = await loads(url, loads_meanwhile)
    seen = await result_of(process)
    delays = [at - probe.emitted[(turn, text)] for turn, text, at in seen
              if (turn, text) in probe.emitted]
    missing = turns * chunks - len(delays)
    assert missing == 0, f"{missing} chunks never reached the page"
    return delays, busy


async def loads(url: str, count: int) -> list[float]:
    return await result_of(reader(url, "load", count))


async def bench(args: argparse.Namespace) -> None:
    from cadenza.testing.harness import AppFactory

    os.environ[PASSWORD_ENV] = PASSWORD
    toml = (f'[plugins]\nweb = true\n\n[web]\nport = 0\npassword_env = "{PASSWORD_ENV}"\n\n'
            f"[core]\nmax_running = {args.turns + 5}\n")
    with tempfile.TemporaryDirectory() as directory:
        factory = AppFactory(Path(directory))
        probe = Probe()
        h = await factory(toml, probe=probe)
        url = h.plugin("web").url
        runner, bare_url = await bare_server()
        try:
            bare = await loads(bare_url, args.loads)
            idle = await loads(url, args.loads)
            one, _ = await stream_turns(h, probe, url, 1, args.chunks, args.interval)
            many, busy = await stream_turns(h, probe, url, args.turns, args.chunks,
                                            args.interval, loads_meanwhile=args.loads)
        finally:
            await runner.cleanup()
            await factory.close()

    def ms(values: list[float], q: float) -> str:
        return f"{percentile(values, q) * 1000:.1f} ms"

    print(f"first load (HTML, script, style sheet, stream snapshot), {args.loads} loads:")
    print(f"  bare aiohttp, same bytes (baseline): p50 {ms(bare, .5)}, p99 {ms(bare, .99)}")
    print(f"  page, idle:                          p50 {ms(idle, .5)}, p99 {ms(idle, .99)}"
          f"  ({statistics.median(idle) / statistics.median(bare):.2f}× baseline p50)")
    print(f"  page, {args.turns} turns streaming:           p50 {ms(busy, .5)}, "
          f"p99 {ms(busy, .99)}  ({statistics.median(busy) / statistics.median(bare):.2f}× "
          "baseline p50)")
    print(f"output → page delay, {args.chunks} chunks per turn every {args.interval} s:")
    print(f"  1 turn (baseline): p50 {ms(one, .5)}, p99 {ms(one, .99)}, max {ms(one, 1)}")
    print(f"  {args.turns} turns at once:   p50 {ms(many, .5)}, p99 {ms(many, .99)}, "
          f"max {ms(many, 1)}  (p99 {percentile(many, .99) / percentile(one, .99):.2f}× "
          "baseline; target under 1500 ms)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--read":
        url, mode, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
        print(json.dumps(asyncio.run(read(url, mode, count))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--loads", type=int, default=30)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
