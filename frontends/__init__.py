"""Frontends: plugins that own a chat connection and render Cadenza's events in it."""
