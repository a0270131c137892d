"""A fake Discord (REST API v10 and gateway) for driving the real discord.py client in tests.

See ``tests/fakes/discord_api.py`` for the overview; this package holds the parts:
``model`` (records, constants, validation), ``limits`` (rate limits, faults, route keys),
``gateway``, ``rest`` (the routes), ``server`` (FakeDiscordServer) and ``pointing``
(aiming discord.py at it).
"""
