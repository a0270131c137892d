"""What one turn may send to the chat: ``[core] max_output`` bytes of answer text at most.

The first half streams to the chat as usual. Past it, the text goes to a file in the state
directory and only the last half is kept in memory. When the turn ends, the chat gets the
rest: whole if the answer fitted after all, else its last half after a line saying how much
was left out, and the terminal event names the file (``output_file``) so frontends can send
the whole answer as a document.
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path
from typing import IO

OUTPUTS_DIR = "outputs"


class OutputCap:
    def __init__(self, turn_id: str, limit: int, spool_dir: Path) -> None:
        self.turn_id = turn_id
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.spool_dir = spool_dir
        self.path: Path | None = None  # set once the answer outgrew the head
        self._size = 0  # bytes of answer text streamed to the chat
        self._omitted_so_far = 0  # bytes past the head
        self._head: list[str] = []  # what streamed to the chat, written to the file on overflow
        self._tail: deque[tuple[str, int]] = deque()  # (text, its size in bytes)
        self._tail_size = 0
        self._file: IO[str] | None = None

    @property
    def capped(self) -> bool:
        return self._file is not None

    def take(self, text: str) -> str:
        """The part of ``text`` to stream to the chat now: all of it within the head, what
        still fits of the chunk that crosses it, "" after. Crossing opens the spool file."""
        if self._file is None:
            size = len(text.encode("utf-8", "replace"))
            if self._size + size <= self.head_limit:
                self._size += size
                self._head.append(text)
                return text
            room = self.head_limit - self._size
            shown = text.encode("utf-8", "replace")[:room].decode("utf-8", "ignore")
            self._size += len(shown.encode("utf-8"))
            self._head.append(shown)
            self._file = self._open()
            self._file.writelines(self._head)
            self._head.clear()
            self._spool(text[len(shown):])
            return shown
        self._spool(text)
        return ""

    def _spool(self, text: str) -> None:
        assert self._file is not None
        self._file.write(text)
        size = len(text.encode("utf-8", "replace"))
        self._tail.append((text, size))
        self._tail_size += size
        while self._tail_size - self._tail[0][1] >= self.tail_limit:
            self._tail_size -= self._tail.popleft()[1]
        self._omitted_so_far += size

    def finish(self) -> tuple[str, dict[str, object]]:
        """The closing text for the chat and the data for the terminal event: ("", {}) when
        the answer fitted in the head; the rest whole when it fitted in the limit; else the
        omission line and the tail, with ``output_file`` and ``output_omitted``."""
        if self._file is None:
            return "", {}
        self._file.close()
        tail = "".join(text for text, _ in self._tail)
        if self._omitted_so_far <= self.tail_limit:
            assert self.path is not None
            self.path.unlink(missing_ok=True)  # it fitted after all: no file needed
            self.path = None
            return tail, {}
        tail = tail.encode("utf-8", "replace")[-self.tail_limit:].decode("utf-8", "ignore")
        omitted = self._omitted_so_far - len(tail.encode("utf-8"))
        text = f"\n\n… {omitted / 1000:,.0f} KB omitted (the whole answer is in a file) …\n\n"
        return text + tail, {"output_file": str(self.path), "output_omitted": omitted}

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()

    def _open(self) -> IO[str]:
        self.spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = self.spool_dir / f"{self.turn_id}.txt"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        return os.fdopen(fd, "w", encoding="utf-8", errors="replace")


def prune_outputs(spool_dir: Path, keep_seconds: float) -> int:
    """Delete whole-answer files older than ``keep_seconds``; how many went."""
    if not spool_dir.is_dir():
        return 0
    cutoff, removed = time.time() - keep_seconds, 0
    for path in spool_dir.glob("*.txt"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed
