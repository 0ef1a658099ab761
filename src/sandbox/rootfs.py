"""Build and cache the Debian root filesystem that the sandbox Asterisk runs from.

A root filesystem is keyed by (suite, wanted Asterisk major, package list, this recipe's version):
it is rebuilt only when one of those changes. It is built in a temporary directory next to its final
place and renamed there only once complete and verified, under an exclusive file lock, so concurrent
``up`` calls never build twice and an interrupted build never looks finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .model import INSIDE_INSTANCE_DIR, SANDBOX_HOSTNAME, RootfsBuildError
from .procs import run_streaming

Progress = Callable[[str], None]

#: Bump when the build steps change in a way that needs a fresh root filesystem.
RECIPE_VERSION = 1

STAMP = ".cti-sandbox.json"

# apt inside the chroot: the mirror may serve an archived snapshot whose Release file is past its
# Valid-Until date; the archive signatures are still checked.
APT_OPTIONS = ("-o", "Acquire::Check-Valid-Until=false", "-o", "Dpkg::Use-Pty=0", "-q")

_CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "LC_ALL": "C.UTF-8",
    "HOME": "/root",
}

# Runs a command chrooted into $1 with a private /proc: the mount lives in its own mount namespace and
# disappears with the command, leaving no mount behind on the host.
_IN_CHROOT = 'mount -t proc proc "$1/proc" && root="$1" && shift && exec chroot "$root" "$@"'


@dataclass(frozen=True, slots=True)
class RootfsSpec:
    suite: str
    mirror: str
    asterisk_major: int
    packages: tuple[str, ...]

    def key(self) -> str:
        """What the cached root filesystem depends on (the mirror is only where it comes from)."""
        text = json.dumps([RECIPE_VERSION, self.suite, self.asterisk_major, sorted(self.packages)])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def dirname(self) -> str:
        return f"{self.suite}-asterisk{self.asterisk_major}-{self.key()}"


@dataclass(frozen=True, slots=True)
class Rootfs:
    path: Path
    asterisk_version: str
    uid: int
    gid: int


def chroot_argv(root: Path, *argv: str) -> list[str]:
    """``argv`` run inside ``root`` with /proc mounted privately (needs root)."""
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        _IN_CHROOT,
        "sh",
        str(root),
        *argv,
    ]


def _asterisk_ids(root: Path) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "asterisk":
            return int(fields[2]), int(fields[3])
    raise RootfsBuildError(
        f"the root filesystem {root} has no 'asterisk' user: was the asterisk package installed?"
    )


def load(path: Path) -> Rootfs | None:
    """The finished root filesystem at ``path``, or ``None`` if there is none (or it is incomplete)."""
    try:
        stamp = json.loads((path / STAMP).read_text())
        uid, gid = _asterisk_ids(path)
    except (OSError, ValueError, RootfsBuildError):
        return None
    return Rootfs(path=path, asterisk_version=str(stamp["asterisk_version"]), uid=uid, gid=gid)


@contextlib.contextmanager
def _no_mounts_under(path: Path) -> Iterator[None]:
    """Refuse to delete a tree that still has something mounted inside it."""
    prefix = str(path.resolve()) + "/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].replace("\\040", " ")
        if target.startswith(prefix) or target == prefix[:-1]:
            raise RootfsBuildError(f"{target} is still mounted inside {path}; unmount it and try again")
    yield


def _remove_tree(path: Path) -> None:
    if path.exists():
        with _no_mounts_under(path):
            shutil.rmtree(path)


async def _lock(lock_path: Path, progress: Progress) -> int:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if not told:
                progress("another process is building the root filesystem; waiting for it…")
                told = True
            await asyncio.sleep(0.5)


class _PhaseReporter:
    """Turns the chatter of debootstrap and apt-get into a few progress lines."""

    _PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
        (re.compile(r"^I: Retrieving (In)?Release"), "  debootstrap: fetching the package index"),
        (re.compile(r"^I: Retrieving Packages"), ""),
        (re.compile(r"^I: Resolving dependencies of required"), "  debootstrap: resolving the base system"),
        (re.compile(r"^I: Retrieving "), "  debootstrap: downloading base packages"),
        (re.compile(r"^I: Extracting "), "  debootstrap: extracting"),
        (re.compile(r"^I: Installing core packages"), "  debootstrap: installing core packages"),
        (re.compile(r"^I: Configuring "), "  debootstrap: configuring"),
        (re.compile(r"^I: Base system installed"), "  debootstrap: base system installed"),
        (re.compile(r"^Need to get (.*)"), "  apt-get: need to get {0}"),
        (re.compile(r"^(Get|Hit):\d+ "), "  apt-get: downloading"),
        (re.compile(r"^Unpacking "), "  apt-get: unpacking"),
        (re.compile(r"^Setting up asterisk \((.*)\)"), "  apt-get: set up asterisk {0}"),
        (re.compile(r"^Setting up "), "  apt-get: configuring packages"),
    )

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._said: set[str] = set()

    def __call__(self, line: str) -> None:
        for pattern, text in self._PATTERNS:
            match = pattern.match(line)
            if match:
                message = text.format(*match.groups())
                if message and message not in self._said:
                    self._said.add(message)
                    self._progress(message)
                return


_APT_ERRORS = (
    re.compile(r"E: Unable to locate package (\S+)"),
    re.compile(r"E: Package '([^']+)' has no installation candidate"),
    re.compile(r"E: Version '[^']+' for '([^']+)' was not found"),
    re.compile(r"^\s*(\S+) : Depends: .* but it is not (?:installable|going to be installed)"),
    re.compile(r"E: Failed to fetch \S*/([a-z0-9][a-z0-9+.-]+)_[^/\s]+\.deb"),
    re.compile(r"E: Couldn't download packages?: (\S+)"),
    re.compile(r"W: Couldn't download package (\S+)"),
    re.compile(r"E: Couldn't find these debs: (\S+)"),
)


def _failed_package(tail: Sequence[str]) -> tuple[str | None, str | None]:
    for line in tail:
        for pattern in _APT_ERRORS:
            match = pattern.search(line)
            if match:
                return match.group(1), line.strip()
    errors = [line.strip() for line in tail if line.startswith(("E:", "W: Failure"))]
    return None, (errors[-1] if errors else None)


def _failure(step: str, tail: Sequence[str], log: Path) -> RootfsBuildError:
    package, line = _failed_package(tail)
    if package:
        head = f"{step} could not get the package '{package}' ({line})"
    elif line:
        head = f"{step} failed: {line}"
    else:
        head = f"{step} failed"
    last = "\n".join(f"    {t}" for t in tail[-12:])
    return RootfsBuildError(f"{head}\n  full log: {log}\n  last lines:\n{last}")


async def ensure_rootfs(cache_dir: Path, spec: RootfsSpec, progress: Progress) -> Rootfs:
    """The finished root filesystem for ``spec`` under ``cache_dir``, building it first if needed."""
    base = cache_dir / "rootfs"
    base.mkdir(parents=True, exist_ok=True)
    final = base / spec.dirname()
    found = load(final)
    if found is not None:
        return found
    fd = await _lock(base / ".lock", progress)
    try:
        found = load(final)  # somebody else may have finished it while we waited
        if found is not None:
            return found
        return await _build(base, final, spec, progress)
    finally:
        os.close(fd)  # releases the lock


async def _build(base: Path, final: Path, spec: RootfsSpec, progress: Progress) -> Rootfs:
    tmp = base / f".build-{spec.dirname()}"
    log = base / f"build-{spec.dirname()}.log"
    _remove_tree(tmp)  # an interrupted earlier build (we hold the lock: nobody else is using it)
    _remove_tree(final)  # present but without a valid stamp: incomplete
    log.write_text("")
    report = _PhaseReporter(progress)
    env = dict(_CHROOT_ENV)

    progress(
        f"building Asterisk {spec.asterisk_major} root filesystem (debootstrap {spec.suite}) in {final}…"
    )
    started = time.monotonic()
    result = await run_streaming(
        ["debootstrap", "--variant=minbase", spec.suite, str(tmp), spec.mirror],
        on_line=report,
        log_file=log,
        env={**os.environ, **env},
    )
    if result.returncode != 0:
        raise _failure(f"debootstrap {spec.suite} from {spec.mirror}", result.tail, log)
    progress(f"  debootstrap done in {time.monotonic() - started:.0f} s")

    # Before any package is configured: no service may start inside the chroot during installation
    # (the asterisk package would otherwise try to start a system-wide Asterisk).
    policy = tmp / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    (tmp / "etc/hosts").write_text(f"127.0.0.1\tlocalhost {SANDBOX_HOSTNAME}\n::1\tlocalhost ip6-localhost\n")

    progress(f"installing {' '.join(spec.packages)} (apt-get in the chroot)…")
    started = time.monotonic()
    for argv, step in (
        (["apt-get", *APT_OPTIONS, "update"], "apt-get update"),
        (
            ["apt-get", *APT_OPTIONS, "install", "-y", "--no-install-recommends", *spec.packages],
            "apt-get install",
        ),
        (["apt-get", "clean"], "apt-get clean"),
    ):
        result = await run_streaming(chroot_argv(tmp, *argv), on_line=report, log_file=log, env=env)
        if result.returncode != 0:
            raise _failure(step, result.tail, log)
    progress(f"  packages installed in {time.monotonic() - started:.0f} s")

    result = await run_streaming(["chroot", str(tmp), "asterisk", "-V"], log_file=log, env=env)
    version_line = result.tail[-1] if result.tail else ""
    match = re.match(r"Asterisk (\d+)\.(\S+)", version_line)
    if result.returncode != 0 or match is None:
        raise RootfsBuildError(
            f"`asterisk -V` in the new root filesystem failed: {version_line!r} (log: {log})"
        )
    major = int(match.group(1))
    if major != spec.asterisk_major:
        raise RootfsBuildError(
            f"Debian {spec.suite} packages {version_line}, not Asterisk {spec.asterisk_major}: choose a "
            "suite that does (CTI_SANDBOX__SUITE) or change the wanted major (CTI_SANDBOX__ASTERISK_MAJOR)"
        )
    version = version_line.strip().removeprefix("Asterisk ").strip()

    mount_point = tmp / INSIDE_INSTANCE_DIR.lstrip("/")
    mount_point.mkdir(parents=True, exist_ok=True)
    (tmp / STAMP).write_text(
        json.dumps(
            {
                "key": spec.key(),
                "suite": spec.suite,
                "mirror": spec.mirror,
                "packages": list(spec.packages),
                "asterisk_version": version,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
    )
    os.rename(tmp, final)
    progress(f"root filesystem ready: Asterisk {version}")
    built = load(final)
    if built is None:
        raise RootfsBuildError(f"the root filesystem at {final} did not verify after building")
    return built
