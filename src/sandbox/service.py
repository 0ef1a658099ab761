"""Build, start, stop and inspect the sandbox Asterisk of one instance.

The composition root renders the configuration (``dialplans``) and hands the files to ``Sandbox.up``;
this package never imports the renderer (capabilities do not import each other).

How Asterisk runs: ``unshare --mount --uts`` gives each Asterisk process a private mount and hostname
namespace in which the instance directory is bind-mounted at ``INSIDE_INSTANCE_DIR`` inside the root
filesystem and /proc is mounted; then ``chroot`` starts ``asterisk -f -U asterisk -G asterisk``. When
Asterisk exits its namespace goes with it, so no mount is ever left on the host, and several instances
share one root filesystem without seeing each other's files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from cti.settings import Settings

from . import rootfs as rootfs_mod
from .ami_probe import probe_fully_booted
from .model import (
    DEFAULT_PACKAGES,
    INSIDE_INSTANCE_DIR,
    INSIDE_LAYOUT,
    SANDBOX_HOSTNAME,
    BootTimeoutError,
    InstanceLayout,
    NotRootError,
    SandboxError,
    SandboxStatus,
)
from .procs import check_port_free, is_zombie_or_gone, read_cmdline, run_streaming

Progress = Callable[[str], None]

PID_FILE = "asterisk.pid"
STATE_FILE = "state.json"
CONSOLE_LOG = "console.log"
SECRET_FILES = {"ami": "ami.secret", "capture": "ami-capture.secret"}

# Inside the new namespaces: bind the instance, mount /proc, name the host, then become Asterisk.
# Arguments: $1 root filesystem, $2 instance dir (host), $3 mount point inside, then the command.
_ENTER = (
    'set -e; root="$1"; mount --bind "$2" "$root$3"; mount -t proc proc "$root/proc"; '
    f'hostname {SANDBOX_HOSTNAME}; shift 3; exec chroot "$root" "$@"'
)


def _noop(_: str) -> None:
    pass


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return f"    ({path} does not exist)"
    return "\n".join(f"    {line}" for line in text[-lines:]) or f"    ({path} is empty)"


class Sandbox:
    """One sandbox instance: ``settings.instance_dir()`` plus a cached root filesystem."""

    def __init__(self, settings: Settings, *, packages: tuple[str, ...] = DEFAULT_PACKAGES) -> None:
        self.settings = settings
        self.instance_dir = settings.instance_dir()
        self.layout = InstanceLayout.under(str(self.instance_dir))
        self.spec = rootfs_mod.RootfsSpec(
            suite=settings.sandbox.suite,
            mirror=settings.sandbox.mirror,
            asterisk_major=settings.sandbox.asterisk_major,
            packages=packages,
        )

    # -- paths and secrets ---------------------------------------------------------------------------

    @property
    def inside_layout(self) -> InstanceLayout:
        """The instance's directories as Asterisk sees them (render the configuration with these)."""
        return INSIDE_LAYOUT

    @property
    def rootfs_path(self) -> Path:
        return self.settings.sandbox.cache_dir / "rootfs" / self.spec.dirname()

    def secret_path(self, which: str = "ami") -> Path:
        return self.instance_dir / SECRET_FILES[which]

    def ensure_secret(self, which: str = "ami") -> str:
        """The instance's AMI secret (``"ami"``) or capture user's secret (``"capture"``).

        Generated once with ``secrets.token_urlsafe`` into a file readable by its owner only, and kept
        across restarts and root filesystem rebuilds.
        """
        path = self.secret_path(which)
        if path.exists():
            return path.read_text(encoding="utf-8").strip()
        self.instance_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(24)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it a moment ago: use theirs
            return path.read_text(encoding="utf-8").strip()
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value + "\n")
        return value

    # -- status ----------------------------------------------------------------------------------------

    def _read_state(self) -> dict[str, object]:
        try:
            data = json.loads((self.instance_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _running_pid(self) -> int | None:
        """The pid from our pid file if that process is still the Asterisk we started, else ``None``."""
        try:
            pid = int((self.instance_dir / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None
        if is_zombie_or_gone(pid):
            return None
        cmdline = read_cmdline(pid)
        if not cmdline or not any(Path(part).name == "asterisk" for part in cmdline[:1]):
            return None
        if f"{INSIDE_INSTANCE_DIR}/etc/asterisk.conf" not in cmdline:
            return None
        rootfs = self._read_state().get("rootfs")
        with contextlib.suppress(OSError):
            if rootfs is not None and os.readlink(f"/proc/{pid}/root") != str(rootfs):
                return None
        return pid

    def _probe(self, timeout: float) -> bool:
        ami = self.settings.ami
        secret_path = self.secret_path()
        if not secret_path.exists():
            return False
        result = probe_fully_booted(ami.host, ami.port, ami.username, self.ensure_secret(), timeout)
        return result.ok

    def status(self, *, probe: bool = True) -> SandboxStatus:
        """Running or stopped, pid, ports, Asterisk version, directories; ``probe`` also asks AMI."""
        pid = self._running_pid()
        state = self._read_state()
        built = (
            rootfs_mod.load(Path(str(state["rootfs"])))
            if "rootfs" in state
            else rootfs_mod.load(self.rootfs_path)
        )
        boot = state.get("boot_seconds")
        return SandboxStatus(
            instance=self.settings.sandbox.instance,
            running=pid is not None,
            pid=pid,
            sip_host=self.settings.sandbox.sip_host,
            sip_port=self.settings.sandbox.sip_port,
            ami_host=self.settings.ami.host,
            ami_port=self.settings.ami.port,
            instance_dir=self.instance_dir,
            rootfs=built.path if built else None,
            asterisk_version=built.asterisk_version if built else None,
            fully_booted=self._probe(2.0) if (probe and pid is not None) else None,
            boot_seconds=float(boot) if isinstance(boot, int | float) and pid is not None else None,
        )

    # -- up / down -------------------------------------------------------------------------------------

    @staticmethod
    def require_root(command: str = "cti pbx up") -> None:
        """Raise ``NotRootError`` unless running as root (call it before ``ensure_secret`` in the CLI)."""
        if os.geteuid() != 0:
            raise NotRootError(f"{command} needs root: it builds a chroot and starts Asterisk in it")

    def _config_differs(self, files: Mapping[str, str]) -> bool:
        etc = Path(self.layout.etc)
        for name, text in files.items():
            try:
                if (etc / name).read_text(encoding="utf-8") != text:
                    return True
            except OSError:
                return True
        existing = {p.name for p in etc.glob("*.conf")}
        return existing != set(files)

    async def up(self, files: Mapping[str, str], progress: Progress = _noop) -> SandboxStatus:
        """Make the instance run ``files`` (name -> text, rendered for ``inside_layout``).

        Builds the root filesystem on first use, checks the SIP and AMI ports, writes the
        configuration, starts Asterisk detached and waits until AMI reports ``FullyBooted``.
        Idempotent: a healthy instance already running this configuration is left alone; one running
        another configuration is restarted on the new one.
        """
        self.require_root()
        _check_files(files)
        pid = self._running_pid()
        if pid is not None:
            healthy = await asyncio.to_thread(self._probe, 5.0)
            if healthy and not self._config_differs(files):
                progress(f"Asterisk already running (pid {pid}), fully booted")
                return self.status(probe=False)
            why = "the configuration changed" if healthy else "it does not answer on AMI"
            progress(f"restarting Asterisk (pid {pid}): {why}")
            await self.down(progress)
        built = await rootfs_mod.ensure_rootfs(self.settings.sandbox.cache_dir, self.spec, progress)
        self._write_config(files, built)
        return await self._start(built, progress)

    async def restart(self, progress: Progress = _noop, *, kill: bool = False) -> SandboxStatus:
        """Stop Asterisk (``kill``: at once with SIGKILL, as a crash would) and start it again on the
        configuration already in the instance directory."""
        self.require_root("restarting the sandbox")
        await self.down(progress, kill=kill)
        built = await rootfs_mod.ensure_rootfs(self.settings.sandbox.cache_dir, self.spec, progress)
        if not (Path(self.layout.etc) / "asterisk.conf").exists():
            raise SandboxError(f"no configuration in {self.layout.etc}: run `cti pbx up` first")
        return await self._start(built, progress)

    async def down(self, progress: Progress = _noop, *, kill: bool = False, grace: float = 10.0) -> bool:
        """Stop the instance's Asterisk: SIGTERM, then SIGKILL after ``grace`` seconds.

        Only the pid recorded in the pid file is signalled, and only while /proc says it is still
        that Asterisk. Returns whether anything was running (a no-op when already stopped).
        """
        pid = self._running_pid()
        pid_file = self.instance_dir / PID_FILE
        if pid is None:
            pid_file.unlink(missing_ok=True)
            return False
        self.require_root("cti pbx down")
        progress(f"stopping Asterisk (pid {pid})…")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + grace
        while not is_zombie_or_gone(pid):
            if time.monotonic() > deadline:
                progress(f"Asterisk (pid {pid}) ignored SIGTERM for {grace:.0f} s; sending SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + grace
            await asyncio.sleep(0.05)
        pid_file.unlink(missing_ok=True)
        progress("Asterisk stopped")
        return True

    # -- internals -------------------------------------------------------------------------------------

    def _write_config(self, files: Mapping[str, str], built: rootfs_mod.Rootfs) -> None:
        self.instance_dir.mkdir(parents=True, exist_ok=True)
        self.instance_dir.chmod(0o755)
        for path in self.layout.asterisk_dirs().values():
            Path(path).mkdir(parents=True, exist_ok=True)
            os.chown(path, built.uid, built.gid)
            Path(path).chmod(0o750)
        etc = Path(self.layout.etc)
        for stale in etc.glob("*.conf"):
            if stale.name not in files:
                stale.unlink()
        for name, text in files.items():
            tmp = etc / f".{name}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chown(tmp, built.uid, built.gid)
            os.replace(tmp, etc / name)

    def _check_ports(self) -> None:
        sb, ami = self.settings.sandbox, self.settings.ami
        check_port_free(sb.sip_host, sb.sip_port, "SIP", proto="udp", setting="CTI_SANDBOX__SIP_PORT")
        check_port_free(ami.host, ami.port, "AMI", proto="tcp", setting="CTI_AMI__PORT")

    def _enter_argv(self, built: rootfs_mod.Rootfs, *argv: str, uts: bool = True) -> list[str]:
        namespaces = ["--mount", "--uts"] if uts else ["--mount"]
        return [
            "unshare",
            *namespaces,
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            _ENTER if uts else _ENTER.replace(f"hostname {SANDBOX_HOSTNAME}; ", ""),
            "sh",
            str(built.path),
            str(self.instance_dir),
            INSIDE_INSTANCE_DIR,
            *argv,
        ]

    async def _start(self, built: rootfs_mod.Rootfs, progress: Progress) -> SandboxStatus:
        self._check_ports()
        conf = f"{INSIDE_INSTANCE_DIR}/etc/asterisk.conf"
        argv = self._enter_argv(
            built, "/usr/sbin/asterisk", "-f", "-n", "-U", "asterisk", "-G", "asterisk", "-C", conf
        )
        console = self.instance_dir / CONSOLE_LOG
        messages = Path(self.layout.log) / "messages.log"
        # A fresh log per start, so a boot failure shows this boot's lines only; the previous start's
        # log stays beside it (``.1``), which is where a crash's last words are.
        for log in (console, messages):
            if log.exists():
                log.replace(log.with_name(log.name + ".1"))
        progress(f"starting Asterisk {built.asterisk_version} (instance {self.settings.sandbox.instance})…")
        started = time.monotonic()
        with console.open("ab") as out:
            # Popen, not asyncio: Asterisk is a detached daemon that outlives this event loop (and
            # this process, for the CLI); starting it does not block.
            proc = subprocess.Popen(  # noqa: ASYNC220
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session: no terminal signal reaches it
                close_fds=True,
                env={
                    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                    "LC_ALL": "C.UTF-8",
                    "HOME": "/var/lib/asterisk",
                },
            )
        (self.instance_dir / PID_FILE).write_text(f"{proc.pid}\n")
        state: dict[str, object] = {"rootfs": str(built.path), "asterisk_version": built.asterisk_version}
        (self.instance_dir / STATE_FILE).write_text(json.dumps(state))

        timeout = self.settings.sandbox.boot_timeout
        deadline = started + timeout
        reason = "not started"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                (self.instance_dir / PID_FILE).unlink(missing_ok=True)
                raise SandboxError(
                    f"Asterisk exited during start-up (status {proc.returncode}).\n"
                    f"  {messages}:\n{_tail(messages)}\n  {console}:\n{_tail(console)}"
                )
            remaining = max(0.5, min(5.0, deadline - time.monotonic()))
            result = await asyncio.to_thread(
                probe_fully_booted,
                self.settings.ami.host,
                self.settings.ami.port,
                self.settings.ami.username,
                self.ensure_secret(),
                remaining,
            )
            if result.ok:
                break
            reason = result.reason
            await asyncio.sleep(0.1)
        else:
            await self.down(_noop, kill=True)
            raise BootTimeoutError(
                f"Asterisk did not report FullyBooted on AMI within {timeout:.0f} s ({reason}).\n"
                f"  {messages}:\n{_tail(messages)}\n  {console}:\n{_tail(console)}"
            )
        boot = time.monotonic() - started
        state["boot_seconds"] = round(boot, 2)
        (self.instance_dir / STATE_FILE).write_text(json.dumps(state))
        progress(f"Asterisk fully booted in {boot:.1f} s (pid {proc.pid})")
        return self.status(probe=False)

    async def cli_rx(self, command: str, timeout: float = 15.0) -> str:
        """Run one CLI command (``asterisk -rx``) against the running instance; its output."""
        self.require_root("asterisk -rx")
        if any(c in command for c in "\r\n\0"):
            raise ValueError("a CLI command is one line")
        built = rootfs_mod.load(Path(str(self._read_state().get("rootfs", self.rootfs_path))))
        if built is None or self._running_pid() is None:
            raise SandboxError(f"instance {self.settings.sandbox.instance} is not running")
        conf = f"{INSIDE_INSTANCE_DIR}/etc/asterisk.conf"
        argv = self._enter_argv(built, "/usr/sbin/asterisk", "-C", conf, "-rx", command, uts=False)
        lines: list[str] = []
        result = await asyncio.wait_for(run_streaming(argv, on_line=lines.append, tail_lines=1), timeout)
        if result.returncode != 0:
            raise SandboxError(
                f"asterisk -rx {command!r} failed ({result.returncode}): {' '.join(lines[-5:])}"
            )
        return "\n".join(lines)


def _check_files(files: Mapping[str, str]) -> None:
    if "asterisk.conf" not in files:
        raise ValueError("the rendered configuration has no asterisk.conf")
    for name in files:
        if "/" in name or name.startswith(".") or not name.endswith(".conf"):
            raise ValueError(f"not a configuration file name: {name!r}")
