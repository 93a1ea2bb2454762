"""amqtt pieces that make the embedded broker treat TLS client certificates as mosquitto does.

Mosquitto's ``require_certificate true`` + ``use_identity_as_username true`` refuse a client
without a certificate signed by the CA and take the certificate's CN as the MQTT user name,
so the topic ACLs apply to the certificate's identity rather than to whatever user name the
client claims. amqtt 0.12 has neither setting, so:

- :class:`CertificateUserPlugin`, an auth plugin: a session without a verified client
  certificate is refused at CONNECT, and one with a certificate gets its CN as ``username``
  (a claimed user name is overwritten, a password is ignored), which topic plugins then see.
- :class:`RequireClientCertificate`, a mixin for amqtt's ``Broker``: its TLS listeners demand
  the certificate during the handshake (amqtt's own context only asks for one), so a client
  without one never gets as far as MQTT.

Either refuses a client without a certificate; both together mirror mosquitto.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

from consensus.tls import TlsFiles, peer_user, server_context


class CertificateUserPlugin(BaseAuthPlugin):
    """Authenticate by TLS client certificate; the certificate's CN becomes the user name."""

    async def authenticate(self, *, session: Session) -> bool | None:
        user = peer_user(session.ssl_object)
        if user is None:
            # Not over TLS, or no certificate presented: mosquitto would refuse it too.
            self.context.logger.warning("refusing client %r from %s: no TLS client "
                                        "certificate", session.client_id,
                                        session.remote_address)
            return False
        session.username = user
        session.password = None  # the certificate is the credential; never keep a secret
        return True

    @dataclass
    class Config:
        """No options: the CA that vouches for certificates is the listener's ``cafile``."""


class RequireClientCertificate:
    """Mix into amqtt's ``Broker`` (``class B(RequireClientCertificate, Broker)``) so that
    its TLS listeners require a client certificate signed by the listener's ``cafile``.

    This replaces amqtt's private ``Broker._create_ssl_context`` (0.12), which sets
    ``CERT_OPTIONAL``; if a later amqtt renames it, :class:`CertificateUserPlugin` still
    refuses certificate-less clients, only after the handshake instead of during it.
    """

    @staticmethod
    def _create_ssl_context(listener: Any) -> ssl.SSLContext:
        files = TlsFiles(Path(listener["cafile"]), Path(listener["certfile"]),
                         Path(listener["keyfile"]))
        return server_context(files, require_certificate=True)
