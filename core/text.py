"""Text from outside (chat messages, agent output) made safe to store and pass on."""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode — lone surrogates, which a chat API's JSON can
    carry as ``\\ud800`` — replaced by U+FFFD, so that no plugin sees text it cannot store."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text
