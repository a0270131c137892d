"""Messages with buttons on record, so a crash cannot leave a Stop button that does nothing,
nor a live message that says "working…" for ever.

A message is written down when it is sent with buttons (a turn's live message, a timeout
warning) and forgotten once its view has shown its end. A live message's record also keeps
the text it shows (without its status line), written before each edit that changes it, so
it can be finished after a crash. A clean shutdown shows every end first; after a crash or
``kill -9`` the records survive, and at the next start the buttons of those messages are
removed and each live message is edited to say its turn was interrupted (and whether it
resumes). Writes happen when a message is sent, when its text changes (at most one edit a
second per room, coalesced) and when it is done; never per text delta.

For a platform whose message ids count up in each room (Telegram), a third table keeps per
room the newest id the bot sent and the sends whose answers were lost (written before each
send), so that the messages of those sends can be found and finished after a crash too (see
``outbox``).

Each frontend has its own tables, ``{name}_buttons``, ``{name}_live`` and ``{name}_rooms``,
migrated under its own name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cadenza.frontends.live.transport import Outgoing
from sqlalchemy import Column, Integer, MetaData, Table, Text, bindparam, delete, select

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Store


def migrations(name: str, markup_column: str = "markup") -> list[str]:
    """The tables' history (append-only: released steps never change)."""
    return [
        f"CREATE TABLE {name}_buttons (chat_id INTEGER NOT NULL, message_id INTEGER NOT NULL, "
        "PRIMARY KEY (chat_id, message_id))",
        f"CREATE TABLE {name}_live (chat_id INTEGER NOT NULL, message_id INTEGER NOT NULL, "
        f"turn_id TEXT NOT NULL, {markup_column} TEXT NOT NULL, plain TEXT NOT NULL, "
        "PRIMARY KEY (chat_id, message_id))",
        f"CREATE TABLE {name}_rooms (chat_id INTEGER PRIMARY KEY, last_id INTEGER, "
        "unsure TEXT NOT NULL DEFAULT '[]')",
    ]


@dataclass(frozen=True, slots=True)
class LostSend:
    """A send whose answer never came: its message may or may not be in the room."""

    out: Outgoing
    plain: bool  # sent as plain text
    after: int | None  # the newest message id the bot knew in the room when it was sent


@dataclass(frozen=True, slots=True)
class Room:
    """What is on record for one room: its newest known id and its lost sends."""

    last_id: int | None
    lost: tuple[LostSend, ...]


def _encode(lost: Iterable[LostSend]) -> str:
    return json.dumps([{
        "markup": send.out.markup, "plain": send.out.plain,
        "buttons": send.out.buttons, "live": send.out.live, "document": send.out.document,
        "as_plain": send.plain, "after": send.after} for send in lost])


def _decode(text: str) -> tuple[LostSend, ...]:
    def pair(value: list[str] | None) -> tuple[str, str] | None:
        return None if value is None else (value[0], value[1])

    return tuple(LostSend(Outgoing(
        item["markup"], item["plain"], tuple((label, data) for label, data in item["buttons"]),
        None if item["live"] is None else (item["live"][0], item["live"][1], item["live"][2]),
        pair(item["document"])), bool(item["as_plain"]), item["after"])
        for item in json.loads(text))


@dataclass(frozen=True, slots=True)
class LiveMessage:
    """A turn's live message as a previous run last showed it (status line left out)."""

    room: int
    message_id: int
    turn_id: str
    markup: str
    plain: str


