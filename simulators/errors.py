"""The one error root of the simulators.

    SimulatorError
    ├── SimulatorSetupError (ValueError)  asked for something the simulator does not model:
    │                                     an unknown protocol, style, fault or scenario
    ├── SimulatorTimeout (TimeoutError)   a simulated peer did not come up or answer in time
    ├── BrokerError                       the Mosquitto broker cannot be started or used
    └── IoHostError                       the firmware process cannot be started or used

A ``SimulatorError`` says what the simulated lane could not do; the CLIs (``lane-sim``,
``python -m simulators.*``) print it as one line.
"""

from __future__ import annotations


class SimulatorError(Exception):
    """Root of every error raised by the simulators."""


class SimulatorSetupError(SimulatorError, ValueError):
    """A simulator was configured with something it does not model; the message names it."""


class SimulatorTimeout(SimulatorError, TimeoutError):
    """A simulated peer did not come up or answer in time."""


class BrokerError(SimulatorError):
    """The broker could not be started or used (simulators/broker.py)."""


class IoHostError(SimulatorError):
    """The firmware process could not be started or used (simulators/iohost.py)."""
