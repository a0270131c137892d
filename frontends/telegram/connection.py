"""The live link to Telegram: the aiogram client, its polling task and the chats' outboxes.

Built by the plugin in ``on_start`` only (aiogram takes seconds to import, and
``cadenza plugins list`` / ``doctor`` build the plugin too). ``start`` connects in the
background, with backoff while the API is unreachable, then registers the commands and polls.
``close`` stops polling, confirms the handled updates, delivers what is still owed for up to
``flush_timeout`` seconds and closes the HTTP session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiogram.utils.backoff import Backoff
from cadenza.api import Bot
from cadenza.frontends.telegram.auth import Access, Refusals
from cadenza.frontends.telegram.client import (
    AIOGRAM_LOGGERS,
    Redact,
    backoff_config,
    bot_commands,
    connect,
    make_bot,
)
from cadenza.frontends.telegram.egress import (
    CLOUD_API,
    MAX_UPLOAD,
    Api,
    BadFormat,
    Retry,
    SendError,
)
from cadenza.frontends.telegram.inbound import Inbound, dispatcher
from cadenza.frontends.telegram.ledger import Ledger, LiveMessage
from cadenza.frontends.telegram.outbox import Outbox
from cadenza.frontends.telegram.pacing import Pacing
from cadenza.frontends.telegram.polling import Poller
from cadenza.frontends.telegram.settings import TelegramSettings
from cadenza.frontends.telegram.views import interrupted

if TYPE_CHECKING:  # internal types; plugins use cadenza.api at run time
    from cadenza.api import Clock, Recovery, Store

COMMAND_ATTEMPTS = 5
CLEAR_ATTEMPTS = 3
CONFIRM_TIMEOUT = 2.0  # seconds for telling Telegram which updates were handled
CLOSE_MARGIN = 0.5  # of the core's hook time limit, kept for closing the session
RECOVERY_WAIT = 60.0  # seconds to wait for the journal's recoveries before the clean-up
PRUNE_AT = 256  # outboxes kept before idle ones are looked for


class Connection:
    def __init__(self, settings: TelegramSettings, clock: Clock, log: logging.Logger,
                 store: Store, access: Access, refusals: Refusals,
                 switched_off: Callable[[], bool] = lambda: False) -> None:
        self.settings = settings
        self.access = access
        self.refusals = refusals
        self.switched_off = switched_off  # the core switched this plugin off: take nothing
        self.clock = clock
        self.log = log
        Redact(settings.token).install(
            [log, *(logging.getLogger(name) for name in AIOGRAM_LOGGERS)])
        self.client = make_bot(settings)
        self.api = Api(self.client, MAX_UPLOAD if settings.api_base == CLOUD_API else None)
        self.pacing = Pacing(clock, edit_interval=settings.edit_interval,
                             group_per_minute=settings.group_messages_per_minute,
                             per_second=settings.messages_per_second)
        self.ready = asyncio.Event()  # connected: outboxes may send
        self.ledger = Ledger(store, log)
        self.left_over: list[tuple[int, int]] = []  # buttons a crashed run could not remove
        self.live_left_over: list[LiveMessage] = []  # and its unfinished live messages
        self.recoveries: dict[str, Recovery] = {}  # turn id → how the journal recovers it
        self.recovered = asyncio.Event()  # every recovery was reported (on_ready)
        self.outboxes: dict[int, Outbox] = {}
        self._prune_at = PRUNE_AT
        self.inbound: Inbound | None = None
        self.poller: Poller | None = None
        self._task: asyncio.Task[None] | None = None
        self._chores: list[asyncio.Task[None]] = []

    def start(self, core: Bot) -> None:
        self._task = asyncio.ensure_future(self._run(core))

    def outbox(self, chat_id: int) -> Outbox:
        outbox = self.outboxes.get(chat_id)
        if outbox is None:
            if len(self.outboxes) >= self._prune_at:
                self._prune()
            outbox = self.outboxes[chat_id] = Outbox(
                chat_id, self.api, self.pacing, self.clock, self.log, self.ready,
                backoff_config(self.settings), self.ledger)
        return outbox

    def _prune(self) -> None:
        """Forget the outboxes of chats with nothing going on, so that memory follows the
        chats active now, not every chat ever seen. Amortised: the next sweep waits until
        the number of outboxes has doubled."""
        now = self.clock.monotonic()
        for chat_id, outbox in list(self.outboxes.items()):
            if outbox.disposable(now):
                del self.outboxes[chat_id]
                outbox.dispose()
        self._prune_at = max(PRUNE_AT, 2 * len(self.outboxes))

    async def _run(self, core: Bot) -> None:
        # read before anything is sent: outboxes wait for ``ready``
        self.left_over = await self.ledger.left_over()
        self.live_left_over = await self.ledger.live_left_over()
        me = await connect(self.client, self.settings, self.clock, self.log)
        self.log.info("telegram: connected to %s as @%s", self.settings.api_base, me.username)
        self.inbound = Inbound(core, self.client, me, self.access, self.refusals, self.clock,
                               self.log)
        self.ready.set()
        self._chores = [asyncio.ensure_future(self._register_commands(core)),
                        asyncio.ensure_future(self._clear_left_over())]

        def accepting() -> bool:
            return core.accepting and not self.switched_off()

        self.poller = Poller(self.client, dispatcher(), self.settings, self.clock, self.log,
                             accepting=accepting, inbound=self.inbound)
        while accepting():
            try:
                await self.poller.run()
            except Exception:  # the loop handles API errors itself: this would be a bug
                self.log.exception("telegram: polling failed; starting it again")
                await self.clock.sleep(self.settings.backoff_max)
        if core.accepting:
            self.log.error("telegram: the plugin was switched off after failing too often: no "
                           "more messages are taken from Telegram until Cadenza restarts (they "
                           "wait there)")

    async def _register_commands(self, core: Bot) -> None:
        commands = bot_commands((name, text) for name, text, _ in core.command_list())
        backoff = Backoff(backoff_config(self.settings))
        for attempt in range(1, COMMAND_ATTEMPTS + 1):
            try:
                await self.client.set_my_commands(commands)
                return
            except Exception as exc:
                if attempt == COMMAND_ATTEMPTS:
                    self.log.warning("telegram: could not register the bot's commands: %s", exc)
                    return
                await self.clock.sleep(max(0.0, next(backoff)))

    async def _clear_left_over(self) -> None:
        """Finish what a crashed run left behind (see ``ledger``): each live message is
        edited to say that its turn was interrupted, and whether it resumes (known once the
        journal has reported its recoveries); other messages lose their buttons."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RECOVERY_WAIT):
                await self.recovered.wait()
        live = {(item.chat_id, item.message_id): item for item in self.live_left_over}
        for chat_id, message_id in dict.fromkeys([*live, *self.left_over]):
            item = live.get((chat_id, message_id))
            if item is not None:
                out = interrupted(item.html, item.plain, self.recoveries.get(item.turn_id))
                await self._fix(chat_id, message_id, lambda c, m, plain, out=out:
                                self.api.edit(c, m, out, plain))
            else:
                await self._fix(chat_id, message_id, lambda c, m, plain:
                                self.api.clear_buttons(c, m))
            await self.ledger.remove([(chat_id, message_id)])
        self.recoveries.clear()
        if self.left_over or live:
            self.log.info("telegram: finished %d message(s) left by the previous run",
                          len(set(self.left_over) | set(live)))

    async def _fix(self, chat_id: int, message_id: int,
                   call: Callable[[int, int, bool], Awaitable[None]]) -> None:
        """One clean-up call, paced and retried a few times; a failure is only logged."""
        outbox = self.outbox(chat_id)
        plain = False
        for _ in range(CLEAR_ATTEMPTS):
            await self.pacing.slot(outbox.pace)
            try:
                await call(chat_id, message_id, plain)
            except Retry as retry:
                if retry.flood and retry.after is not None:
                    self.pacing.limited(outbox.pace, retry.after)
                continue
            except BadFormat:
                plain = True
                continue
            except SendError as exc:
                self.log.info("telegram: a message left in chat %s: %s", chat_id, exc)
            return

    async def close(self, budget: float) -> None:
        """Stop, within ``budget`` seconds (the core's limit for the on_shutdown hook)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(budget - CLOSE_MARGIN, 0.1)
        for task in [self._task, *self._chores]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.poller is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(CONFIRM_TIMEOUT, deadline - loop.time())):
                    await self.poller.confirm()
        await self._flush(min(self.settings.flush_timeout, deadline - loop.time()))
        if self.inbound is not None:
            await self.inbound.lanes.close()
        for outbox in self.outboxes.values():
            await outbox.close()
        await self.client.session.close()

    async def _flush(self, timeout: float) -> None:
        """Deliver what is still owed (final texts, interruption notices), for a while."""
        pending = [outbox for outbox in self.outboxes.values() if not outbox.idle.is_set()]
        if not pending:
            return
        if not self.ready.is_set():
            self.log.warning("telegram: never connected; %d chat(s) miss their last messages",
                             len(pending))
            return
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await asyncio.gather(*(outbox.drain() for outbox in pending))
        except TimeoutError:
            left = [str(outbox.chat_id) for outbox in pending if not outbox.idle.is_set()]
            self.log.warning("telegram: gave up delivering to chat(s) %s after %.1f s "
                             "(flush_timeout, or the core's hook_timeout)", ", ".join(left),
                             timeout)
