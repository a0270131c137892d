"""Plain-text wording shared by every frontend, so a notice reads the same everywhere."""

from __future__ import annotations

from cadenza import api
from cadenza.api import (
    Lifecycle,
    Recovery,
    StreamEvent,
    TimeoutWarning,
    duration,
    first_line,
    footer,
)

_LIFECYCLE = {
    "started": "▶️ Cadenza started",
    "restarted": "🔄 Cadenza restarted",
    "crashed": "🔄 Cadenza restarted after a crash",
    "reboot": "🔄 Cadenza restarted after a reboot of the machine",
}


def lifecycle_text(lifecycle: Lifecycle) -> str:
    parts = [_LIFECYCLE.get(lifecycle.kind, f"Cadenza started ({lifecycle.kind})")]
    if lifecycle.downtime is not None and lifecycle.kind != "started":
        parts.append(f"down {duration(lifecycle.downtime)}")
    if lifecycle.resuming:
        parts.append(f"resuming {lifecycle.resuming} interrupted task"
                     + ("s" if lifecycle.resuming != 1 else ""))
    skipped = lifecycle.interrupted - lifecycle.resuming
    if skipped > 0:
        parts.append(f"{skipped} could not be resumed")
    text = " — ".join(parts)
    return "\n".join([text, *lifecycle.notes])


def recovery_text(recovery: Recovery) -> str:
    label = f"[{recovery.turn.session}] " if recovery.turn.session else ""
    if recovery.action == "resume":
        return (f"{label}↻ resuming your interrupted task (attempt {recovery.attempt}): "
                f"{first_line(recovery.turn.prompt)}")
    why = f" ({recovery.detail})" if recovery.detail else ""
    return (f"{label}⚠️ your task was interrupted and will not be resumed{why}. "
            f"Send it again if you still want it:\n{recovery.turn.prompt}")


_REASONS = {"crashed": "Cadenza crashed", "restarted": "Cadenza restarted",
            "reboot": "the machine rebooted"}


def interrupted_text(recovery: Recovery | None) -> str:
    """The last line of a live message a previous run left behind: its turn was interrupted,
    and whether it resumes (``recovery`` None: the journal did not say)."""
    if recovery is None:
        return "⏸ interrupted: Cadenza stopped before this turn ended"
    why = _REASONS.get(recovery.reason, f"Cadenza {recovery.reason}")
    if recovery.action == "resume":
        return f"⏸ interrupted ({why}) — resuming it below (attempt {recovery.attempt})"
    detail = f": {recovery.detail}" if recovery.detail else ""
    return f"⏸ interrupted ({why}) — it will not be resumed{detail}"


def ended_text(event: StreamEvent, outcome: str) -> str:
    """A short new message when a long turn ended (edits do not notify a phone): how it
    ended, and which prompt it was."""
    label = f"[{event.turn.session}] " if event.turn.session else ""
    line = first_line(outcome, 120)
    return f"{label}{line} — {first_line(event.turn.prompt, 60)}"


def waiting_text(event: StreamEvent) -> str:
    """A short new message when a turn waits for the user's answer."""
    label = f"[{event.turn.session}] " if event.turn.session else ""
    question = f": {first_line(event.text, 200)}" if event.text.strip() else ""
    return f"{label}❓ the agent is waiting for your answer{question}"


def warning_text(warning: TimeoutWarning) -> str:
    extensions = ""
    if warning.max_extensions:
        extensions = f", {warning.extensions_used} of {warning.max_extensions} extensions used"
    return (f"⏳ about {duration(warning.seconds_left)} left (running for "
            f"{duration(warning.elapsed)}{extensions}) — the agent is still working. "
            "/extend for more time, /stop to end it.")


def outcome_text(event: StreamEvent, shown_text: str = "") -> str:
    """The last line of a turn: how it ended, how long it took, what it cost."""
    tail = footer(event)
    reason = event.text.strip()
    if reason and reason in shown_text:
        reason = ""  # the agent already said it (Claude prints its API error as text too)
    if event.kind == api.COMPLETED:
        return "✅ done" + tail
    if event.kind == api.FAILED:
        return "❌ failed" + tail + (f": {reason}" if reason else "")
    if event.kind == api.CANCELLED:
        return "⏹ stopped" + tail
    if event.kind == api.TIMED_OUT:
        return "⌛ timed out" + tail + (f"\n{reason}" if reason else "")
    if event.kind == api.INTERRUPTED:
        return "⏸ interrupted" + tail + (f": {reason}" if reason else "")
    return event.kind + tail
