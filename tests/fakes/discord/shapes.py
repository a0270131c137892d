"""Discord's JSON shapes for the fake's records (a mixin of FakeDiscordServer): users,
members, roles, channels, guilds, READY, messages and interactions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .model import (
    EPHEMERAL,
    GUILD_MEMBERS,
    JSON,
    MESSAGE_CONTENT,
    Attachment,
    Channel,
    Guild,
    InteractionRecord,
    Member,
    Role,
    StoredMessage,
    iso,
)

if TYPE_CHECKING:
    from .gateway import GatewaySession
    from .server import FakeDiscordServer


class JsonShapes:
    def _user_json(self: FakeDiscordServer, user_id: int) -> JSON:
        user = self.users[user_id]
        body: JSON = {
            "id": str(user.id),
            "username": user.username,
            "discriminator": "0",
            "global_name": user.global_name,
            "avatar": None,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
        }
        if user.bot:
            body["bot"] = True
        return body

    def _me_json(self: FakeDiscordServer) -> JSON:
        return {**self._user_json(self.bot_id), "verified": True, "mfa_enabled": False,
                "email": None, "locale": "en-US", "premium_type": 0, "bio": ""}

    @staticmethod
    def _role_json(role: Role) -> JSON:
        return {
            "id": str(role.id), "name": role.name, "color": 0, "colors": {"primary_color": 0},
            "hoist": False, "icon": None, "unicode_emoji": None, "position": role.position,
            "permissions": str(role.permissions), "managed": role.managed,
            "mentionable": role.mentionable, "flags": 0,
        }

    def _member_json(self: FakeDiscordServer, guild: Guild, member: Member, *,
                     with_user: bool = True) -> JSON:
        body: JSON = {
            "roles": [str(r) for r in member.roles],
            "nick": member.nick,
            "avatar": None,
            "banner": None,
            "joined_at": iso(member.joined_at),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            body["user"] = self._user_json(member.user_id)
        return body

    def _channel_json(self: FakeDiscordServer, channel: Channel) -> JSON:
        last = next((i for i in reversed(channel.message_ids)
                     if not self._messages[i].deleted), None)
        body: JSON = {"id": str(channel.id), "type": channel.type, "flags": 0,
                      "last_message_id": None if last is None else str(last)}
        if channel.is_dm:
            body["recipients"] = [self._user_json(channel.recipient_id or 0)]
            return body
        body.update({"guild_id": str(channel.guild_id), "name": channel.name,
                     "rate_limit_per_user": 0})
        if channel.is_thread:
            visible = [i for i in channel.message_ids if not self._messages[i].deleted]
            body.update({
                "parent_id": str(channel.parent_id), "owner_id": str(channel.owner_id),
                "message_count": len(visible), "member_count": 1,
                "total_message_sent": len(channel.message_ids),
                "thread_metadata": {
                    "archived": channel.archived, "locked": channel.locked,
                    "auto_archive_duration": channel.auto_archive_duration,
                    "archive_timestamp": iso(channel.created_at),
                    "create_timestamp": iso(channel.created_at),
                },
            })
            return body
        body.update({
            "position": channel.position, "parent_id": None, "topic": None, "nsfw": False,
            "permission_overwrites": [
                {"id": str(o.id), "type": o.kind, "allow": str(o.allow), "deny": str(o.deny)}
                for o in channel.overwrites
            ],
        })
        return body

    def _guild_json(self: FakeDiscordServer, guild: Guild) -> JSON:
        return {
            "id": str(guild.id), "name": guild.name, "icon": None, "splash": None,
            "discovery_splash": None, "banner": None, "description": None,
            "owner_id": str(guild.owner_id), "afk_channel_id": None, "afk_timeout": 300,
            "verification_level": 0, "default_message_notifications": 1,
            "explicit_content_filter": 0, "mfa_level": 0, "nsfw_level": 0, "premium_tier": 0,
            "premium_subscription_count": 0, "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US", "features": [], "emojis": [], "stickers": [],
            "roles": [self._role_json(r) for r in guild.roles.values()],
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None,
            "public_updates_channel_id": None, "safety_alerts_channel_id": None,
            "vanity_url_code": None, "application_id": None, "max_members": 500000,
        }

    def _guild_create(self: FakeDiscordServer, guild: Guild, session: GatewaySession) -> JSON:
        members = (guild.members.values() if session.intents & GUILD_MEMBERS
                   else [guild.members[self.bot_id]])
        channels = [self.channels[i] for i in guild.channel_ids]
        return {
            **self._guild_json(guild),
            "joined_at": iso(guild.joined_at), "large": False, "unavailable": False,
            "member_count": len(guild.members),
            "members": [self._member_json(guild, m) for m in members],
            "channels": [self._channel_json(c) for c in channels if not c.is_thread],
            "threads": [self._channel_json(c) for c in channels if c.is_thread and not c.archived],
            "voice_states": [], "presences": [], "stage_instances": [],
            "guild_scheduled_events": [], "soundboard_sounds": [],
        }

    def _guild_create_payloads(self: FakeDiscordServer, session: GatewaySession) -> list[JSON]:
        return [self._guild_create(g, session) for g in self.guilds.values()]

    def _ready_payload(self: FakeDiscordServer, session: GatewaySession, shard: Any) -> JSON:
        body: JSON = {
            "v": 10,
            "user": self._me_json(),
            "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": str(self.application_id), "flags": self._application_flags()},
            "private_channels": [], "relationships": [], "presences": [],
            "guild_join_requests": [], "geo_ordered_rtc_regions": [], "user_settings": {},
            "auth": {}, "_trace": ["fake-discord-gateway"],
        }
        if shard is not None:
            body["shard"] = shard
        return body

    def _application_flags(self: FakeDiscordServer) -> int:
        flags = 0
        if self.privileged_intents & GUILD_MEMBERS:
            flags |= 1 << 15  # GATEWAY_GUILD_MEMBERS_LIMITED
        if self.privileged_intents & MESSAGE_CONTENT:
            flags |= 1 << 19  # GATEWAY_MESSAGE_CONTENT_LIMITED
        return flags

    def _content_visible(self: FakeDiscordServer, message: StoredMessage, intents: int) -> bool:
        return (message.from_bot or message.guild_id is None or bool(intents & MESSAGE_CONTENT)
                or self.bot_id in message.pings.users)

    def _message_json(self: FakeDiscordServer, message: StoredMessage, *, gateway: bool = False,
                      intents: int | None = None, nested: bool = False) -> JSON:
        if intents is None:
            intents = self.privileged_intents
        guild = self.guilds.get(message.guild_id or 0)
        visible = self._content_visible(message, intents)
        body: JSON = {
            "id": str(message.id),
            "channel_id": str(message.channel_id),
            "author": self._user_json(message.author_id),
            "content": message.content if visible else "",
            "timestamp": iso(message.created_at),
            "edited_timestamp": iso(message.edited_at),
            "tts": message.tts,
            "mention_everyone": message.pings.everyone,
            "mentions": [self._mention_json(u, guild, gateway) for u in sorted(message.pings.users)
                         if u in self.users],
            "mention_roles": [str(r) for r in sorted(message.pings.roles)],
            "attachments": [self._attachment_json(a, message) for a in message.attachments]
            if visible else [],
            "embeds": message.embeds if visible else [],
            "components": message.components if visible else [],
            "pinned": False,
            "type": message.type,
            "flags": message.flags,
        }
        if message.nonce is not None:
            body["nonce"] = message.nonce
        if message.webhook_id is not None:
            body["webhook_id"] = str(message.webhook_id)
            body["application_id"] = str(self.application_id)
        if message.interaction_metadata is not None:
            body["interaction_metadata"] = message.interaction_metadata
        if message.reference_id is not None:
            body["message_reference"] = {
                "type": 0, "message_id": str(message.reference_id),
                "channel_id": str(message.channel_id),
                **({"guild_id": str(message.guild_id)} if message.guild_id else {}),
            }
            if not nested:
                target = self._messages.get(message.reference_id)
                body["referenced_message"] = (
                    None if target is None or target.deleted
                    else self._message_json(target, gateway=gateway, intents=intents, nested=True)
                )
        if message.thread_id is not None and message.thread_id in self.channels:
            body["thread"] = self._channel_json(self.channels[message.thread_id])
        if gateway and guild is not None:
            body["guild_id"] = str(guild.id)
            member = guild.members.get(message.author_id)
            if member is not None:
                body["member"] = self._member_json(guild, member, with_user=False)
        body.update(message.fields)
        return body

    def _mention_json(self: FakeDiscordServer, user_id: int, guild: Guild | None,
                      gateway: bool) -> JSON:
        body = self._user_json(user_id)
        member = guild.members.get(user_id) if guild else None
        if gateway and guild is not None and member is not None:
            body["member"] = self._member_json(guild, member, with_user=False)
        return body

    @staticmethod
    def _attachment_json(attachment: Attachment, message: StoredMessage) -> JSON:
        body: JSON = {
            "id": str(attachment.id), "filename": attachment.filename, "size": attachment.size,
            "url": attachment.url, "proxy_url": attachment.url,
            "content_type": attachment.content_type,
        }
        if attachment.description is not None:
            body["description"] = attachment.description
        if message.ephemeral:
            body["ephemeral"] = True
        return body

    def _interaction_json(self: FakeDiscordServer, record: InteractionRecord) -> JSON:
        channel = self.channels[record.channel_id]
        body: JSON = {
            "id": str(record.id),
            "application_id": str(self.application_id),
            "type": record.type,
            "data": record.data,
            "channel_id": str(channel.id),
            "channel": self._channel_json(channel),
            "token": record.token,
            "version": 1,
            "app_permissions": str(self.permissions(self.bot_id, channel.id)),
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": self.max_upload_bytes,
            "context": 1 if channel.is_dm else 0,
        }
        guild = self.guilds.get(channel.guild_id or 0)
        if guild is not None:
            member = guild.members[record.user_id]
            body.update({
                "guild_id": str(guild.id),
                "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
                "guild_locale": "en-US",
                "member": {**self._member_json(guild, member),
                           "permissions": str(self.permissions(record.user_id, channel.id))},
                "authorizing_integration_owners": {"0": str(guild.id)},
            })
        else:
            body["user"] = self._user_json(record.user_id)
            body["authorizing_integration_owners"] = {"0": "0"}
        if record.message_id is not None:
            body["message"] = self._message_json(self._messages[record.message_id])
        return body

    @staticmethod
    def _visible_in_history(message: StoredMessage) -> bool:
        return not message.deleted and not message.flags & EPHEMERAL

