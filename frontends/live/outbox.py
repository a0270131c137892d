"""One room's deliveries: make the room show what its views want, in order, within the
room's rate limits, through whatever the platform answers.

Each round picks the view whose unshown change is oldest, waits for the room's next slot,
renders that view *then* (so everything that arrived meanwhile goes out in one call) and makes
one call: send the next message or edit one that differs. Failures decide what happens next
(see ``transport``): after a 429 the room waits as told, after a network error or 5xx it
backs off, and either way the next attempt carries the newest content. A view is dropped once
it is finished and shown, so the final text of a turn is retried until it is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cadenza.frontends.live.ledger import Ledger, LiveMessage
from cadenza.frontends.live.pacing import Pacing
from cadenza.frontends.live.retry import Backoff, RetryPolicy
from cadenza.frontends.live.transport import (
    BadFormat,
    ChatUnavailable,
    Gone,
    Migrated,
    NoThread,
    Outgoing,
    Rejected,
    Retry,
    Transport,
)
from cadenza.frontends.live.views import DocumentView, View

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Clock

NOT_SENT = 0  # a part to (re)send
LOST = -1  # a part the platform refused for good: not retried
TYPING_MARGIN = 0.5  # seconds before "typing" runs out that it is renewed
TYPING_RETRY = 0.5  # seconds to wait while messages are queued for the shared rate


@dataclass(eq=False)
class Tracked:
    view: View
    thread: int | None
    ids: list[int] = field(default_factory=list)  # message id of each part
    shown: list[Outgoing | None] = field(default_factory=list)
    pending_since: float | None = None  # when the oldest change not yet shown happened
    plain: bool = False  # the platform refused this view's markup once: plain text from now on
    buttons: list[tuple[int, int]] = field(default_factory=list)  # sent with buttons
    live: dict[int, str] = field(default_factory=dict)  # live message id → text on record


@dataclass(frozen=True, slots=True)
class Job:
    tracked: Tracked
    index: int
    out: Outgoing

    @property
    def send(self) -> bool:
        ids = self.tracked.ids
        return self.index >= len(ids) or ids[self.index] == NOT_SENT


class Outbox:
    def __init__(self, room: int, transport: Transport, pacing: Pacing, clock: Clock,
                 log: logging.Logger, ready: asyncio.Event, retry: RetryPolicy,
                 ledger: Ledger | None = None) -> None:
        self.room = room
        self.transport = transport
        self.name = transport.name
        self.ledger = ledger
        self.pacing = pacing
        self.pace = pacing.for_room(transport.is_group(room))
        self.clock = clock
        self.log = log
        self.ready = ready
        self.backoff = Backoff(retry)
        self.items: list[Tracked] = []
        self.idle = asyncio.Event()
        self.idle.set()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._typing: asyncio.Task[None] | None = None
        self.last_call = float("-inf")  # when the last send or edit went out

    # --- the views ------------------------------------------------------------------

    def add(self, view: View, thread: int | None = None) -> None:
        self.items.append(Tracked(view, thread))
        self.touch(view)

    def touch(self, view: View) -> None:
        """The view changed: show it as soon as the limits allow."""
        for tracked in self.items:
            if tracked.view is view:
                if tracked.pending_since is None:
                    tracked.pending_since = self.clock.monotonic()
                break
        self.idle.clear()
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._run())
        if view.running and (self._typing is None or self._typing.done()):
            self._typing = asyncio.ensure_future(self._keep_typing())

    async def drain(self) -> None:
        await self.idle.wait()

    def disposable(self, now: float) -> bool:
        """Nothing to show, nothing running, and the room's pace fully recovered: forgetting
        this outbox loses nothing (a new one for the room starts the same)."""
        return (not self.items and self.idle.is_set() and self.pace.recovered(now)
                and (self._typing is None or self._typing.done()))

    def dispose(self) -> None:
        """Stop the worker of a disposable outbox (it waits for work that will not come)."""
        for task in (self._worker, self._typing):
            if task is not None:
                task.cancel()

    async def close(self) -> None:
        for task in (self._worker, self._typing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # --- the worker -----------------------------------------------------------------

    async def _run(self) -> None:
        await self.ready.wait()
        while True:
            job = await self._next()
            if job is None:
                self.idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            await self.pacing.slot(self.pace)
            job = await self._next()  # render what is there now, not what was there before the wait
            if job is not None:
                await self._attempt(job)

    async def _next(self) -> Job | None:
        """The most overdue thing to do; drops views that are finished and shown."""
        best: Job | None = None
        for tracked in list(self.items):
            try:
                job = self._job_for(tracked)
            except Exception:  # a rendering bug must not stop the room's other messages
                self.log.exception("%s: cannot render a message for chat %s; dropped",
                                   self.name, self.room)
                await self._forget(tracked)
                continue
            if job is None:
                tracked.pending_since = None
                if tracked.view.finished:
                    await self._forget(tracked)
                continue
            since = tracked.pending_since if tracked.pending_since is not None else 0.0
            if best is None or since < (best.tracked.pending_since or 0.0):
                best = job
        return best

    async def _forget(self, tracked: Tracked) -> None:
        self.items.remove(tracked)
        if self.ledger is not None and tracked.buttons:
            await self.ledger.remove(tracked.buttons)

    @staticmethod
    def _job_for(tracked: Tracked) -> Job | None:
        for index, out in enumerate(tracked.view.desired()):
            if index >= len(tracked.ids) or tracked.ids[index] == NOT_SENT:
                return Job(tracked, index, out)
            if tracked.ids[index] != LOST and tracked.shown[index] != out:
                return Job(tracked, index, out)
        return None

    async def _attempt(self, job: Job) -> None:
        tracked = job.tracked
        since, tracked.pending_since = tracked.pending_since, None
        self.last_call = self.clock.monotonic()
        done = False
        try:
            await self._perform(job)
            done = True
            self.backoff.reset()
        except Retry as retry:
            if retry.flood and retry.after is not None:
                self.pacing.limited(self.pace, retry.after)
                self.log.warning("%s: chat %s: %s", self.name, self.room, retry)
            else:
                delay = max(0.0, next(self.backoff))
                self.log.warning("%s: chat %s: %s; retrying in %.1f s", self.name, self.room,
                                 retry, delay)
                await self.clock.sleep(delay)
        except Migrated as moved:
            self.log.info("%s: chat %s moved to %s", self.name, self.room, moved.room)
            self.room = moved.room
        except ChatUnavailable as gone:
            self.log.warning("%s: chat %s is unavailable (%s); dropping %d message(s)",
                             self.name, self.room, gone, len(self.items))
            for item in list(self.items):
                await self._forget(item)
        except Exception:
            delay = max(0.0, next(self.backoff))
            self.log.exception("%s: unexpected error in chat %s; retrying in %.1f s",
                               self.name, self.room, delay)
            await self.clock.sleep(delay)
        finally:
            if since is not None and (not done or self._job_for(tracked) is not None):
                pending = tracked.pending_since
                tracked.pending_since = since if pending is None else min(since, pending)

    async def _perform(self, job: Job) -> None:
        tracked, index, out = job.tracked, job.index, job.out
        while len(tracked.ids) <= index:
            tracked.ids.append(NOT_SENT)
            tracked.shown.append(None)
        if job.send:
            tracked.ids[index] = message_id = await self._send(tracked, out)
            if out.buttons and message_id != LOST and self.ledger is not None:
                tracked.buttons.append((self.room, message_id))
                await self.ledger.add(self.room, message_id)
                await self._remember(tracked, message_id, out)
        else:
            message_id = tracked.ids[index]
            await self._remember(tracked, message_id, out)  # before the edit: a crash may follow
            try:
                await self._edit(tracked, message_id, out)
                sealed = out.live is None and tracked.live.pop(message_id, None) is not None
                if sealed and self.ledger is not None:  # the answer goes on below it
                    await self.ledger.forget_live(self.room, message_id)
            except (Gone, Rejected) as exc:
                # deleted by someone, too old to edit, or refused: say it in a new message
                self.log.info("%s: chat %s: cannot edit message %s (%s); sending anew",
                              self.name, self.room, tracked.ids[index], exc)
                tracked.ids[index], tracked.shown[index] = NOT_SENT, None
                return
        tracked.shown[index] = out

    async def _remember(self, tracked: Tracked, message_id: int, out: Outgoing) -> None:
        """Put a live message's text on record when it changed (see ``ledger``)."""
        if out.live is None or self.ledger is None or tracked.live.get(message_id) == (
                out.live[2]):
            return
        turn_id, markup, plain = out.live
        tracked.live[message_id] = plain
        await self.ledger.remember(LiveMessage(self.room, message_id, turn_id, markup, plain))

    async def _send(self, tracked: Tracked, out: Outgoing) -> int:
        transport = self.transport
        send = transport.send if out.document is None else transport.send_document
        try:
            try:
                return await send(self.room, tracked.thread, out, tracked.plain)
            except BadFormat as exc:
                self.log.warning("%s: chat %s: formatting refused (%s); sending plain text",
                                 self.name, self.room, exc)
                tracked.plain = True
                return await send(self.room, tracked.thread, out, True)
        except NoThread:
            tracked.thread = None  # the thread is gone: the room itself still works
            raise Retry("the forum topic is gone; sending to the chat", 0.0) from None
        except Rejected as exc:
            if out.document is not None and isinstance(tracked.view, DocumentView):
                self.log.warning("%s: chat %s: could not send %s (%s); saying so instead",
                                 self.name, self.room, out.document[0], exc)
                tracked.view.fail(str(exc))  # it shows a text message now: sent next round
                return NOT_SENT
            self.log.error("%s: chat %s refused a message for good (%s): %.200r",
                           self.name, self.room, exc, out.plain)
            return LOST

    async def _edit(self, tracked: Tracked, message_id: int, out: Outgoing) -> None:
        try:
            await self.transport.edit(self.room, message_id, out, tracked.plain)
        except BadFormat as exc:
            self.log.warning("%s: chat %s: formatting refused (%s); showing plain text",
                             self.name, self.room, exc)
            tracked.plain = True
            await self.transport.edit(self.room, message_id, out, True)

    # --- typing ---------------------------------------------------------------------

    async def _keep_typing(self) -> None:
        """"typing…" in each thread of the room where a turn runs while its live message is
        quiet (the agent thinks or runs tools): while text streams in, the edits show that it
        works. Lowest priority: skipped while messages wait for the shared rate."""
        await self.ready.wait()
        quiet_after = 2 * self.pacing.edit_interval
        every = max(self.transport.limits.typing_lasts - TYPING_MARGIN, TYPING_RETRY)
        typed = float("-inf")
        while threads := {item.thread for item in self.items if item.view.running}:
            now = self.clock.monotonic()
            due = max(self.last_call + quiet_after, typed + every)
            if now < due:
                await self.clock.sleep(due - now)
            elif self.pace.blocked_until > now or not self.pacing.idle():
                await self.clock.sleep(TYPING_RETRY)
            else:
                typed = now
                for thread in threads:
                    try:
                        await self.transport.typing(self.room, thread)
                    except Exception as exc:  # best effort: the live message shows progress
                        self.log.debug("%s: typing in chat %s: %s", self.name, self.room, exc)
