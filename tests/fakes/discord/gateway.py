"""The fake's gateway: HELLO, IDENTIFY → READY + GUILD_CREATE, heartbeats, RESUME with the
missed dispatches replayed, RECONNECT, INVALID_SESSION and Discord's close codes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import WSMsgType, web

from .model import ALL_INTENTS, JSON
from .rest import json_response

if TYPE_CHECKING:
    from .server import FakeDiscordServer

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE_UPDATE, VOICE_STATE_UPDATE = 0, 1, 2, 3, 4
RESUME, RECONNECT, REQUEST_GUILD_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11

CLOSE_REASONS = {
    4000: "Unknown error.",
    4001: "Unknown opcode.",
    4002: "Decode error.",
    4003: "Not authenticated.",
    4004: "Authentication failed.",
    4005: "Already authenticated.",
    4007: "Invalid seq.",
    4008: "Rate limited.",
    4009: "Session timed out.",
    4010: "Invalid shard.",
    4011: "Sharding required.",
    4012: "Invalid API version.",
    4013: "Invalid intent(s).",
    4014: "Disallowed intent(s).",
}
# Closes after which Discord will not accept a RESUME of the session.
SESSION_ENDING_CLOSES = frozenset({1000, 1001, 4004, 4010, 4011, 4012, 4013, 4014})


@dataclass
class GatewayFrame:
    """One gateway payload, as logged: ``direction`` "in" is from the bot."""

    direction: Literal["in", "out"]
    op: int | None
    t: str | None
    s: int | None
    d: Any
    session_id: str | None
    at: float


@dataclass
class GatewaySession:
    """An identified session; it outlives its connection until closed for good."""

    id: str
    intents: int
    seq: int = 0
    log: deque[JSON] = field(default_factory=lambda: deque(maxlen=5000))
    connection: _Connection | None = None
    presence: JSON | None = None
    resumes: int = 0
    ended: bool = False

    @property
    def connected(self) -> bool:
        return self.connection is not None

    def dispatch(self, event: str, data: JSON) -> int:
        self.seq += 1
        frame = {"op": DISPATCH, "t": event, "s": self.seq, "d": data}
        self.log.append(frame)
        if self.connection is not None:
            self.connection.send(frame)
        return self.seq


class _Connection:
    def __init__(self, ws: web.WebSocketResponse, request: web.Request,
                 compress: str | None) -> None:
        self.ws = ws
        self.request = request
        self.path = request.path
        self.session: GatewaySession | None = None
        self.queue: asyncio.Queue[JSON | None] = asyncio.Queue()
        self.zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self.closing = False
        self.close_code: int | None = None  # the code the fake closed with
        self.heartbeats = 0

    def send(self, frame: JSON) -> None:
        if not self.closing:
            self.queue.put_nowait(frame)

    async def write_loop(self, log: Callable[[JSON, _Connection], None]) -> None:
        while (frame := await self.queue.get()) is not None:
            if self.closing or self.ws.closed:
                return
            log(frame, self)
            text = json.dumps(frame, separators=(",", ":"))
            with contextlib.suppress(ConnectionError, RuntimeError):
                if self.zlib is not None:
                    data = self.zlib.compress(text.encode()) + self.zlib.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)
                else:
                    await self.ws.send_str(text)

    def abort(self) -> None:
        self.closing = True
        self.queue.put_nowait(None)
        transport = self.request.transport
        if transport is not None:
            transport.abort()


class Gateway:
    """Sessions and connections; the server builds READY and event payloads."""

    def __init__(self, server: FakeDiscordServer, heartbeat_interval: float) -> None:
        self.server = server
        self.heartbeat_interval = heartbeat_interval
        self.accept_connections = True
        self.ack_heartbeats = True
        self.log: list[GatewayFrame] = []
        self.close_codes: list[int | None] = []  # every connection's end, as the fake saw it
        self._sessions: dict[str, GatewaySession] = {}
        self._connections: set[_Connection] = set()

    # ----------------------------------------------------------------- inspection

    @property
    def sessions(self) -> list[GatewaySession]:
        """Sessions that may still be resumed (connected or not)."""
        return [s for s in self._sessions.values() if not s.ended]

    @property
    def connected(self) -> list[GatewaySession]:
        return [s for s in self.sessions if s.connected]

    def frames(self, *, op: int | None = None, t: str | None = None,
               direction: str | None = None) -> list[GatewayFrame]:
        return [
            f for f in self.log
            if (op is None or f.op == op) and (t is None or f.t == t)
            and (direction is None or f.direction == direction)
        ]

    # ----------------------------------------------------------------- dispatching

    def dispatch(self, event: str, build: Callable[[GatewaySession], JSON | None]) -> int:
        """Send ``event`` to every session for which ``build`` returns a payload (connected
        or waiting to resume); returns how many sessions got it."""
        sent = 0
        for session in self.sessions:
            data = build(session)
            if data is not None:
                session.dispatch(event, data)
                sent += 1
        return sent

    # ----------------------------------------------------------------- faults

    async def close(self, code: int, reason: str | None = None) -> None:
        """Close every connection with ``code``, as Discord does; sessions survive unless the
        code ends them (4004, 4010-4014)."""
        for connection in list(self._connections):
            await self._close(connection, code, reason)

    def drop(self) -> None:
        """Cut every connection without a close frame; discord.py reconnects and RESUMEs.
        Synchronous, so what a test dispatches next waits in the session for the RESUME."""
        for connection in list(self._connections):
            self._detach(connection)
            connection.abort()

    def send_reconnect(self) -> None:
        """Op 7 RECONNECT: the bot closes and resumes."""
        for session in self.connected:
            assert session.connection is not None
            session.connection.send({"op": RECONNECT, "d": None, "s": None, "t": None})

    def invalidate(self, resumable: bool = False) -> None:
        """Op 9 INVALID_SESSION; not resumable ends the session, so the bot identifies anew."""
        for session in self.connected:
            assert session.connection is not None
            session.connection.send({"op": INVALID_SESSION, "d": resumable, "s": None, "t": None})
            if not resumable:
                session.ended = True

    def request_heartbeat(self) -> None:
        for session in self.connected:
            assert session.connection is not None
            session.connection.send({"op": HEARTBEAT, "d": None, "s": None, "t": None})

    def shutdown(self) -> None:
        """The server goes down: connections cut, sessions kept for a RESUME later."""
        self.drop()

    # ----------------------------------------------------------------- the websocket

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self.accept_connections:
            return json_response({"message": "503: Service Unavailable", "code": 0}, 503)
        ws = web.WebSocketResponse(autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        connection = _Connection(ws, request, request.query.get("compress"))
        self._connections.add(connection)
        writer = asyncio.create_task(connection.write_loop(self._log_out))
        try:
            if request.query.get("v", "10") not in ("9", "10"):
                await self._close(connection, 4012)
                return ws
            if request.query.get("encoding", "json") != "json":
                await self._close(connection, 4002, "The fake speaks JSON only.")
                return ws
            connection.send({"op": HELLO, "d": {"heartbeat_interval": int(
                self.heartbeat_interval * 1000)}, "s": None, "t": None})
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    try:
                        await self._receive(connection, message.data)
                    except Exception as error:  # a bug in the fake: recorded, then 4000
                        self.server.errors.append(error)
                        await self._close(connection, 4000)
                elif message.type is WSMsgType.BINARY:
                    await self._close(connection, 4002)
                if connection.closing:
                    break
        finally:
            self._connections.discard(connection)
            self.close_codes.append(connection.close_code or ws.close_code)
            if not connection.closing and ws.close_code in SESSION_ENDING_CLOSES:
                self._end(connection)
            self._detach(connection)
            connection.closing = True
            connection.queue.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            self.server._notify()
        return ws

    async def _receive(self, connection: _Connection, text: str) -> None:
        try:
            payload = json.loads(text)
            op, data = payload["op"], payload.get("d")
        except (ValueError, KeyError, TypeError):
            await self._close(connection, 4002)
            return
        session = connection.session
        self.log.append(GatewayFrame("in", op, None, None, data, session and session.id,
                                     self.server._loop_time()))
        self.server._notify()
        if op == HEARTBEAT:
            connection.heartbeats += 1
            if self.ack_heartbeats:
                connection.send({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == IDENTIFY:
            await self._identify(connection, data)
        elif op == RESUME:
            await self._resume(connection, data)
        elif op not in (PRESENCE_UPDATE, VOICE_STATE_UPDATE, REQUEST_GUILD_MEMBERS):
            await self._close(connection, 4001)
        elif session is None:
            await self._close(connection, 4003)
        elif op == PRESENCE_UPDATE:
            session.presence = data
        elif op == REQUEST_GUILD_MEMBERS and isinstance(data, dict):
            for chunk in self.server._member_chunks(data):
                session.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    async def _identify(self, connection: _Connection, data: Any) -> None:
        if connection.session is not None:
            await self._close(connection, 4005)
            return
        if not isinstance(data, dict) or not self.server._token_ok(data.get("token")):
            await self._close(connection, 4004)
            return
        intents = data.get("intents")
        if isinstance(intents, bool) or not isinstance(intents, int) or intents & ~ALL_INTENTS:
            await self._close(connection, 4013)
            return
        shard = data.get("shard")
        if shard is not None and (not isinstance(shard, list) or len(shard) != 2
                                  or shard[1] != 1 or shard[0] != 0):
            await self._close(connection, 4010)
            return
        if intents & self.server._denied_intents():
            await self._close(connection, 4014)
            return
        session = GatewaySession(secrets.token_hex(16), intents, presence=data.get("presence"))
        self._sessions[session.id] = session
        self._attach(connection, session)
        session.dispatch("READY", self.server._ready_payload(session, shard))
        for guild in self.server._guild_create_payloads(session):
            session.dispatch("GUILD_CREATE", guild)

    async def _resume(self, connection: _Connection, data: Any) -> None:
        if not isinstance(data, dict) or not self.server._token_ok(data.get("token")):
            await self._close(connection, 4004)
            return
        session = self._sessions.get(str(data.get("session_id")))
        seq = data.get("seq")
        oldest = session.log[0]["s"] if session and session.log else 1
        if session is None or session.ended or not isinstance(seq, int) or seq < oldest - 1:
            connection.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        if seq > session.seq:
            await self._close(connection, 4007)
            return
        if session.connection is not None and session.connection is not connection:
            stale = session.connection
            self._detach(stale)
            stale.abort()
        self._attach(connection, session)
        for frame in session.log:
            if frame["s"] > seq:
                connection.send(frame)
        session.resumes += 1
        session.dispatch("RESUMED", {"_trace": ["fake-discord-gateway"]})

    async def _close(self, connection: _Connection, code: int, reason: str | None = None) -> None:
        if connection.closing:
            return
        if code in SESSION_ENDING_CLOSES:
            self._end(connection)
        self._detach(connection)
        connection.closing = True
        connection.close_code = code
        connection.queue.put_nowait(None)
        message = (reason if reason is not None else CLOSE_REASONS.get(code, "")).encode()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await connection.ws.close(code=code, message=message)

    # ----------------------------------------------------------------- bookkeeping

    def _attach(self, connection: _Connection, session: GatewaySession) -> None:
        connection.session = session
        session.connection = connection
        self.server._notify()

    def _detach(self, connection: _Connection) -> None:
        session = connection.session
        if session is not None and session.connection is connection:
            session.connection = None
            self.server._notify()

    def _end(self, connection: _Connection) -> None:
        if connection.session is not None:
            connection.session.ended = True

    def _log_out(self, frame: JSON, connection: _Connection) -> None:
        session = connection.session
        self.log.append(GatewayFrame("out", frame.get("op"), frame.get("t"), frame.get("s"),
                                     frame.get("d"), session and session.id,
                                     self.server._loop_time()))
        self.server._notify()
