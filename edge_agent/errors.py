"""The one error root of the edge agent.

    EdgeAgentError
    ├── ConfigError (ValueError)        the configuration file or a setting is wrong
    ├── LocalProtocolError (ValueError) we asked a codec to send something illegal
    ├── RemoteProtocolError             a device or peer sent something we cannot accept
    └── DeviceError (OSError)           a port or device could not be opened or used
        └── DeviceTimeout (TimeoutError)

Codecs never raise on garbage from a device: they turn it into error events. These exceptions
are for the shell (drivers, app) and for misuse by our own code.
"""

from __future__ import annotations


class EdgeAgentError(Exception):
    """Root of every error raised by the edge agent."""


class ConfigError(EdgeAgentError, ValueError):
    """A configuration value is missing or invalid; the message names it."""


class LocalProtocolError(EdgeAgentError, ValueError):
    """We tried to encode or send something the protocol does not allow."""


class RemoteProtocolError(EdgeAgentError):
    """The other end sent bytes or a message that violate the protocol."""


class DeviceError(EdgeAgentError, OSError):
    """A serial port, camera or other device failed."""


class DeviceTimeout(DeviceError, TimeoutError):
    """A device did not answer in time."""
