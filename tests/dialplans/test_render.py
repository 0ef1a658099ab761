"""The PBX configuration renderer: pure, table-driven, no Asterisk needed."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from cti.events import EVENT_NAMES
from cti.settings import Settings
from dialplans.render import (
    AMI_DISABLED_EVENTS,
    CONFIG_FILES,
    STASIS_DECLINED_MESSAGES,
    Agent,
    PbxConfigParams,
    PbxDirs,
    Service,
    render_pbx_config,
)
from dialplans.wiring import params_from_settings, sandbox_agents

SECRET = "Zq8-ami_secret_value"
CAPTURE_SECRET = "capture_secret_9x"
DIRS = PbxDirs(
    etc="/srv/cti/etc",
    spool="/srv/cti/spool",
    log="/srv/cti/log",
    run="/srv/cti/run",
    db="/srv/cti/db",
    cache="/srv/cti/cache",
)


def params(**changes: Any) -> PbxConfigParams:
    base = PbxConfigParams(
        dirs=DIRS,
        sip_host="127.0.0.1",
        sip_port=5060,
        trunk_match="127.0.0.1",
        rtp_start=20000,
        rtp_end=20999,
        ami_host="127.0.0.1",
        ami_port=5038,
        ami_username="cti",
        ami_secret=SECRET,
        agents=(Agent("1001", 5071), Agent("1002", 5072)),
        services=(
            Service("8000", "hold"),
            Service("8001", "direct"),
            Service("8002", "direct", agent="1002"),
        ),
        capture_user=True,
        capture_username="cti-capture",
        capture_secret=CAPTURE_SECRET,
    )
    return dataclasses.replace(base, **changes)


Section = tuple[str, list[tuple[str, str]]]


def parse(text: str) -> list[Section]:
    """Asterisk's config syntax, strictly: every line is blank, a comment, a section or a setting."""
    sections: list[Section] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(";"):
            continue
        assert ";" not in stripped, f"line {number}: a ';' would start a comment: {line!r}"
        header = re.fullmatch(r"\[([^\[\]]+)\](\(.*\))?", stripped)
        if header:
            sections.append((header.group(1), []))
            continue
        setting = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_()., -]*?)\s*=>?\s*(.*)", stripped)
        assert setting, f"line {number} is not a setting: {line!r}"
        assert sections, f"line {number}: a setting before any section"
        sections[-1][1].append((setting.group(1), setting.group(2)))
    return sections


def section(text: str, name: str, type_: str | None = None) -> dict[str, list[str]]:
    """The settings of the section ``name`` (of the PJSIP ``type`` when given), values per key."""
    for sec_name, settings in parse(text):
        values: dict[str, list[str]] = {}
        for key, value in settings:
            values.setdefault(key, []).append(value)
        if sec_name == name and (type_ is None or values.get("type") == [type_]):
            return values
    raise AssertionError(f"no section [{name}] of type {type_}")


def test_renders_every_file_and_parses() -> None:
    files = render_pbx_config(params())
    assert set(files) == set(CONFIG_FILES)
    for name, text in files.items():
        assert text.endswith("\n"), name
        parse(text)


def test_rendering_is_deterministic() -> None:
    assert render_pbx_config(params()) == render_pbx_config(params())


def test_asterisk_conf_points_writable_directories_into_the_instance() -> None:
    d = section(render_pbx_config(params())["asterisk.conf"], "directories")
    assert d["astetcdir"] == ["/srv/cti/etc"]
    assert d["astspooldir"] == ["/srv/cti/spool"]
    assert d["astlogdir"] == ["/srv/cti/log"]
    assert d["astrundir"] == ["/srv/cti/run"]
    assert d["astdbdir"] == ["/srv/cti/db"]
    assert d["astdatadir"] == ["/usr/share/asterisk"]
    assert d["astvarlibdir"] == ["/var/lib/asterisk"]


def test_modules_conf_loads_only_a_list() -> None:
    m = section(render_pbx_config(params())["modules.conf"], "modules")
    assert m["autoload"] == ["no"]
    needed_modules = (
        "chan_pjsip.so",
        "res_pjsip_pubsub.so",
        "app_userevent.so",
        "app_dial.so",
        "res_musiconhold.so",
        "app_mixmonitor.so",
        "app_chanspy.so",
        "res_agi.so",
        "res_speech.so",
        "codec_gsm.so",
    )
    for needed in needed_modules:
        assert needed in m["load"], needed
    assert "app_system.so" not in m["load"]


