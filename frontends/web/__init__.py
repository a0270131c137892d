"""The operator web page: every chat's running turns live, the journal's runs, named sessions,
plugin health, and a chat of its own (``web:<user>``). Served by aiohttp on 127.0.0.1."""

from cadenza.frontends.web.plugin import WebFrontend

__all__ = ["WebFrontend"]
