"""The one error root of the backend.

    BackendError
    ├── BackendSetupError (ValueError)   asked for something the backend cannot do: a command
    │                                    without the key tier it needs, an unknown store URL
    ├── BackendTimeout (TimeoutError)    the broker or the database did not answer in time
    └── StoreError                       the event store cannot be opened or used

A ``BackendError`` says what the backend could not do; its command line prints it as one line.
"""

from __future__ import annotations


class BackendError(Exception):
    """Root of every error raised by the backend."""


class BackendSetupError(BackendError, ValueError):
    """The backend was asked for something it cannot do; the message names it."""


class BackendTimeout(BackendError, TimeoutError):
    """The broker or the database did not come up or answer in time."""


class StoreError(BackendError):
    """The event store could not be opened or used."""
