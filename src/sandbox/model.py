"""The sandbox's plain values: errors, status, and where an instance keeps its files.

No I/O here. An instance directory lives outside the Asterisk root filesystem (so a rebuilt root
filesystem keeps the instance's secrets, recordings and logs) and is bind-mounted at
``INSIDE_INSTANCE_DIR`` inside the chroot, privately, for each Asterisk process of that instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Where every instance directory appears inside the chroot. Each Asterisk process gets its own private
#: mount namespace, so several instances share this path without seeing each other's files.
INSIDE_INSTANCE_DIR = "/srv/cti"

#: The Debian packages of the root filesystem. The music-on-hold package gives the ``default`` class
#: GSM files, so hold music needs no codec beyond GSM and the ulaw/alaw the trunk speaks.
DEFAULT_PACKAGES: tuple[str, ...] = (
    "asterisk",
    "asterisk-modules",
    "asterisk-core-sounds-en-gsm",
    "asterisk-moh-opsound-gsm",
)

#: The hostname Asterisk sees (its own UTS namespace); the root filesystem's /etc/hosts maps it to
#: loopback, so Asterisk's start-up address lookups never wait on DNS.
SANDBOX_HOSTNAME = "cti-sandbox"


class SandboxError(RuntimeError):
    """A failure the operator can act on; the message says what happened and what to do."""


class NotRootError(SandboxError):
    pass


class PortInUseError(SandboxError):
    pass


class BootTimeoutError(SandboxError):
    pass


class RootfsBuildError(SandboxError):
    pass


@dataclass(frozen=True, slots=True)
class InstanceLayout:
    """The directories of one instance, either as the host sees them or as Asterisk sees them."""

    root: str
    etc: str
    spool: str
    log: str
    run: str
    db: str
    cache: str

    @classmethod
    def under(cls, root: str) -> InstanceLayout:
        return cls(
            root=root,
            etc=f"{root}/etc",
            spool=f"{root}/spool",
            log=f"{root}/log",
            run=f"{root}/run",
            db=f"{root}/db",
            cache=f"{root}/cache",
        )

    def asterisk_dirs(self) -> dict[str, str]:
        """The directories Asterisk writes to (owned by the chroot's ``asterisk`` user)."""
        return {
            "etc": self.etc,
            "spool": self.spool,
            "log": self.log,
            "run": self.run,
            "db": self.db,
            "cache": self.cache,
        }


INSIDE_LAYOUT = InstanceLayout.under(INSIDE_INSTANCE_DIR)


@dataclass(frozen=True, slots=True)
class SandboxStatus:
    """What ``cti pbx status`` reports about one instance."""

    instance: str
    running: bool
    pid: int | None
    sip_host: str
    sip_port: int
    ami_host: str
    ami_port: int
    instance_dir: Path
    rootfs: Path | None
    asterisk_version: str | None
    fully_booted: bool | None = None
    boot_seconds: float | None = None

    def describe(self) -> str:
        """A few human lines for the CLI."""
        state = f"running (pid {self.pid})" if self.running else "stopped"
        if self.running and self.fully_booted is False:
            state += ", AMI not answering"
        lines = [
            f"instance {self.instance}: {state}",
            f"  asterisk:     {self.asterisk_version or 'not built yet'}",
            f"  sip (udp):    {self.sip_host}:{self.sip_port}",
            f"  ami (tcp):    {self.ami_host}:{self.ami_port}",
            f"  instance dir: {self.instance_dir}",
        ]
        if self.rootfs is not None:
            lines.append(f"  rootfs:       {self.rootfs}")
        if self.boot_seconds is not None:
            lines.append(f"  booted in:    {self.boot_seconds:.1f} s")
        return "\n".join(lines)
