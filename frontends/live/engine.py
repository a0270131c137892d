"""The live-message engine of one frontend: views in, calls to the platform out.

``show(view)`` starts showing a view in its chat's room; ``touch(view)`` says it changed. One
``Outbox`` per room does the rest, paced by ``Pacing`` and recorded in the ``Ledger``. The
frontend sets ``ready`` once its transport is connected (outboxes wait for it), runs
``finish_left_over`` once (what a crashed run left behind), and at shutdown calls ``flush``
(deliver what is still owed, for a while) and ``close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from cadenza.frontends.live.ledger import Ledger, LiveMessage, LostSend, Room
from cadenza.frontends.live.outbox import Outbox, Unsure
from cadenza.frontends.live.pacing import Pacing
from cadenza.frontends.live.reachability import Reachability
from cadenza.frontends.live.retry import RetryPolicy
from cadenza.frontends.live.transport import BadFormat, Retry, SendError, Transport
from cadenza.frontends.live.views import Style, View, interrupted

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import ChatRef, Clock, Recovery, Store

CLEAR_ATTEMPTS = 3
RECOVERY_WAIT = 60.0  # seconds to wait for the journal's recoveries before the clean-up
PRUNE_AT = 256  # outboxes kept before idle ones are looked for
ROOMS_KEPT = 10_000  # rooms whose newest message id is kept in memory


class Engine:
    def __init__(self, transport: Transport, clock: Clock, log: logging.Logger, store: Store,
                 retry: RetryPolicy, *, ledger: Ledger | None = None) -> None:
        self.transport = transport
        self.name = transport.name
        self.style = Style.of(transport)
        self.clock = clock
        self.log = log
        self.retry = retry
        self.pacing = Pacing(clock, transport.limits)
        self.ledger = ledger if ledger is not None else Ledger(store, log, transport.name)
        self.ready = asyncio.Event()  # connected: outboxes may send
        self.left_over: list[tuple[int, int]] = []  # buttons a crashed run could not remove
        self.live_left_over: list[LiveMessage] = []  # and its unfinished live messages
        self.recoveries: dict[str, Recovery] = {}  # turn id → how the journal recovers it
        self.recovered = asyncio.Event()  # every recovery was reported (on_ready)
        self.outboxes: dict[int, Outbox] = {}
        self._prune_at = PRUNE_AT
        self.reachability = Reachability(clock)  # the frontend's poller reports to it too
        # newest known ids and lost sends, on record; bounded, as the outboxes are
        self.rooms: OrderedDict[int, Room] = OrderedDict()

    # --- views ----------------------------------------------------------------------

    def show(self, view: View) -> None:
        """Start showing ``view`` in its chat."""
        where = self._locate(view)
        if where is not None:
            room, thread = where
            self.outbox(room).add(view, thread)

    def touch(self, view: View) -> None:
        """``view`` changed: show the change as soon as the limits allow."""
        where = self._locate(view)
        if where is not None:
            self.outbox(where[0]).touch(view)

    def saw(self, chat: ChatRef, message_id: int) -> None:
        """A person's message in ``chat``: on a platform whose ids count up, nothing the bot
        sends after it has a smaller id (a lower bound for finding lost sends)."""
        try:
            room, _ = self.transport.locate(chat)
        except ValueError:
            return
        outbox = self.outboxes.get(room)
        if outbox is not None:
            outbox.saw(message_id)
        elif getattr(self.transport, "probe", None) is not None:
            known = self.rooms.get(room)
            last = known.last_id if known is not None else None
            self._keep(room, Room(max(last or 0, message_id), known.lost if known else ()))

    def _keep(self, room: int, known: Room) -> None:
        """Remember a room's record; past ``ROOMS_KEPT`` the oldest without lost sends go (a
        room forgotten only loses the lower bound of a lost first send: the gap search
        still covers it)."""
        self.rooms[room] = known
        self.rooms.move_to_end(room)
        while len(self.rooms) > ROOMS_KEPT:
            oldest = next((r for r, k in self.rooms.items() if not k.lost), None)
            if oldest is None:  # all still to be finished
                break
            del self.rooms[oldest]

    def _locate(self, view: View) -> tuple[int, int | None] | None:
        try:
            return self.transport.locate(view.chat)
        except ValueError as exc:
            self.log.error("%s: %s; message dropped", self.name, exc)
            return None

    def outbox(self, room: int) -> Outbox:
        outbox = self.outboxes.get(room)
        if outbox is None:
            if len(self.outboxes) >= self._prune_at:
                self._prune()
            known = self.rooms.get(room)
            outbox = self.outboxes[room] = Outbox(
                room, self.transport, self.pacing, self.clock, self.log, self.ready,
                self.retry, self.ledger, self.reachability,
                None if known is None else known.last_id)
        return outbox

    def _prune(self) -> None:
        """Forget the outboxes of rooms with nothing going on, so that memory follows the
        rooms active now, not every room ever seen. Amortised: the next sweep waits until
        the number of outboxes has doubled."""
        now = self.clock.monotonic()
        for room, outbox in list(self.outboxes.items()):
            if outbox.disposable(now):
                del self.outboxes[room]
                outbox.dispose()
                if outbox.last_id is not None:
                    self._keep(room, Room(outbox.last_id, ()))
        self._prune_at = max(PRUNE_AT, 2 * len(self.outboxes))

    # --- what a crashed run left ----------------------------------------------------

    async def load(self) -> None:
        """Read what a previous run left behind; before anything is sent (outboxes wait for
        ``ready``)."""
        self.left_over = await self.ledger.left_over()
        self.live_left_over = await self.ledger.live_left_over()
        for room, known in (await self.ledger.rooms_on_record()).items():
            self._keep(room, known)

    async def finish_left_over(self) -> None:
        """Finish what a crashed run left behind (see ``ledger``): each live message is
        edited to say that its turn was interrupted, and whether it resumes (known once the
        journal has reported its recoveries); other messages lose their buttons. Sends a
        crash cut short are looked for where they would be, and finished the same way."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RECOVERY_WAIT):
                await self.recovered.wait()
        live = {(item.room, item.message_id): item for item in self.live_left_over}
        for room, message_id in dict.fromkeys([*live, *self.left_over]):
            item = live.get((room, message_id))
            if item is not None:
                out = interrupted(self.style, item.markup, item.plain,
                                  self.recoveries.get(item.turn_id))
                await self._fix(room, message_id, lambda r, m, plain, out=out:
                                self.transport.edit(r, m, out, plain))
            else:
                await self._fix(room, message_id, lambda r, m, plain:
                                self.transport.clear_buttons(r, m))
            await self.ledger.remove([(room, message_id)])
        for room, known in list(self.rooms.items()):
            if known.lost:
                self.outbox(room).look_for([Unsure(sent, None, finish=self._finisher(room, sent))
                                            for sent in known.lost])
                self.rooms[room] = Room(known.last_id, ())  # the outbox has them now
        self.recoveries.clear()
        if self.left_over or live:
            self.log.info("%s: finished %d message(s) left by the previous run", self.name,
                          len(set(self.left_over) | set(live)))

    def _finisher(self, room: int, sent: LostSend) -> Callable[[int], Awaitable[None]] | None:
        """What to do with the message of a send a crash cut short, once found: a live
        message says its turn was interrupted; buttons are removed."""
        live = sent.out.live
        if live is not None:
            out = interrupted(self.style, live[1], live[2], self.recoveries.get(live[0]))
            return lambda message_id: self.transport.edit(room, message_id, out, sent.plain)
        if sent.out.buttons:
            return lambda message_id: self.transport.clear_buttons(room, message_id)
        return None

    async def _fix(self, room: int, message_id: int,
                   call: Callable[[int, int, bool], Awaitable[None]]) -> None:
        """One clean-up call, paced and retried a few times; a failure is only logged."""
        outbox = self.outbox(room)
        plain = False
        for _ in range(CLEAR_ATTEMPTS):
            await self.pacing.slot(outbox.pace)
            try:
                await call(room, message_id, plain)
            except Retry as retry:
                if retry.flood and retry.after is not None:
                    self.pacing.limited(outbox.pace, retry.after)
                continue
            except BadFormat:
                plain = True
                continue
            except SendError as exc:
                self.log.info("%s: a message left in chat %s: %s", self.name, room, exc)
            return

    # --- shutdown -------------------------------------------------------------------

    async def flush(self, timeout: float) -> None:
        """Deliver what is still owed (final texts, interruption notices), for a while."""
        pending = [outbox for outbox in self.outboxes.values() if not outbox.idle.is_set()]
        if not pending:
            return
        if not self.ready.is_set():
            self.log.warning("%s: never connected; %d chat(s) miss their last messages",
                             self.name, len(pending))
            return
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await asyncio.gather(*(outbox.drain() for outbox in pending))
        except TimeoutError:
            left = [str(outbox.room) for outbox in pending if not outbox.idle.is_set()]
            self.log.warning("%s: gave up delivering to chat(s) %s after %.1f s "
                             "(flush_timeout, or the core's hook_timeout)", self.name,
                             ", ".join(left), timeout)

    async def close(self) -> None:
        for outbox in self.outboxes.values():
            await outbox.close()
