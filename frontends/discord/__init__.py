"""The Discord frontend: discord.py 2 over the gateway, one live message per turn.

What a chat shows and how it gets there is the shared live-message engine's
(``cadenza.frontends.live``); this package is what is Discord's. Modules, one job each:
``plugin`` (the hooks; imports no discord.py), ``settings`` (the ``[discord]`` table),
``access`` (who may use the bot, refusals), ``markup`` (Discord Markdown and the style for the
engine's views), ``egress`` (the engine's transport: REST calls, what their failures mean,
Discord's limits), ``connection`` (the discord.py client: connecting, ingress, buttons, slash
commands, catch-up after a restart), ``doctor`` (``cadenza doctor``: the login, the intent, the
bot's permissions where it is configured to talk), ``threads`` (a named session's thread).
"""

from cadenza.frontends.discord.plugin import DiscordFrontend

__all__ = ["DiscordFrontend"]