def test_pjsip_trunk_agents_and_identification() -> None:
    text = render_pbx_config(params(sip_port=15060))["pjsip.conf"]
    transport = section(text, "transport-udp", "transport")
    assert transport["bind"] == ["127.0.0.1:15060"] and transport["protocol"] == ["udp"]
    trunk = section(text, "trunk", "endpoint")
    assert trunk["context"] == ["from-trunk"]
    assert (
        trunk["dtmf_mode"] == ["rfc4733"]
        and trunk["direct_media"] == ["no"]
        and trunk["rtp_symmetric"] == ["yes"]
    )
    assert trunk["allow"] == ["ulaw,alaw"]
    assert "auth" not in trunk
    # The trunk matches its address but never an agent phone's address:port.
    assert section(text, "trunk", "identify")["match"] == [
        "127.0.0.1",
        "!127.0.0.1:5071/32",
        "!127.0.0.1:5072/32",
    ]
    for agent_id, port in (("1001", 5071), ("1002", 5072)):
        endpoint = section(text, agent_id, "endpoint")
        assert endpoint["context"] == ["from-agents"] and endpoint["aors"] == [agent_id]
        aor = section(text, agent_id, "aor")
        assert aor["contact"] == [f"sip:agent{agent_id}@127.0.0.1:{port}"]
        assert aor["qualify_frequency"] == ["0"]
        assert section(text, agent_id, "identify")["match"] == [f"127.0.0.1:{port}/32"]


def test_dialplan_per_service_mode() -> None:
    text = render_pbx_config(params())["extensions.conf"]
    trunk = parse(text)
    from_trunk = next(settings for name, settings in trunk if name == "from-trunk")
    lines = [value for _, value in from_trunk]
    assert "8000,1,UserEvent(CallArrived,DNIS: ${EXTEN},Direction: inbound,Mode: hold)" in lines
    hold = lines[lines.index("8000,1,UserEvent(CallArrived,DNIS: ${EXTEN},Direction: inbound,Mode: hold)") :][
        :3
    ]
    assert hold[1:] == ["n,Answer()", "n,Goto(cti-wait,s,1)"]
    direct = lines[
        lines.index("8001,1,UserEvent(CallArrived,DNIS: ${EXTEN},Direction: inbound,Mode: direct)") :
    ][:4]
    assert direct[1:] == ["n,Answer()", "n,Dial(PJSIP/1001,30,r)", "n,Hangup()"]  # first agent by default
    assert "n,Dial(PJSIP/1002,30,r)" in lines  # the service's own agent
    unknown = lines[
        lines.index("_X.,1,UserEvent(CallArrived,DNIS: ${EXTEN},Direction: inbound,Mode: unknown)") :
    ][:4]
    assert unknown[1:] == ["n,Answer()", "n,Playback(ss-noservice)", "n,Hangup()"]
    wait = section(text, "cti-wait")
    assert wait["exten"] == ["s,1,UserEvent(CallPhase,Phase: waiting)"]
    # Music in slices, announcements between them, music only when the platform says so.
    assert 'n,MusicOnHold(default,${IF($["${CTI_WAIT_EVERY}" = ""]?3:${CTI_WAIT_EVERY})})' in wait["same"]
    assert wait["same"][0] == 'n(music),GotoIf($["${CTI_WAIT_EVERY}" = "0"]?forever)'
    assert "n(forever),MusicOnHold(default)" in wait["same"]
    assert "n,SayNumber(${CTI_WAIT_POSITION})" in wait["same"]
    agents = section(text, "cti-agents")
    guard = 'GotoIf($["${CTI_SAFE_HARBOR}" = "1"]?cti-campaign-abandon,s,1)'
    assert agents["exten"] == [f"1001,1,{guard}", f"1002,1,{guard}"]
    assert "n,Dial(PJSIP/1001,30,r)" in agents["same"] and "n,Dial(PJSIP/1002,30,r)" in agents["same"]


