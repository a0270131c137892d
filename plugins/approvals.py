"""Tool approvals in chat: the agent asks, the chat answers, nothing runs unapproved.

With ``[approvals] mode = "chat"`` every turn's agent is started to ask the host before a tool
its permissions do not allow (``turn_options``: Claude with ``--permission-prompt-tool stdio``
and ``--setting-sources user``; ``[approvals] allow`` and the conversation's remembered rules
as its allowed tools). Each request (an ``approval`` event) is answered, one at a time and in
order per turn, by the first of:

1. a policy plugin's ``decide_approval(request)`` (an exception there means: ask the chat);
2. a rule the chat allowed for this conversation (``/approve KEY conversation``);
3. the chat: a question with buttons (``/approve KEY``, ``/approve KEY conversation``,
   ``/deny KEY [reason]``), denied after ``timeout`` seconds without an answer.

While the chat is asked the turn waits for the user (``RunningTurn.waiting_for_user``): the
timeout controller pauses. Conversation rules are kept per chat and session across restarts,
and forgotten when the conversation starts afresh (``/new``, a session ended). An open
request is recorded; after a restart it is never answered by itself: the resumed agent asks
again, and so is the chat.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from cadenza import api
from cadenza.api import (
    FOREGROUND,
    ApprovalRequest,
    Bot,
    ChatMessage,
    ChatRef,
    PluginContext,
    RunningTurn,
    StreamEvent,
    Turn,
    duration,
    hookimpl,
)
from cadenza.plugins.approvals_codex import WriteAccessOffers
from cadenza.plugins.approvals_store import (
    ASKED,
    FORGET,
    LAPSED,
    MIGRATIONS,
    OPEN,
    OPEN_BY_CHAT,
    RULES,
    SETTLED,
    rules_table,
)
from cadenza.plugins.approvals_text import question, short, summary

MODES = ("off", "chat")
ALLOW, DENY = "allow", "deny"
REMEMBER = "conversation"

@dataclass(frozen=True)
class ApprovalSettings:
    mode: str = "off"  # off: agents run as configured; chat: the chat answers their requests
    timeout: float = field(default=600, metadata={"minimum": 0.001})  # unanswered → denied
    allow: list[str] = field(default_factory=list)  # Claude rules that never ask


# where an answer came from
USER, POLICY, RULE, TIMEOUT, WITHDRAWN = "user", "policy", "rule", "timeout", "withdrawn"


@dataclass(frozen=True)
class Answer:
    allow: bool
    source: str  # USER, POLICY, RULE, TIMEOUT (no answer in time), WITHDRAWN (the turn ended)
    by: str = ""  # the user's name, when a user answered
    remember: bool = False  # allowed for the conversation
    reason: str = ""  # why it was denied: the user's words, or what happened

    def for_agent(self) -> str:
        """What the agent is told of a denial (the tool's result the model reads)."""
        if self.source == USER:
            return f"the user said: {self.reason}" if self.reason else "the user denied this"
        return f"denied: {self.reason}"


@dataclass
class Pending:
    """A request the chat was asked and has not answered."""

    request: ApprovalRequest
    answer: asyncio.Future[Answer]
    can_remember: bool


class ApprovalsPlugin:
    def __init__(self, context: PluginContext) -> None:
        self.settings = context.settings.load(ApprovalSettings)
        if self.settings.mode not in MODES:
            raise context.settings.error("mode", f"must be one of {', '.join(MODES)}, not "
                                         f"{self.settings.mode!r}")
        self.context = context
        self.store = context.store
        self.clock = context.clock
        self.log = context.log
        self.store.migrate("approvals", MIGRATIONS)
        self._remember = self.store.upsert(rules_table, {}, key=["chat", "session", "rule"],
                                           update=[])
        self.bot: Bot | None = None
        self.queues: dict[str, asyncio.Queue[StreamEvent | None]] = {}  # by turn id
        self.pending: dict[str, Pending] = {}  # by key, oldest first
        self.lapsed: list[dict[str, Any]] = []  # left open by the previous run
        self.write_access = WriteAccessOffers(context.config)  # Codex: never asks

    @property
    def on(self) -> bool:
        return self.settings.mode == "chat"

    # --- lifecycle ----------------------------------------------------------------------

    @hookimpl
    async def on_start(self, bot: Bot) -> None:
        """Requests a previous run left open are never answered: their agent is gone. They
        lapse here, before any turn of this run can ask (the journal resumes in on_ready)."""
        self.bot = bot
        self.lapsed = await self.store.fetch(OPEN)
        if self.lapsed:
            await self.store.execute(LAPSED)

    @hookimpl
    async def on_ready(self, bot: Bot) -> None:
        for row in self.lapsed:
            await bot.notify(ChatRef.from_key(row["chat"]), (
                f"Request {row['key']} lapsed: Cadenza stopped before it was answered, and "
                "nothing was allowed. If the agent still needs it, it asks again."),
                kind="approval", answered=row["key"])
        self.lapsed = []

    @hookimpl
    def register_commands(self, register: Any) -> None:
        register("approve", self.cmd_approve, usage="[KEY] [conversation]",
                 help="allow what the agent asks (the oldest request when no KEY); "
                      "'conversation': also its like until /new")
        register("deny", self.cmd_deny, usage="[KEY] [reason]",
                 help="refuse what the agent asks; the reason is passed on to it")
        if self.on:
            register("writable", self.write_access.cmd_writable, usage="KEY",
                     help="run a read-only Codex turn again with write access")

    # --- cadenza status -------------------------------------------------------------------

    @hookimpl
    def report_status(self) -> dict[str, Any]:
        """The requests waiting for an answer, by chat, oldest first: what is asked and for how
        long. Runs in the command line, where no loop runs (the store's synchronous methods);
        a request a crashed run left open shows until the next start lapses it."""
        now = self.clock.time()
        return {"open_approval_requests": [
            {"chat": row["chat"],
             "session": None if row["session"] == FOREGROUND else row["session"],
             "key": row["key"], "tool": row["tool"],
             "asked": short(row["tool"], _params(row["input"])),
             "waiting": duration(max(0.0, now - row["asked_at"]))}
            for row in self.store.fetch_sync(OPEN_BY_CHAT)]}

    # --- the agent's options --------------------------------------------------------------

    @hookimpl
    async def turn_options(self, turn: Turn) -> dict[str, Any] | None:
        if not self.on:
            return None
        conversation = {"of_chat": turn.chat.key, "of_session": turn.session}
        if turn.resume_id is None:  # a fresh conversation: what the last one allowed is gone
            await self.store.execute(FORGET, conversation)
            remembered: list[str] = []
        else:
            remembered = [row["rule"] for row in await self.store.fetch(RULES, conversation)]
        return {"approvals": "stdio",
                "allowed_tools": list(dict.fromkeys([*self.settings.allow, *remembered]))}

    # --- requests -------------------------------------------------------------------------

    @hookimpl
    def on_stream_event(self, event: StreamEvent) -> None:
        turn_id = event.turn.id
        if event.terminal and self.on and self.bot and self.write_access.wanted(event):
            self.context.spawn(self.write_access.offer(self.bot, event), "write access offer")
        if event.kind == api.APPROVAL and self.on:
            queue = self.queues.get(turn_id)
            if queue is None:
                queue = self.queues[turn_id] = asyncio.Queue()
                self.context.spawn(self._answer_in_order(queue), f"approvals {turn_id}")
            queue.put_nowait(event)
        elif event.terminal and turn_id in self.queues:
            queue = self.queues.pop(turn_id)
            while not queue.empty():  # requests not yet asked: their agent is gone
                queue.get_nowait()
            queue.put_nowait(None)
            for pending in self.pending.values():
                if pending.request.turn.id == turn_id and not pending.answer.done():
                    pending.answer.set_result(Answer(False, WITHDRAWN))

    async def _answer_in_order(self, queue: asyncio.Queue[StreamEvent | None]) -> None:
        while (event := await queue.get()) is not None:
            runner = self.bot.running(event.turn.id) if self.bot is not None else None
            if runner is None:
                continue
            try:
                await self._settle(runner, self._request(event), str(event.data["request_id"]))
            except Exception:  # fails closed: the agent is told no
                self.log.exception("approval request of turn %s failed; denied", event.turn.id)
                await runner.answer_approval(str(event.data.get("request_id")), False, {},
                                             "Cadenza failed to ask the user; denied.")

    def _request(self, event: StreamEvent) -> ApprovalRequest:
        data = event.data
        rules: list[str] = []
        for suggestion in data.get("suggestions") or ():
            if (isinstance(suggestion, dict) and suggestion.get("type") == "addRules"
                    and suggestion.get("behavior", ALLOW) == ALLOW):
                for rule in suggestion.get("rules") or ():
                    content = rule.get("ruleContent")
                    rules.append(f"{rule['toolName']}({content})" if content
                                 else str(rule["toolName"]))
        params = data.get("input")
        return ApprovalRequest(
            turn=event.turn, key=self._new_key(), tool=str(data.get("tool") or "tool"),
            input=params if isinstance(params, dict) else {},
            description=str(data.get("description") or ""), rules=tuple(rules),
            blocked_path=data.get("blocked_path"))

    def _new_key(self) -> str:
        while (key := secrets.token_hex(3)) in self.pending:
            pass
        return key

    async def _settle(self, runner: RunningTurn, request: ApprovalRequest,
                      request_id: str) -> None:
        answer = await self._decided(request)
        if answer is not None:
            verdict = "✅ allowed" if answer.allow else "⛔ denied"
            whose = "a policy plugin" if answer.source == POLICY else "this conversation's rule"
            runner.post(api.NOTICE, f"{verdict} by {whose}: {summary(request)}",
                        {"approval": request.key, "allow": answer.allow})
        else:
            answer = await self._ask(runner, request)
        await self._deliver(runner, request, request_id, answer)

    async def _decided(self, request: ApprovalRequest) -> Answer | None:
        """A policy plugin's or a remembered rule's answer; None: ask the chat."""
        # ``veto`` stops at the first answer and at the first failure, which is no answer
        verdict = await self.context.hooks.veto("decide_approval", request=request)
        if verdict in (ALLOW, DENY):
            return Answer(verdict == ALLOW, POLICY, reason="a policy of this bot")
        if request.rules:
            remembered = await self._rules(request.turn)
            if set(request.rules) <= remembered:
                return Answer(True, RULE)
        return None

    async def _rules(self, turn: Turn) -> set[str]:
        rows = await self.store.fetch(RULES, {"of_chat": turn.chat.key,
                                               "of_session": turn.session})
        return {row["rule"] for row in rows}

    async def _ask(self, runner: RunningTurn, request: ApprovalRequest) -> Answer:
        assert self.bot is not None
        turn, key = request.turn, request.key
        await self.store.execute(ASKED, {
            "key": key, "turn_id": turn.id, "chat": turn.chat.key, "session": turn.session,
            "tool": request.tool, "input": json.dumps(dict(request.input), ensure_ascii=False),
            "state": "open", "asked_at": self.clock.time()})
        can_remember = bool(request.rules)
        pending = Pending(request, asyncio.get_running_loop().create_future(), can_remember)
        self.pending[key] = pending
        runner.waiting_for_user(True)
        timer = asyncio.ensure_future(self.clock.sleep(self.settings.timeout))
        try:
            buttons = [("✅ Allow once", f"/approve {key}"),
                       *([("♾ Allow for this conversation", f"/approve {key} {REMEMBER}")]
                         if can_remember else []),
                       ("⛔ Deny", f"/deny {key}")]
            await self.bot.notify(turn.chat, question(request, self.settings.timeout,
                                                      can_remember),
                                  kind="approval", ask=key, buttons=buttons,
                                  turn_id=turn.id, session=turn.session)
            await asyncio.wait({pending.answer, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            self.pending.pop(key, None)
            runner.waiting_for_user(False)
        if pending.answer.done():
            return pending.answer.result()
        return Answer(False, TIMEOUT, reason=(
            f"no answer from the user within {duration(self.settings.timeout)}"))

    async def _deliver(self, runner: RunningTurn, request: ApprovalRequest, request_id: str,
                       answer: Answer) -> None:
        """Tell the agent, remember the rule, record the outcome, tell the chat."""
        delivered = answer.source != WITHDRAWN and await runner.answer_approval(
            request_id, answer.allow, request.input, "" if answer.allow else answer.for_agent())
        turn = request.turn
        if answer.remember and delivered:
            now = self.clock.time()
            for rule in request.rules:
                await self.store.execute(self._remember, {
                    "chat": turn.chat.key, "session": turn.session, "rule": rule,
                    "created_at": now})
        state = ("allowed" if answer.allow else "denied") if delivered else "withdrawn"
        if answer.source in (POLICY, RULE):
            return  # never asked: nothing recorded, nothing to settle in the chat
        await self.store.execute(SETTLED, {"of_key": request.key, "to_state": state,
                                            "at": self.clock.time(), "by": answer.by or None})
        if self.bot is not None:
            await self.bot.notify(turn.chat, _outcome(request, answer, delivered),
                                  kind="approval", answered=request.key, turn_id=turn.id)

    # --- answers from the chat ----------------------------------------------------------------

    async def cmd_approve(self, bot: Bot, message: ChatMessage, args: str) -> None:
        pending, rest = await self._addressed(bot, message, args)
        if pending is None:
            return
        remember = rest.lower() in (REMEMBER, "conv", "c")
        if rest and not remember:
            await bot.notify(message.chat, "Usage: /approve [KEY] [conversation].",
                             kind="error")
            return
        if remember and not pending.can_remember:
            await bot.notify(message.chat, f"The agent suggested no rule to remember for "
                             f"{pending.request.key}; /approve {pending.request.key} allows it "
                             "once.", kind="error")
            return
        pending.answer.set_result(Answer(True, USER, _name(message), remember=remember))

    async def cmd_deny(self, bot: Bot, message: ChatMessage, args: str) -> None:
        pending, reason = await self._addressed(bot, message, args)
        if pending is not None:
            pending.answer.set_result(Answer(False, USER, _name(message), reason=reason))

    async def _addressed(self, bot: Bot, message: ChatMessage,
                         args: str) -> tuple[Pending | None, str]:
        """The open request a command answers (its KEY, else the chat's oldest) and the rest
        of the command; None when there is none the sender may answer (the chat is told)."""
        chat = message.chat
        if not await self.context.hooks.allowed("authorize", chat=chat,
                                                user_id=message.user_id):
            await bot.notify(chat, "Only the users allowed in this chat may answer the "
                             "agent's requests.", kind="refusal")
            return None, ""
        mine = [p for p in self.pending.values()
                if p.request.turn.chat == chat and not p.answer.done()]
        word, _, rest = args.strip().partition(" ")
        chosen = next((p for p in mine if p.request.key == word.lower()), None)
        if chosen is None:
            rest = args.strip()
            if _looks_like_key(word):
                await bot.notify(chat, f"No request {word} is waiting here.", kind="error")
                return None, ""
            chosen = mine[0] if mine else None
        if chosen is None:
            await bot.notify(chat, "No request is waiting for an answer here.", kind="error")
            return None, ""
        return chosen, rest.strip()


def _name(message: ChatMessage) -> str:
    return message.user_name or message.user_id or "someone"


def _params(recorded: str) -> dict[str, Any]:
    """A request's arguments as recorded (JSON); empty when unreadable."""
    try:
        params = json.loads(recorded)
    except ValueError:
        return {}
    return params if isinstance(params, dict) else {}


def _looks_like_key(word: str) -> bool:
    return len(word) == 6 and all(c in "0123456789abcdef" for c in word.lower())


def _outcome(request: ApprovalRequest, answer: Answer, delivered: bool) -> str:
    what = summary(request)
    if not delivered:
        return f"■ {request.key} withdrawn: the turn ended before it was answered ({what})."
    if answer.allow and answer.remember:
        rules = ", ".join(request.rules)
        return f"♾ allowed for this conversation by {answer.by}: {rules}"
    if answer.allow:
        return f"✅ allowed once by {answer.by}: {what}"
    if answer.source == TIMEOUT:
        return f"⌛ denied: {answer.reason} ({what})"
    reason = f" — “{answer.reason}”" if answer.reason else ""
    return f"⛔ denied by {answer.by}{reason}: {what}"

