"""The embedded broker's topic ACL: amqtt's per-user lists plus ``%c`` / ``%u``.

amqtt's TopicAccessControlListPlugin matches per-user topic lists but knows neither a rule
for every user nor mosquitto's ``%c`` (the client id) and ``%u`` (the user name), which
the cluster ACL needs so that a client reads only its own connection's replies. This
plugin adds those two and reuses amqtt's own topic matching. Its config is what
:func:`consensus.auth.amqtt_acl` writes: ``{"publish": {user: [topic, ...]}, "subscribe":
{...}}`` where user ``*`` means every authenticated user.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amqtt.contexts import Action
from amqtt.plugins.base import BaseTopicPlugin
from amqtt.plugins.topic_checking import TopicAccessControlListPlugin
from amqtt.session import Session


class ClusterAclPlugin(BaseTopicPlugin):
    """Allow a publish or subscribe only when a rule for its user (or ``*``) matches."""

    def replace_rules(self, acl: dict[str, dict[str, list[str]]]) -> None:
        """Take a rewritten ACL (a cluster's membership changed) in place of the configured
        one; the embedded broker calls this on SIGHUP, as mosquitto rereads its acl_file."""
        self._rules = acl

    async def topic_filtering(self, *, session: Session | None = None, topic: str | None = None,
                              action: Action | None = None) -> bool | None:
        if action == Action.RECEIVE:
            return True  # what a client receives was checked when it subscribed
        if session is None or not topic or not session.username:
            return False
        side = "publish" if action == Action.PUBLISH else "subscribe"
        replaced = getattr(self, "_rules", None)
        rules = (replaced.get(side, {}) if replaced is not None
                 else self._get_config_option(side, {})) or {}
        user, conn = session.username, session.client_id or ""
        for pattern in [*rules.get(user, []), *rules.get("*", [])]:
            allowed = pattern.replace("%u", user).replace("%c", conn)
            if TopicAccessControlListPlugin.topic_ac(topic, allowed):
                return True
        return False

    @dataclass
    class Config:
        publish: dict[str, list[str]] = field(default_factory=dict)
        subscribe: dict[str, list[str]] = field(default_factory=dict)