def test_campaign_dialplan_amd_and_safe_harbor() -> None:
    """An answered campaign call: AMD when the campaign asks for it; a machine ends with cause 127
    (after the campaign's message when its policy leaves one); a person waits in line 2 s, then the
    deadline is marked before the safe-harbor message, and a redirect to an agent that lands after
    the mark goes back to the message without ringing anyone."""
    files = render_pbx_config(params())
    text = files["extensions.conf"]
    campaign = section(text, "cti-campaign")
    assert campaign["exten"] == [
        "s,1,UserEvent(CallArrived,DNIS: ${CTI_SERVICE},Direction: outbound,Mode: campaign)"
    ]
    steps = campaign["same"]
    assert steps[:4] == [
        'n,GotoIf($["${CTI_AMD}" != "1"]?person)',
        "n,AMD()",
        "n,UserEvent(CampaignAmd,Status: ${AMDSTATUS},Cause: ${AMDCAUSE})",
        'n,GotoIf($["${AMDSTATUS}" = "MACHINE"]?machine)',
    ]
    person = steps.index("n(person),UserEvent(CallPhase,Phase: waiting)")
    assert steps[person + 1 : person + 4] == [
        "n,Wait(2)",
        "n,Set(CTI_SAFE_HARBOR=1)",
        "n,Goto(cti-campaign-abandon,s,1)",
    ]
    assert "n,Playback(${CTI_MACHINE_SOUND})" in steps and steps[-1] == "n(end),Hangup(127)"
    abandon = section(text, "cti-campaign-abandon")
    assert abandon["exten"] == ["s,1,Set(CTI_SAFE_HARBOR=1)"]
    assert "n,Playback(${CTI_SAFE_HARBOR_SOUND})" in abandon["same"]
    agents = section(text, "cti-agents")
    # A campaign call the agent did not answer is not put back to wait: it gets the message.
    assert 'n,GotoIf($["${CTI_CAMPAIGN}" != ""]?cti-campaign-abandon,s,1)' in agents["same"]
    assert "load => app_amd.so" in files["modules.conf"].splitlines()
    amd = section(files["amd.conf"], "general")
    assert amd["greeting"] == ["1500"] and amd["after_greeting_silence"] == ["800"]


def test_manager_least_privilege_and_filters() -> None:
    text = render_pbx_config(params(ami_port=15038))["manager.conf"]
    general = section(text, "general")
    assert general["bindaddr"] == ["127.0.0.1"] and general["port"] == ["15038"]
    assert general["displayconnects"] == ["no"] and general["timestampevents"] == ["no"]
    user = section(text, "cti")
    assert user["secret"] == [SECRET]
    assert user["deny"] == ["0.0.0.0/0.0.0.0"] and user["permit"] == ["127.0.0.1/255.255.255.255"]
    read = set(user["read"][0].split(","))
    write = set(user["write"][0].split(","))
    assert read == {"system", "call", "agent", "user", "dtmf"}
    assert {"command", "config", "all"}.isdisjoint(read | write)
    assert {"call", "originate", "reporting"} <= write
    filters = [key for key in user if key.startswith("eventfilter")]
    assert filters == ["eventfilter(action(exclude),name(Newexten))"]
    disabled = general["disabledevents"][0].split(",")
    assert disabled == list(AMI_DISABLED_EVENTS)
    assert {"VarSet", "RTCPSent", "RTCPReceived", "DTMFBegin", "TestEvent"} <= set(disabled)
    capture = section(text, "cti-capture")
    assert capture["read"] == ["all"] and capture["write"] == [""]


def test_stasis_never_builds_the_messages_behind_the_disabled_events() -> None:
    text = render_pbx_config(params())["stasis.conf"]
    declined = section(text, "declined_message_types")["decline"]
    assert declined == list(STASIS_DECLINED_MESSAGES)
    assert "ast_channel_varset_type" in declined
    # The manager routes these by type and does not start if one is declined.
    assert not {
        "ast_channel_dtmf_begin_type",
        "ast_channel_dtmf_end_type",
        "ast_channel_hangup_request_type",
    } & set(declined)
    assert "threadpool" in re.findall(r"^\[(\w+)\]", text, re.M)


def test_no_event_anyone_here_reads_is_disabled() -> None:
    # The call model's events, the replies of the list actions it runs, and what the tests and
    # benchmarks follow calls by (dialplan steps, ring state, AGI starts, app_queue's joins).
    read_elsewhere = {
        "Newexten", "DialState", "AGIExecStart", "QueueCallerJoin", "MusicOnHoldStart",
        "MusicOnHoldStop", "OriginateResponse", "DTMFEnd", "CoreShowChannelsComplete",
    }  # fmt: skip
    assert set(AMI_DISABLED_EVENTS).isdisjoint(EVENT_NAMES | read_elsewhere)


