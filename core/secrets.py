"""Secrets Cadenza holds (bot tokens) never appear in what it prints or stores.

A frontend calls ``register_secret`` as soon as it reads a token; from then on ``redact``
replaces it in any text, and the filter installed on every logging handler replaces it in
every log record — messages, arguments and tracebacks alike (aiohttp puts the token in the
URLs of its errors).
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
_MIN_LENGTH = 8  # shorter values are too likely to be ordinary words
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Redact ``value`` from everything printed, logged or stored from now on."""
    global _pattern
    value = value.strip()
    if len(value) < _MIN_LENGTH or value in _secrets:
        return
    _secrets.add(value)
    # longest first, so a secret containing another is replaced whole
    alternatives = sorted(_secrets, key=len, reverse=True)
    _pattern = re.compile("|".join(re.escape(secret) for secret in alternatives))


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``[redacted]``."""
    if _pattern is None or not text:
        return text
    return _pattern.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """Renders a record's message and traceback once, redacted, so no handler sees a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = redact(message), None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Put the redacting filter on every handler of ``logger`` (the root logger by default).

    Filters on handlers, not loggers: a logger's own filters do not see records propagated
    from its children, a handler's see them all.
    """
    for handler in (logger or logging.getLogger()).handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