class Ledger:
    """``name``: the frontend's (tables ``{name}_buttons`` and ``{name}_live``);
    ``markup_column``: what the live table calls the markup (Telegram's says ``html``)."""

    def __init__(self, store: Store, log: logging.Logger, name: str,
                 markup_column: str = "markup") -> None:
        self.store = store
        self.log = log
        self.name = name
        store.migrate(name, migrations(name, markup_column))
        # the tables as the migrations leave them; column "chat_id" holds the room
        metadata = MetaData()
        self.buttons = buttons = Table(
            f"{name}_buttons", metadata,
            Column("chat_id", Integer, primary_key=True, autoincrement=False),
            Column("message_id", Integer, primary_key=True, autoincrement=False),
        )
        self.live = live = Table(
            f"{name}_live", metadata,
            Column("chat_id", Integer, primary_key=True, autoincrement=False),
            Column("message_id", Integer, primary_key=True, autoincrement=False),
            Column("turn_id", Text, nullable=False),
            Column(markup_column, Text, key="markup", nullable=False),
            Column("plain", Text, nullable=False),
        )
        self._forget_buttons = delete(buttons).where(
            buttons.c.chat_id == bindparam("of_chat"),
            buttons.c.message_id == bindparam("of_message"))
        self._forget_live = delete(live).where(live.c.chat_id == bindparam("of_chat"),
                                               live.c.message_id == bindparam("of_message"))
        self._select_buttons = select(buttons.c.chat_id, buttons.c.message_id).order_by(
            buttons.c.chat_id, buttons.c.message_id)
        self._select_live = select(
            live.c.chat_id.label("room"), live.c.message_id, live.c.turn_id,
            live.c.markup.label("markup"), live.c.plain,
        ).order_by(live.c.chat_id, live.c.message_id)
        self.rooms = rooms = Table(
            f"{name}_rooms", metadata,
            Column("chat_id", Integer, primary_key=True, autoincrement=False),
            Column("last_id", Integer),
            Column("unsure", Text, nullable=False),
        )
        self._select_rooms = select(rooms.c.chat_id, rooms.c.last_id, rooms.c.unsure)
        self._note_room = store.upsert(rooms, {}, key=["chat_id"], update=["last_id", "unsure"])
        self._add = store.upsert(buttons, {}, key=["chat_id", "message_id"], update=[])
        self._remember = store.upsert(live, {}, key=["chat_id", "message_id"],
                                      update=["turn_id", "markup", "plain"])

    async def add(self, room: int, message_id: int) -> None:
        await self._write(self._add, [{"chat_id": room, "message_id": message_id}])

    async def remember(self, message: LiveMessage) -> None:
        """What a turn's live message shows now."""
        await self._write(self._remember, [{
            "chat_id": message.room, "message_id": message.message_id,
            "turn_id": message.turn_id, "markup": message.markup, "plain": message.plain}])

    async def forget_live(self, room: int, message_id: int) -> None:
        """The message is no longer a live one (its answer went on in the next message)."""
        await self._write(self._forget_live, [{"of_chat": room, "of_message": message_id}])

    async def remove(self, messages: Iterable[tuple[int, int]]) -> None:
        rows = [{"of_chat": room, "of_message": message_id} for room, message_id in messages]
        await self._write(self._forget_buttons, rows)
        await self._write(self._forget_live, rows)

    async def note_room(self, room: int, last_id: int | None, lost: Iterable[LostSend]) -> None:
        """The room's newest known message id, and its sends not known to have arrived."""
        await self._write(self._note_room, [
            {"chat_id": room, "last_id": last_id, "unsure": _encode(lost)}])

    async def rooms_on_record(self) -> dict[int, Room]:
        """Each room's newest known id and lost sends, as the previous run left them."""
        found: dict[int, Room] = {}
        for row in await self._read(self._select_rooms):
            try:
                found[row["chat_id"]] = Room(row["last_id"], _decode(row["unsure"]))
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                self.log.warning("%s: unreadable record of chat %s (%s); ignored", self.name,
                                 row["chat_id"], exc)
        return found

    async def left_over(self) -> list[tuple[int, int]]:
        """Messages a previous run left with buttons: (room, message id)."""
        rows = await self._read(self._select_buttons)
        return [(row["chat_id"], row["message_id"]) for row in rows]

    async def live_left_over(self) -> list[LiveMessage]:
        """Live messages a previous run could not finish."""
        return [LiveMessage(**row) for row in await self._read(self._select_live)]

    async def _read(self, statement: Any) -> list[dict[str, Any]]:
        try:
            return await self.store.fetch(statement)
        except Exception as exc:  # then there is nothing to clean up, and delivery goes on
            self.log.warning("%s: could not read the messages left with buttons: %s",
                             self.name, exc)
            return []

    async def _write(self, statement: Any, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        try:
            await self.store.execute(statement, rows)
        except Exception as exc:  # a bookkeeping failure must not stop a delivery
            self.log.warning("%s: could not record messages with buttons: %s", self.name, exc)