def test_capture_user_only_when_asked() -> None:
    text = render_pbx_config(params(capture_user=False, capture_secret=None))["manager.conf"]
    assert "[cti-capture]" not in text
    assert CAPTURE_SECRET not in text


def test_secrets_appear_only_in_manager_conf() -> None:
    for name, text in render_pbx_config(params()).items():
        if name == "manager.conf":
            assert text.count(SECRET) == 1 and text.count(CAPTURE_SECRET) == 1
        else:
            assert SECRET not in text and CAPTURE_SECRET not in text, name


def test_rtp_range_and_no_hard_coded_ports() -> None:
    p = params(
        sip_port=25060,
        ami_port=25038,
        rtp_start=31000,
        rtp_end=31999,
        agents=(Agent("1001", 25071),),
        services=(Service("8000", "hold"),),
    )
    files = render_pbx_config(p)
    rtp = section(files["rtp.conf"], "general")
    assert (rtp["rtpstart"], rtp["rtpend"]) == (["31000"], ["31999"])
    everything = "\n".join(files.values())
    for default in ("5060", "5038", "5071", "20000"):
        assert not re.search(rf"\b{default}\b", everything), default


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("CR in the secret", {"ami_secret": "abcdefgh\rAction: Command"}, "ami_secret"),
    ("LF in the secret", {"ami_secret": "abcdefgh\nread = all"}, "ami_secret"),
    ("NUL in the username", {"ami_username": "cti\0"}, "ami_username"),
    ("';' in the secret", {"ami_secret": "abcdefgh;x"}, "ami_secret"),
    ("',' in the secret", {"ami_secret": "abcdefgh,x"}, "ami_secret"),
    ("space in the secret", {"ami_secret": "abcd efgh"}, "ami_secret"),
    ("short secret", {"ami_secret": "abc"}, "ami_secret"),
    ("';' in the username", {"ami_username": "cti;x"}, "ami_username"),
    ("'[' in the username", {"ami_username": "cti]\n[admin"}, "ami_username"),
    ("']' in the username", {"ami_username": "a]b"}, "ami_username"),
    ("non-digit DNIS", {"services": (Service("80a0", "hold"),)}, "dnis"),
    ("DNIS with a comma", {"services": (Service("8000,1", "hold"),)}, "dnis"),
    ("DNIS with LF", {"services": (Service("8000\n", "hold"),)}, "dnis"),
    ("empty DNIS", {"services": (Service("", "hold"),)}, "dnis"),
    ("unknown mode", {"services": (Service("8000", "conference"),)}, "mode"),  # type: ignore[arg-type]
    ("duplicate DNIS", {"services": (Service("8000", "hold"), Service("8000", "direct"))}, "DNIS"),
    ("direct without agents", {"agents": (), "services": (Service("8001", "direct"),)}, "no agents"),
    ("direct to a stranger", {"services": (Service("8001", "direct", agent="9999"),)}, "not among"),
    ("hold with an agent", {"services": (Service("8000", "hold", agent="1001"),)}, "dials no agent"),
    ("DNIS equals an agent id", {"services": (Service("1001", "hold"),)}, "agent id"),
    ("non-digit agent id", {"agents": (Agent("agent1", 5071),)}, "agents[0].id"),
    ("agent id with ']'", {"agents": (Agent("1001]", 5071),)}, "agents[0].id"),
    ("duplicate agent", {"agents": (Agent("1001", 5071), Agent("1001", 5072))}, "unique"),
    ("two agents one port", {"agents": (Agent("1001", 5071), Agent("1002", 5071))}, "unique"),
    ("agent on the PBX port", {"agents": (Agent("1001", 5060),)}, "own SIP port"),
    ("host name for SIP", {"sip_host": "localhost"}, "sip_host"),
    ("IPv6 SIP host", {"sip_host": "::1"}, "sip_host"),
    ("port zero", {"sip_port": 0}, "sip_port"),
    ("port too high", {"ami_port": 70000}, "ami_port"),
    ("bool as a port", {"ami_port": True}, "ami_port"),
    ("inverted RTP range", {"rtp_start": 21000, "rtp_end": 20000}, "rtp_start"),
    ("trunk match with a comma", {"trunk_match": "127.0.0.1,10.0.0.1"}, "trunk_match"),
    ("trunk match with LF", {"trunk_match": "127.0.0.1\nmatch=0.0.0.0/0"}, "trunk_match"),
    ("trunk match host name", {"trunk_match": "pbx.example.com"}, "trunk_match"),
    ("relative directory", {"dirs": dataclasses.replace(DIRS, etc="srv/etc")}, "dirs.etc"),
    ("';' in a directory", {"dirs": dataclasses.replace(DIRS, log="/srv/log;x")}, "dirs.log"),
    ("space in a directory", {"dirs": dataclasses.replace(DIRS, log="/srv/my log")}, "dirs.log"),
    ("capture without a secret", {"capture_secret": None}, "capture_secret"),
    ("capture named like the user", {"capture_username": "cti"}, "capture_username"),
    ("LF in the capture secret", {"capture_secret": "abcdefgh\nread=all"}, "capture_secret"),
    ("dial timeout zero", {"dial_timeout": 0}, "dial_timeout"),
    ("permit with LF", {"ami_permit": ("127.0.0.1/255.255.255.255\npermit=0.0.0.0/0",)}, "ami_permit"),
]


