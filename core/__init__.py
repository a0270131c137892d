"""Cadenza's small core: events, hooks, plugin loading, agent turns and the bot."""
