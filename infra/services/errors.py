"""What goes wrong when starting the local services."""

from __future__ import annotations

from infra.processes import LaunchError


class LocalStackError(LaunchError):
    """A local service could not be started or answered an error."""


class PortInUseError(LocalStackError):
    """A service's port is already taken by another process."""


class ServiceStartError(LocalStackError):
    """A service exited early or did not become ready in time."""
