"""Small wording helpers shared by the core's replies and the frontends."""

from __future__ import annotations

from cadenza.events import StreamEvent


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 10 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes} min" + (f" {rest} s" if rest else "")
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h" + (f" {rest // 60} min" if rest // 60 else "")


def first_line(text: str, limit: int = 80) -> str:
    """The first line of ``text``, cut to ``limit`` characters: how prompts are quoted."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def footer(event: StreamEvent) -> str:
    """`` · 12 s · $0.05``: duration and cost of a finished turn, when known."""
    parts = []
    elapsed = event.data.get("elapsed")
    if isinstance(elapsed, int | float):
        parts.append(duration(elapsed) if elapsed >= 1 else f"{elapsed:.1f} s")
    cost = event.cost_usd
    if cost:
        parts.append(f"${cost:.4f}".rstrip("0").rstrip("."))
    return "".join(f" · {part}" for part in parts)
