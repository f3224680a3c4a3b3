"""Adapters on their real platform libraries, against loopback stand-ins of the platforms."""
