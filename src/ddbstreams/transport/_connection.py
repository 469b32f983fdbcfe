"""How to reach AWS: the connection arguments a client passes to its transport.

Light on purpose (no aiobotocore import): :class:`~ddbstreams.client._streams.StreamsClient` builds
a :class:`ConnectionSettings` from its arguments and only imports the aiobotocore transport
(:mod:`ddbstreams.transport._aws`, which takes its defaults from here) when it needs one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_CREDENTIALS_TIMEOUT",
    "DEFAULT_MAX_POOL_CONNECTIONS",
    "DEFAULT_READ_TIMEOUT",
    "ConnectionSettings",
]

DEFAULT_CONNECT_TIMEOUT: Final = 5.0
DEFAULT_READ_TIMEOUT: Final = 30.0
DEFAULT_MAX_POOL_CONNECTIONS: Final = 64
DEFAULT_CREDENTIALS_TIMEOUT: Final = 60.0
"""Seconds credential resolution may take (a credential_process, SSO, instance metadata).
Generous, because a credential_process may ask for an MFA code on the terminal."""


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """Endpoint, region, credentials, profile and limits; ``None`` means the usual AWS
    environment, config files and profile. Durations are seconds."""

    endpoint_url: str | None = None
    region_name: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    profile_name: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    max_pool_connections: int = DEFAULT_MAX_POOL_CONNECTIONS
    credentials_timeout: float = DEFAULT_CREDENTIALS_TIMEOUT

    def given(self) -> list[str]:
        """The names of the settings that differ from their defaults, in declaration order."""
        return [
            field.name
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != field.default
        ]

    def as_arguments(self) -> dict[str, Any]:
        """The settings as keyword arguments of :class:`AwsTransport`."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
