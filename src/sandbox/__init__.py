"""The sandbox PBX: a real Asterisk in a cached Debian chroot on loopback, for the demo and the tests.

Public API: ``Sandbox`` (``up``, ``down``, ``restart``, ``status``, ``cli_rx``, ``ensure_secret``,
``inside_layout``), ``SandboxStatus``, ``InstanceLayout`` and the errors. The composition root renders
the configuration with ``dialplans`` for ``Sandbox.inside_layout`` and passes the files to ``up``.
"""

from .model import (
    DEFAULT_PACKAGES,
    INSIDE_INSTANCE_DIR,
    BootTimeoutError,
    InstanceLayout,
    NotRootError,
    PortInUseError,
    RootfsBuildError,
    SandboxError,
    SandboxStatus,
)
from .service import Sandbox

__all__ = [
    "DEFAULT_PACKAGES",
    "INSIDE_INSTANCE_DIR",
    "BootTimeoutError",
    "InstanceLayout",
    "NotRootError",
    "PortInUseError",
    "RootfsBuildError",
    "Sandbox",
    "SandboxError",
    "SandboxStatus",
]
