"""gatelane edge agent: the software that runs a truck gate lane on a Raspberry Pi."""

__version__ = "0.1.0"
