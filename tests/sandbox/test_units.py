"""Parts of the sandbox that need no Asterisk: cache keys, error messages, port checks, guards."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from cti.settings import Settings
from sandbox import NotRootError, PortInUseError, Sandbox
from sandbox.ami_probe import probe_fully_booted
from sandbox.procs import check_port_free
from sandbox.rootfs import RootfsSpec, _failed_package
from sandbox.service import _check_files

SPEC = RootfsSpec("sid", "http://deb.debian.org/debian", 22, ("asterisk", "asterisk-modules"))


@pytest.mark.parametrize(
    ("other", "same"),
    [
        (RootfsSpec("sid", "http://mirror.example/debian", 22, ("asterisk", "asterisk-modules")), True),
        (RootfsSpec("sid", "http://deb.debian.org/debian", 22, ("asterisk-modules", "asterisk")), True),
        (RootfsSpec("trixie", "http://deb.debian.org/debian", 22, ("asterisk", "asterisk-modules")), False),
        (RootfsSpec("sid", "http://deb.debian.org/debian", 23, ("asterisk", "asterisk-modules")), False),
        (RootfsSpec("sid", "http://deb.debian.org/debian", 22, ("asterisk",)), False),
    ],
)
def test_rootfs_key_follows_what_the_build_depends_on(other: RootfsSpec, same: bool) -> None:
    assert (other.key() == SPEC.key()) is same
    assert SPEC.dirname().startswith("sid-asterisk22-")


@pytest.mark.parametrize(
    ("lines", "package"),
    [
        (["Reading package lists...", "E: Unable to locate package asterisk-modulez"], "asterisk-modulez"),
        (["E: Package 'asterisk' has no installation candidate"], "asterisk"),
        ([" asterisk : Depends: libpjproject2 (>= 2.14) but it is not installable"], "asterisk"),
        (
            [
                "E: Failed to fetch http://deb.debian.org/debian/pool/main/a/asterisk/"
                "asterisk-core-sounds-en-gsm_1.6.1-1_all.deb  404  Not Found [IP: 1.2.3.4 80]"
            ],
            "asterisk-core-sounds-en-gsm",
        ),
        (["E: Couldn't download packages: libc6"], "libc6"),
        (["E: Sub-process /usr/bin/dpkg returned an error code (1)"], None),
    ],
)
def test_apt_failures_name_the_package(lines: list[str], package: str | None) -> None:
    found, line = _failed_package(lines)
    assert found == package
    assert line is not None and line.startswith(("E:", "asterisk"))


async def test_up_needs_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    sandbox = Sandbox(Settings(sandbox={"cache_dir": tmp_path, "instance": "unit"}))
    with pytest.raises(
        NotRootError, match=r"cti pbx up needs root: it builds a chroot and starts Asterisk in it"
    ):
        await sandbox.up({"asterisk.conf": "[directories]\n"})
    assert not (tmp_path / "rootfs").exists()


def test_port_in_use_names_the_port_and_its_holder() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(PortInUseError) as caught:
            check_port_free("127.0.0.1", port, "AMI", proto="tcp", setting="CTI_AMI__PORT")
    message = str(caught.value)
    assert f"127.0.0.1:{port}/tcp" in message and "AMI" in message and "CTI_AMI__PORT" in message
    assert f"pid {os.getpid()}" in message


def test_free_port_passes() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    check_port_free("127.0.0.1", port, "SIP", proto="udp", setting="CTI_SANDBOX__SIP_PORT")


@pytest.mark.parametrize("name", ["../asterisk.conf", "etc/pjsip.conf", ".hidden.conf", "pjsip.txt"])
def test_rendered_file_names_stay_in_the_config_dir(name: str) -> None:
    with pytest.raises(ValueError, match="not a configuration file name"):
        _check_files({"asterisk.conf": "", name: ""})


def test_probe_of_a_closed_port_says_so() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    result = probe_fully_booted("127.0.0.1", port, "cti", "secret-value", timeout=1.0)
    assert not result.ok and "does not accept connections" in result.reason


def test_status_of_a_never_started_instance(tmp_path: Path) -> None:
    status = Sandbox(Settings(sandbox={"cache_dir": tmp_path, "instance": "unit"})).status()
    assert not status.running and status.pid is None and status.asterisk_version is None
    assert "stopped" in status.describe() and "not built yet" in status.describe()
