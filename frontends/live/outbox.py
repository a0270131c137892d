"""One room's deliveries: make the room show what its views want, in order, within the
room's rate limits, through whatever the platform answers.

Each round picks the view whose unshown change is oldest, waits for the room's next slot,
renders that view *then* (so everything that arrived meanwhile goes out in one call) and makes
one call: send the next message or edit one that differs. Failures decide what happens next
(see ``transport``): after a 429 the room waits as told, after a network error or 5xx it
backs off, and either way the next attempt carries the newest content. A view is dropped once
it is finished and shown, so the final text of a turn is retried until it is delivered.

Exactly once. A send whose answer was lost (a network error or a 5xx after the request
left) may have reached the chat. It is retried with the same content and the same ``key``,
so a platform with idempotency keys (Discord's nonce) returns the first message. A platform
whose message ids count up in each room (Telegram: the transport has ``probe``) cannot
dedupe, so the outbox keeps the newest id it sent; when the next send succeeds, the ids in
between are either other people's messages, or messages of the lost sends. ``probe`` tells
them apart without changing anything (an edit to the same content: "not modified" only for
the bot's own message showing exactly that), and each one found is deleted if its message
was sent again meanwhile, or else becomes that message. Ids that fail the proof are never
touched. The room's newest id and its lost sends are on record (``ledger``), so a send cut
short by a crash is found at the next start and finished like the live messages a crash
left (``Engine.finish_left_over``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from cadenza.frontends.live.ledger import Ledger, LiveMessage, LostSend
from cadenza.frontends.live.pacing import Pacing
from cadenza.frontends.live.reachability import Reachability
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
    SendError,
    Transport,
)
from cadenza.frontends.live.views import DocumentView, View

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Clock

NOT_SENT = 0  # a part to (re)send
LOST = -1  # a part the platform refused for good: not retried
TYPING_MARGIN = 0.5  # seconds before "typing" runs out that it is renewed
TYPING_RETRY = 0.5  # seconds to wait while messages are queued for the shared rate
MAX_PROBES = 20  # ids after a lost send checked for its message
LEFT_SPAN = 5  # ids after a send a crash cut short checked at the next start


class Probing(Protocol):
    async def __call__(self, room: int, message_id: int, out: Outgoing, plain: bool, /
                       ) -> bool: ...


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
    key: str = field(default_factory=lambda: secrets.token_hex(6))  # + part: a send's key
    # part → (content, plain) of a send whose answer was lost: the retry repeats it
    pinned: dict[int, tuple[Outgoing, bool]] = field(default_factory=dict)


@dataclass(eq=False)
class Unsure:
    """A lost send waiting for the proof of whether it reached the room."""

    sent: LostSend
    tracked: Tracked | None  # None: a previous run's, found and finished by ``finish``
    index: int = 0
    finish: Callable[[int], Awaitable[None]] | None = None


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
                 ledger: Ledger | None = None, reachability: Reachability | None = None,
                 last_id: int | None = None) -> None:
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
        self.reachability = reachability or Reachability(clock)
        self.probe: Probing | None = getattr(transport, "probe", None)  # ids count up
        self.last_id = last_id  # the newest message the bot sent in the room, if known
        self.first_id: int | None = None  # the first this run sent
        self.unsure: list[Unsure] = []  # lost sends (with ``probe`` only)
        self.settle_below: int | None = None  # the id under which they are looked for
        self.orphans: list[int] = []  # messages of lost sends that were sent again

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
        self._kick()
        if view.running and (self._typing is None or self._typing.done()):
            self._typing = asyncio.ensure_future(self._keep_typing())

    def _kick(self) -> None:
        self.idle.clear()
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._run())

    def saw(self, message_id: int) -> None:
        """A person's message in the room (see ``Engine.saw``)."""
        if self.probe is not None:
            self.last_id = max(self.last_id or 0, message_id)

    def look_for(self, sends: list[Unsure]) -> None:
        """Sends a previous run made whose answers it never saw: look for their messages
        among the ``LEFT_SPAN`` ids after each (never those this run sent) and finish them."""
        sends = [send for send in sends if send.sent.after is not None]
        if not sends:
            return
        self.unsure.extend(sends)
        top = max(send.sent.after or 0 for send in sends) + 1 + LEFT_SPAN
        for bound in (self.first_id, self.settle_below):
            if bound is not None:
                top = min(top, bound)
        self.settle_below = top
        self._kick()

    async def drain(self) -> None:
        await self.idle.wait()

    def disposable(self, now: float) -> bool:
        """Nothing to show, nothing running, and the room's pace fully recovered: forgetting
        this outbox loses nothing (a new one for the room starts the same)."""
        return (not self.items and not self.unsure and not self.orphans
                and self.idle.is_set() and self.pace.recovered(now)
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
            if self.orphans or (self.unsure and self.settle_below is not None):
                await self._call(self._settle)
                continue
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
        done = await self._call(lambda: self._perform(job))
        if since is not None and (not done or self._job_for(tracked) is not None):
            pending = tracked.pending_since
            tracked.pending_since = since if pending is None else min(since, pending)

    async def _call(self, work: Callable[[], Awaitable[None]]) -> bool:
        """Run one round's calls; a failure decides what happens next (see ``transport``).
        Whether they all succeeded."""
        self.last_call = self.clock.monotonic()
        try:
            await work()
        except Retry as retry:
            if retry.flood and retry.after is not None:
                self.reachability.answered()
                self.pacing.limited(self.pace, retry.after)
                self.log.warning("%s: chat %s: %s", self.name, self.room, retry)
            else:
                self.reachability.failed()
                delay = max(0.0, next(self.backoff))
                self.log.warning("%s: chat %s: %s; retrying in %.1f s", self.name, self.room,
                                 retry, delay)
                await self.reachability.wait(delay)
            return False
        except Migrated as moved:
            self.reachability.answered()
            self.log.info("%s: chat %s moved to %s", self.name, self.room, moved.room)
            self.room, self.last_id, self.first_id = moved.room, None, None
            self.unsure.clear()
            self.orphans.clear()
            return False
        except ChatUnavailable as gone:
            self.reachability.answered()
            self.log.warning("%s: chat %s is unavailable (%s); dropping %d message(s)",
                             self.name, self.room, gone, len(self.items))
            for item in list(self.items):
                await self._forget(item)
            self.unsure.clear()
            self.orphans.clear()
            return False
        except Exception:
            delay = max(0.0, next(self.backoff))
            self.log.exception("%s: unexpected error in chat %s; retrying in %.1f s",
                               self.name, self.room, delay)
            await self.clock.sleep(delay)
            return False
        self.backoff.reset()
        self.reachability.answered()
        return True

    async def _perform(self, job: Job) -> None:
        tracked, index, out = job.tracked, job.index, job.out
        while len(tracked.ids) <= index:
            tracked.ids.append(NOT_SENT)
            tracked.shown.append(None)
        if job.send:
            message_id, out = await self._send(tracked, index, out)
            await self._shows(tracked, index, message_id, out)
            return
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

    async def _shows(self, tracked: Tracked, index: int, message_id: int,
                     out: Outgoing) -> None:
        """Part ``index`` of ``tracked`` is message ``message_id`` (or NOT_SENT / LOST),
        showing ``out``."""
        tracked.ids[index], tracked.shown[index] = message_id, out
        if message_id in (NOT_SENT, LOST):
            return
        tracked.pinned.pop(index, None)
        if out.buttons and self.ledger is not None:
            tracked.buttons.append((self.room, message_id))
            await self.ledger.add(self.room, message_id)
            await self._remember(tracked, message_id, out)

    async def _remember(self, tracked: Tracked, message_id: int, out: Outgoing) -> None:
        """Put a live message's text on record when it changed (see ``ledger``)."""
        if out.live is None or self.ledger is None or tracked.live.get(message_id) == (
                out.live[2]):
            return
        turn_id, markup, plain = out.live
        tracked.live[message_id] = plain
        await self.ledger.remember(LiveMessage(self.room, message_id, turn_id, markup, plain))

    async def _send(self, tracked: Tracked, index: int, out: Outgoing
                    ) -> tuple[int, Outgoing]:
        """Send part ``index``: its id (or NOT_SENT / LOST), and what it shows."""
        out, plain = tracked.pinned.get(index, (out, tracked.plain))
        if index in tracked.pinned and (found := await self._arrived(tracked, index)):
            return found, out
        try:
            try:
                return await self._send_once(tracked, index, out, plain), out
            except BadFormat as exc:
                self.log.warning("%s: chat %s: formatting refused (%s); sending plain text",
                                 self.name, self.room, exc)
                tracked.plain = True
                return await self._send_once(tracked, index, out, True), out
        except NoThread:
            tracked.thread = None  # the thread is gone: the room itself still works
            self.log.info("%s: chat %s: the forum topic is gone; sending to the chat",
                          self.name, self.room)
            return NOT_SENT, out
        except Rejected as exc:
            if out.document is not None and isinstance(tracked.view, DocumentView):
                self.log.warning("%s: chat %s: could not send %s (%s); saying so instead",
                                 self.name, self.room, out.document[0], exc)
                tracked.view.fail(str(exc))  # it shows a text message now: sent next round
                return NOT_SENT, out
            self.log.error("%s: chat %s refused a message for good (%s): %.200r",
                           self.name, self.room, exc, out.plain)
            return LOST, out

    async def _send_once(self, tracked: Tracked, index: int, out: Outgoing,
                         plain: bool) -> int:
        transport = self.transport
        send = transport.send if out.document is None else transport.send_document
        attempt = Unsure(LostSend(out, plain, self.last_id), tracked, index)
        if self.probe is not None:  # on record first: a crash may cut the send short
            await self._note(attempt)
        try:
            message_id = await send(self.room, tracked.thread, out, plain,
                                    f"{tracked.key}-{index}")
        except Retry as retry:
            if retry.flood:
                await self._note()
            else:  # it may have arrived: retry it as it was, and look for it
                tracked.pinned[index] = (out, plain)
                if self.probe is not None:
                    self.unsure.append(attempt)
            raise
        except SendError:
            await self._note()
            raise
        if self.first_id is None:
            self.first_id = message_id
        if self.unsure:
            self.settle_below = min(self.settle_below or message_id, message_id)
        self.last_id = max(self.last_id or message_id, message_id)
        await self._note()
        return message_id

    async def _note(self, attempt: Unsure | None = None) -> None:
        """Put the room's newest id and lost sends on record (platforms with ``probe``)."""
        if self.probe is None or self.ledger is None:
            return
        unsure = [*self.unsure, attempt] if attempt is not None else self.unsure
        await self.ledger.note_room(self.room, self.last_id, [item.sent for item in unsure])

    async def _settle(self) -> None:
        """Delete the orphans found, then look for the messages of the lost sends among the
        ids before ``settle_below``; what is not found there never arrived."""
        while self.orphans:
            await self.pacing.slot(self.pace)
            await self.transport.delete(self.room, self.orphans[0])
            self.log.info("%s: chat %s: deleted message %s, a copy left by a lost answer",
                          self.name, self.room, self.orphans.pop(0))
        if not self.unsure or self.settle_below is None or self.probe is None:
            return
        upper = self.settle_below
        afters = [item.sent.after for item in self.unsure]
        low = max(0, upper - 1 - MAX_PROBES)  # ids start at 1
        if None not in afters:
            low = max(low, min(after for after in afters if after is not None))
        # from the top: a lost send's message is mostly right below its resend, and with no
        # known lower bound (a chat's first message) the ids further down are someone else's
        known = {message_id for tracked in self.items for message_id in tracked.ids}
        for message_id in range(upper - 1, low, -1):
            if message_id in known:
                continue
            tried: set[tuple[Outgoing, bool]] = set()
            for item in list(self.unsure):
                sent = item.sent
                if ((sent.after is not None and sent.after >= message_id)
                        or (sent.out, sent.plain) in tried):
                    continue
                tried.add((sent.out, sent.plain))
                await self.pacing.slot(self.pace)
                if await self.probe(self.room, message_id, sent.out, sent.plain):
                    self.unsure.remove(item)
                    await self._found(message_id, item)
                    break
            if not self.unsure:
                break
        self.unsure.clear()
        self.settle_below = None
        await self._note()

    async def _arrived(self, tracked: Tracked, index: int) -> int | None:
        """Before a lost send is sent again: whether its message is right after the newest
        id known when it went (the usual place in a private chat), so the chat never shows
        it twice. One probe; the gap is searched in full after the next send anyway."""
        if self.probe is None:
            return None
        for item in self.unsure:
            after = item.sent.after
            if item.tracked is tracked and item.index == index and after is not None:
                if await self.probe(self.room, after + 1, item.sent.out, item.sent.plain):
                    self.unsure.remove(item)
                    self.last_id = max(self.last_id or 0, after + 1)
                    await self._note()
                    self.log.info("%s: chat %s: message %s arrived though its answer was "
                                  "lost; kept", self.name, self.room, after + 1)
                    return after + 1
                await self.pacing.slot(self.pace)  # the probe took this round's slot
                return None
        return None

    async def _found(self, message_id: int, item: Unsure) -> None:
        """``message_id`` is the message of the lost send ``item``."""
        tracked = item.tracked
        if tracked is None:
            self.log.info("%s: chat %s: message %s was sent before a crash; finishing it",
                          self.name, self.room, message_id)
            if item.finish is not None:
                await self.pacing.slot(self.pace)
                with contextlib.suppress(SendError):  # best effort, like any left-over
                    await item.finish(message_id)
            return
        index = item.index
        if index < len(tracked.ids) and tracked.ids[index] not in (NOT_SENT, LOST):
            if tracked.ids[index] != message_id:  # sent again meanwhile: a copy, deleted next
                self.orphans.append(message_id)
            return
        self.log.info("%s: chat %s: message %s arrived though its answer was lost; kept",
                      self.name, self.room, message_id)
        while len(tracked.ids) <= index:
            tracked.ids.append(NOT_SENT)
            tracked.shown.append(None)
        await self._shows(tracked, index, message_id, item.sent.out)

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
                    if self.transport.limits.typing_counts:
                        self.pacing.spent()
                    try:
                        await self.transport.typing(self.room, thread)
                    except Exception as exc:  # best effort: the live message shows progress
                        self.log.debug("%s: typing in chat %s: %s", self.name, self.room, exc)
