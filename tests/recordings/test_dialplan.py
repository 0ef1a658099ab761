"""The recording part of the rendered PBX configuration: the policy as a Gosub per service, the
[cti-record] subroutine, and an AMI user without the ``system`` write class."""

from __future__ import annotations

import dataclasses

import pytest

from cti.settings import Settings
from dialplans.render import PbxConfigParams, PbxDirs, Service, render_pbx_config
from dialplans.wiring import params_from_settings

DIRS = PbxDirs(
    "/srv/cti/etc", "/srv/cti/spool", "/srv/cti/log", "/srv/cti/run", "/srv/cti/db", "/srv/cti/cache"
)


def params(*services: Service) -> PbxConfigParams:
    return PbxConfigParams(
        dirs=DIRS, sip_host="127.0.0.1", sip_port=15060, trunk_match="127.0.0.1", rtp_start=30000,
        rtp_end=30999, ami_host="127.0.0.1", ami_port=15038, ami_username="cti",
        ami_secret="secret-123456", services=services,
    )  # fmt: skip


def lines_of(text: str, dnis: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(next(line for line in lines if line.startswith(f"exten => {dnis},1,")))
    end = lines.index("", start)
    return lines[start:end]


def test_a_recorded_service_calls_the_subroutine_after_answer_with_its_percentage() -> None:
    text = render_pbx_config(params(Service("8000", "hold", record_percent=25), Service("8001", "hold")))[
        "extensions.conf"
    ]
    recorded = lines_of(text, "8000")
    assert recorded[1:3] == [" same => n,Answer()", " same => n,Gosub(cti-record,s,1(25))"]
    assert not any("cti-record" in line for line in lines_of(text, "8001"))  # none: no recording at all
    section = text[text.index("[cti-record]") :].split("\n\n")[0].splitlines()
    assert section[1:] == [
        "exten => s,1,GotoIf($[$[${CUT(CHANNEL(linkedid),.,2)} % 100] >= ${ARG1}]?done)",
        " same => n,MixMonitor(${CHANNEL(linkedid)}.wav,b)",
        " same => n(done),Return()",
    ]


@pytest.mark.parametrize("percent", [-1, 101, True])
def test_a_bad_percentage_is_refused(percent: object) -> None:
    with pytest.raises(ValueError, match="record_percent"):
        render_pbx_config(params(Service("8000", "hold", record_percent=percent)))  # type: ignore[arg-type]


def test_the_settings_give_each_service_its_policy() -> None:
    settings = Settings(recordings={"policy": "none", "services": {"8000": "all", "8002": "10%"}})
    p = params_from_settings(
        settings, dirs=dataclasses.asdict(DIRS), ami_secret="secret-123456",
        services=[("8000", "hold"), ("8001", "hold"), ("8002", "direct")],
    )  # fmt: skip
    assert [(s.dnis, s.record_percent) for s in p.services] == [("8000", 100), ("8001", 0), ("8002", 10)]


@pytest.mark.parametrize("services", [{"8000": "half"}, {"80x": "all"}, {"8000": "101%"}])
def test_bad_policies_in_the_settings_are_refused(services: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="recording policy"):
        Settings(recordings={"services": services})


def test_the_ami_user_does_not_write_the_system_class() -> None:
    text = render_pbx_config(params())["manager.conf"]
    user = text[text.index("[cti]") :].split("\n\n")[0]
    (write,) = [line for line in user.splitlines() if line.startswith("write =")]
    assert set(write.removeprefix("write = ").split(",")) == {
        "call",
        "reporting",
        "originate",
        "agent",
        "user",
    }