@pytest.mark.parametrize(("changes", "field"), [pytest.param(c, f, id=i) for i, c, f in BAD])
def test_unsafe_values_are_refused(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        render_pbx_config(params(**changes))


def test_wiring_from_settings_matches_the_settings() -> None:
    settings = Settings(
        sandbox={
            "sip_port": 15060,
            "agent_count": 3,
            "agent_base_port": 15071,
            "rtp_start": 30000,
            "rtp_end": 30999,
        },
        ami={"port": 15038, "username": "cti"},
    )
    agents = sandbox_agents(settings)
    assert agents == (Agent("1001", 15071), Agent("1002", 15072), Agent("1003", 15073))
    p = params_from_settings(
        settings,
        dirs=dataclasses.asdict(DIRS),
        ami_secret=SECRET,
        services=[("8000", "hold")],
        capture_secret=CAPTURE_SECRET,
    )
    assert (p.sip_port, p.ami_port, p.rtp_start, p.rtp_end) == (15060, 15038, 30000, 30999)
    # Every service is recorded unless the settings say otherwise (recordings.policy = "all").
    assert p.services == (Service("8000", "hold", record_percent=100),)
    assert p.capture_user and p.capture_username == "cti-capture"
    assert "[cti-capture]" in render_pbx_config(p)["manager.conf"]


def test_ivr_service_runs_fastagi_and_falls_back_without_it() -> None:
    ivr = (Service("8002", "ivr"), Service("8003", "ivr", fallback="voicemail"))
    text = render_pbx_config(params(services=ivr, agi_port=14773))["extensions.conf"]
    lines = [value for name, settings in parse(text) if name == "from-trunk" for _, value in settings]
    first = lines.index("8002,1,UserEvent(CallArrived,DNIS: ${EXTEN},Direction: inbound,Mode: ivr)")
    assert lines[first + 1 : first + 11] == [
        "n,Answer()",
        "n,UserEvent(CallPhase,Phase: in_ivr)",
        "n,Set(CTI_IVR_NEXT=)",
        "n,AGI(agi://127.0.0.1:14773/ivr)",
        'n,GotoIf($["${AGISTATUS}" = "HANGUP"]?gone)',
        'n,GotoIf($["${CTI_IVR_NEXT}" = "hangup"]?gone)',
        'n,GotoIf($["${CTI_IVR_NEXT}" = "wait"]?cti-wait,s,1)',
        "n,UserEvent(IvrFallback,DNIS: ${EXTEN},Status: ${AGISTATUS})",
        "n,Goto(cti-ivr-fallback,wait,1)",
        "n(gone),Hangup()",
    ]
    assert "n,Goto(cti-ivr-fallback,voicemail,1)" in lines
    fallback = section(text, "cti-ivr-fallback")
    assert fallback["exten"] == ["wait,1,Goto(cti-wait,s,1)", "voicemail,1,Playback(vm-intro)"]
    assert "n,Record(/var/spool/asterisk/ivr-voicemail/fallback-${UNIQUEID}.wav,3,180,k)" in fallback["same"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"agi_host": "localhost"}, "agi_host"),
        ({"agi_port": 0}, "agi_port"),
        ({"ivr_voicemail_dir": "/tmp/a;b"}, "ivr_voicemail_dir"),
        ({"services": (Service("8002", "ivr", fallback="queue"),)}, "fallback"),  # type: ignore[arg-type]
        ({"services": (Service("8002", "ivr", agent="1001"),)}, "dials no agent"),
    ],
)
def test_unsafe_ivr_values_are_refused(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        render_pbx_config(params(**changes))


def test_wiring_passes_the_fastagi_address_and_the_voicemail_folder() -> None:
    settings = Settings(ivr={"agi_host": "0.0.0.0", "agi_port": 14999})
    p = params_from_settings(settings, dirs=dataclasses.asdict(DIRS), ami_secret=SECRET, services=[])
    assert (p.agi_host, p.agi_port) == ("127.0.0.1", 14999)
    assert p.ivr_voicemail_dir == "/srv/cti/spool/ivr-voicemail"


def test_call_control_contexts_and_the_outside_phone() -> None:
    files = render_pbx_config(params(outside_port=5069, dial_timeout=12))
    text = files["extensions.conf"]
    assert section(text, "cti-hold")["exten"] == ["s,1,MusicOnHold(default)"]
    assert section(text, "cti-hold")["same"] == ["n,Hangup()"]
    assert section(text, "cti-hold-agent")["exten"] == ["s,1,Wait(86400)"]
    transfer = section(text, "cti-transfer")
    assert transfer["exten"] == [f"{a},1,UserEvent(CallPhase,Phase: waiting)" for a in ("1001", "1002")]
    assert transfer["same"] == ["n,Goto(cti-agents,1001,1)", "n,Goto(cti-agents,1002,1)"]
    assert section(text, "cti-consult")["exten"] == [f"{a},1,Dial(PJSIP/{a},12,g)" for a in ("1001", "1002")]
    assert section(text, "cti-outside")["exten"] == ["_X.,1,Dial(PJSIP/${FILTER(0-9,${EXTEN})}@outside,12)"]
    pjsip = files["pjsip.conf"]
    assert section(pjsip, "outside", "aor")["contact"] == ["sip:outside@127.0.0.1:5069"]
    assert "!127.0.0.1:5069/32" in section(pjsip, "trunk", "identify")["match"]
    # Without an outside phone, outside transfers reach no one: no endpoint, a "not in service" message.
    bare = render_pbx_config(params())
    assert section(bare["extensions.conf"], "cti-outside")["exten"] == ["_X.,1,Playback(ss-noservice)"]
    assert "[outside]" not in bare["pjsip.conf"]
    with pytest.raises(ValueError, match="outside_port"):
        render_pbx_config(params(outside_port=5071))


def test_wiring_renders_the_ring_timeout_as_the_agents_dial_timeout() -> None:
    settings = Settings(routing={"ring_timeout_seconds": 17}, sandbox={"outside_port": 15069})
    p = params_from_settings(settings, dirs=dataclasses.asdict(DIRS), ami_secret=SECRET, services=[])
    assert (p.dial_timeout, p.outside_port) == (17, 15069)
    agents = section(render_pbx_config(p)["extensions.conf"], "cti-agents")
    assert "n,Dial(PJSIP/1001,17,r)" in agents["same"]


def test_without_announcements_a_caller_told_nothing_hears_music_only() -> None:
    text = render_pbx_config(params(wait_announcements=False))["extensions.conf"]
    wait = section(text, "cti-wait")
    unset_or_zero = '"${CTI_WAIT_EVERY}" = "0" | "${CTI_WAIT_EVERY}" = ""'
    assert wait["same"][0] == f"n(music),GotoIf($[{unset_or_zero}]?forever)"


def test_the_dialplan_waits_for_word_only_when_a_service_announces() -> None:
    def rendered(**routing: Any) -> bool:
        settings = Settings.model_validate({"routing": routing})
        p = params_from_settings(settings, dirs=dataclasses.asdict(DIRS), ami_secret=SECRET, services=[])
        return p.wait_announcements

    assert not rendered()
    assert not rendered(announce_services={"sales": 0})
    assert rendered(announce_every_seconds=30)
    assert rendered(announce_services={"support": 45})
