"""Simulated traffic for the sandbox PBX: SIPp callers (UAC) and agents' phones (UAS) as asyncio
subprocesses. The demo and the end-to-end tests both drive the PBX through these.

Every SIPp gets its own SIP port (``-p``) and media port (``-mp``) on 127.0.0.1, so many can run at
once beside the PBX; ``free_udp_port`` picks ports nobody holds.

Callers' numbers go through an injection file, their display names through the scenario itself: SIPp's
injection files split fields at every ``;`` with no escape, and a display name may well contain one
(``Robert'); DROP TABLE …``). So each caller run gets a scenario generated from the copies in
``SCENARIOS``, with a table that sets the call variable ``cname`` from the caller's index (the
injection file's second field). SIPp copies the scenario's UTF-8 bytes as they are, so Chinese names
reach Asterisk as UTF-8.

Public API: ``Caller``, ``SippResult``, ``SippProcess``, ``call``, ``start_callers``,
``start_agent_phone``, ``start_ringing_phone``, ``caller_scenario``, ``free_udp_port``, ``SCENARIOS``,
``SIPP``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

#: The SIPp scenarios, shipped with the package (package data).
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SIPP = shutil.which("sipp") or "/usr/bin/sipp"

__all__ = [
    "CUSTOMER_BEHAVIOURS",
    "SCENARIOS",
    "SIPP",
    "VOICE",
    "Caller",
    "Customers",
    "SippProcess",
    "SippResult",
    "call",
    "call_with_keys",
    "caller_scenario",
    "free_udp_port",
    "key_caller_scenario",
    "speech_pcap",
    "start_agent_phone",
    "start_callers",
    "start_customers",
    "start_ringing_phone",
]

# A display name goes into a quoted string in the From header and into a SIPp action value, where
# '[' starts a SIPp keyword; a number goes into a SIP URI and an injection field.
_CONTROL = "".join(map(chr, range(32))) + "\x7f"
_NAME_FORBIDDEN = '"\\[]' + _CONTROL
_NUMBER_FORBIDDEN = ';"<>@[]\\ ' + _CONTROL


@dataclass(frozen=True)
class Caller:
    """Who calls: the From display name (any UTF-8 but ``" \\ [ ]`` and control characters) and the
    From user part, the ANI (non-empty, no URI or injection-file delimiters)."""

    name: str
    number: str

    def __post_init__(self) -> None:
        if any(c in self.name for c in _NAME_FORBIDDEN):
            raise ValueError(f'a caller name cannot contain " \\ [ ] or control characters: {self.name!r}')
        if not self.number or any(c in self.number for c in _NUMBER_FORBIDDEN):
            raise ValueError(f"a caller number must be a non-empty URI user part: {self.number!r}")


@dataclass
class SippResult:
    """What a finished SIPp reported: exit status, its output, the final screen's call counters (``None``
    when it printed none) and the unexpected messages it logged."""

    returncode: int
    output: str
    calls_ok: int | None = None
    calls_failed: int | None = None
    errors: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass
class SippProcess:
    """A running SIPp. ``wait()`` may be awaited from several tasks at once; ``stop()`` ends it
    (idempotent) and returns what it reported."""

    proc: asyncio.subprocess.Process
    workdir: Path
    argv: list[str]
    _result: SippResult | None = field(default=None, repr=False)
    _collector: asyncio.Task[SippResult] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def done(self) -> bool:
        return self._result is not None

    def _collect(self) -> asyncio.Task[SippResult]:
        # One task reads the output and reaps the process, whoever waits: two readers of one pipe
        # would fail, and a waiter's timeout must not cancel the reading.
        if self._collector is None:
            self._collector = asyncio.ensure_future(self._communicate())
        return self._collector

    async def _communicate(self) -> SippResult:
        stdout, _ = await self.proc.communicate()
        self._result = _result(self.proc.returncode or 0, stdout, self.workdir)
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self._result

    async def wait(self, timeout: float | None = None) -> SippResult:
        """The result once SIPp has exited; ``TimeoutError`` after ``timeout`` seconds (SIPp keeps
        running)."""
        if self._result is not None:
            return self._result
        return await asyncio.wait_for(asyncio.shield(self._collect()), timeout)

    async def stop(self, grace: float = 5.0) -> SippResult:
        """End SIPp and return its result.

        SIGUSR1 first: SIPp places no new calls and exits once its calls are over. If it still runs
        after ``grace`` seconds, a second SIGUSR1 asks it to abort its calls (an agent's phone then
        exits at once); SIGKILL if it is still there one second later. SIPp 3.6 ignores the second
        SIGUSR1 once it has placed all of its ``-m`` calls, so a caller killed here may leave its
        channel in the PBX: whoever needs the PBX clean hangs those up (the demo does).
        """
        # At least a moment between the signals: two SIGUSR1 pending at once are delivered as one.
        first = max(grace, 0.2)
        for signum, timeout in ((signal.SIGUSR1, first), (signal.SIGUSR1, 1.0), (signal.SIGKILL, None)):
            if self._result is not None or self.proc.returncode is not None:
                break
            # os.kill, not Process.send_signal: that polls, and reaping the process there would leave
            # asyncio's child watcher without its exit status.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signum)
            with contextlib.suppress(TimeoutError):
                return await self.wait(timeout)
        return await self.wait()


def _result(returncode: int, stdout: bytes, workdir: Path) -> SippResult:
    text = stdout.decode("utf-8", "replace")
    screens = "".join(p.read_text(encoding="utf-8", errors="replace") for p in workdir.glob("*_screen.log"))
    ok = failed = None
    for line in (text + "\n" + screens).splitlines():
        # The final screen's counters: "Successful call | 0 | 5" and "Failed call | 0 | 0".
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 3 and parts[0].startswith("Successful call") and parts[-1].isdigit():
            ok = int(parts[-1])
        if len(parts) >= 3 and parts[0].startswith("Failed call") and parts[-1].isdigit():
            failed = int(parts[-1])
    errors = ""
    for err in workdir.glob("*_errors.log"):
        errors += err.read_text(encoding="utf-8", errors="replace")
    return SippResult(returncode, text, ok, failed, errors)


async def _spawn(argv: list[str], workdir: Path) -> SippProcess:
    # SIPp writes its screen to stdout only when it exits (with -nostdin and a pipe), so the pipe
    # cannot fill up however long it runs.
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    return SippProcess(proc, workdir, argv)


def _common(scenario: Path, port: int, media_port: int) -> list[str]:
    # The final statistics screen (-trace_screen, a file in the work directory) is how the counters
    # get read back; -trace_err keeps the unexpected messages for failure reports.
    options = f"-i 127.0.0.1 -p {port} -mi 127.0.0.1 -mp {media_port} -nostdin -trace_err -trace_screen"
    return [SIPP, "-sf", str(scenario), *options.split()]


def free_udp_port(span: int = 1, *, avoid: Container[int] = (), host: str = "127.0.0.1") -> int:
    """A port ``p`` such that ``p`` .. ``p + span - 1`` are free for UDP on ``host`` right now and none
    is in ``avoid`` (ports handed out but not bound yet, the PBX's RTP range, ...).

    SIPp's media port needs ``span=4``: it uses the ports above ``-mp`` for RTCP and video. Candidates
    come from the kernel's ephemeral range, so they stay clear of configured low ports.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
            base = int(probe.getsockname()[1])
        ports = range(base, base + span)
        if ports[-1] > 65535 or any(p in avoid for p in ports):
            continue
        held: list[socket.socket] = []
        try:
            for port in ports:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(sock)
                sock.bind((host, port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return base
    raise RuntimeError(f"no {span} consecutive free UDP ports found on {host}")


def caller_scenario(template: str, names: Sequence[str]) -> str:
    """The UAC scenario ``template`` (a file in ``SCENARIOS`` that takes the display name from
    ``[field0]`` and the number from ``[field1]``) rewritten to take the number from ``[field0]`` and
    the display name from ``names[int([field1])]``."""
    text = (SCENARIOS / template).read_text(encoding="utf-8")
    text = text.replace('"[field0]"', '"[$cname]"').replace("[field1]", "[field0]")
    text = text.replace('encoding="ISO-8859-1"', 'encoding="UTF-8"')
    table = [
        "  <nop><action>",
        '    <assignstr assign_to="cidx_text" value="[field1]"/>',
        '    <todouble assign_to="cidx" variable="cidx_text"/>',
    ]
    table += [
        f'    <test assign_to="cname{i}" variable="cidx" compare="equal" value="{i}"/>'
        for i in range(len(names))
    ]
    table.append("  </action></nop>")
    for i, name in enumerate(names):
        value = escape(name, {'"': "&quot;"})  # SIPp's XML parser decodes &amp; &lt; &gt; &quot;
        action = f'<assignstr assign_to="cname" value="{value}"/>'
        table.append(f'  <nop condexec="cname{i}"><action>{action}</action></nop>')
    start = text.index(">", text.index("<scenario")) + 1
    return text[:start] + "\n" + "\n".join(table) + text[start:]


async def start_callers(
    *,
    pbx_port: int,
    dnis: str,
    callers: Sequence[Caller],
    port: int,
    media_port: int,
    calls: int | None = None,
    hangup_after_ms: int | None = None,
    rate: float = 10.0,
    limit: int = 50,
) -> SippProcess:
    """Place ``calls`` calls (default: one per caller; callers are used in turn) to ``dnis``.

    With ``hangup_after_ms`` each caller hangs up after that long on the line (or earlier, when the
    PBX ends the call first); without, each waits (up to 120 s) until the PBX hangs up. ``rate`` is
    new calls per second, ``limit`` the most calls at once.
    """
    if not callers:
        raise ValueError("no callers")
    if not dnis.isdigit():
        raise ValueError(f"the DNIS must be digits: {dnis!r}")
    workdir = Path(tempfile.mkdtemp(prefix="sipp-uac-"))
    names = list(dict.fromkeys(c.name for c in callers))
    index = {name: i for i, name in enumerate(names)}
    inf = workdir / "callers.csv"
    lines = ["SEQUENTIAL"] + [f"{c.number};{index[c.name]};" for c in callers]
    inf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    template = "uac_hangup.xml" if hangup_after_ms is not None else "uac_wait.xml"
    scenario = workdir / template
    text = caller_scenario(template, names)
    if hangup_after_ms is not None:
        # SIPp takes no variable in a receive's timeout: the scenario is written for this run.
        text = text.replace("[hangup_ms]", str(int(hangup_after_ms)))
    scenario.write_text(text, encoding="utf-8")
    count = calls if calls is not None else len(callers)
    argv = [*_common(scenario, port, media_port), f"127.0.0.1:{pbx_port}", "-s", dnis, "-inf", str(inf)]
    argv += ["-m", str(count), "-r", str(rate), "-rp", "1000", "-l", str(limit)]
    if hangup_after_ms is not None:
        argv += ["-d", str(hangup_after_ms)]
    return await _spawn(argv, workdir)


async def call(
    *,
    pbx_port: int,
    dnis: str,
    caller: Caller,
    port: int,
    media_port: int,
    hangup_after_ms: int | None = None,
    timeout: float = 60.0,
) -> SippResult:
    """One call, to completion (stopped after ``timeout`` seconds)."""
    proc = await start_callers(
        pbx_port=pbx_port,
        dnis=dnis,
        callers=[caller],
        port=port,
        media_port=media_port,
        hangup_after_ms=hangup_after_ms,
    )
    try:
        return await proc.wait(timeout)
    except TimeoutError:
        return await proc.stop()


#: RFC 4733 digit recordings SIPp ships, one per key.
DTMF_PCAPS = Path("/usr/share/sip-tester")
_PCAP_KEYS = {**{d: d for d in "0123456789"}, "*": "star", "#": "pound"}


#: In a key caller's keys, this "key" is 7 s of the caller speaking (A-law), for a voicemail.
VOICE = "voice"


def _key_pcap(key: str, order: int, workdir: Path) -> Path:
    """SIPp's recording of ``key``, renumbered to come after the keys before it.

    SIPp's digit recordings carry fixed RTP timestamps (``0`` is older than ``2``, say), and Asterisk
    drops an RFC 4733 event older than the last one it ended: played as shipped, a ``0`` after a ``2``
    is never heard. Each key of a call gets a copy whose timestamps and sequence numbers rise with
    ``order`` (the pcap's own layout: Ethernet, IPv4, UDP, then the RTP header).
    """
    data = bytearray((DTMF_PCAPS / f"dtmf_2833_{_PCAP_KEYS[key]}.pcap").read_bytes())
    offset = 24  # the pcap file header
    while offset + 16 <= len(data):
        captured = int.from_bytes(data[offset + 8 : offset + 12], "little")
        rtp = offset + 16 + 14 + 20 + 8
        if captured >= 14 + 20 + 8 + 12:
            seq = (1000 + order * 100 + int.from_bytes(data[rtp + 2 : rtp + 4], "big") % 100) & 0xFFFF
            data[rtp + 2 : rtp + 4] = seq.to_bytes(2, "big")
            data[rtp + 4 : rtp + 8] = (100_000 + order * 16_000).to_bytes(4, "big")
        offset += 16 + captured
    path = workdir / f"key-{order:02d}-{_PCAP_KEYS[key]}.pcap"
    path.write_bytes(bytes(data))
    return path


def key_caller_scenario(
    names: Sequence[str], keys: Sequence[tuple[int, str]], hold_ms: int, workdir: Path
) -> str:
    """The ``uac_keys.xml`` caller for ``names`` pressing ``keys`` (``(pause_ms, key)`` pairs: wait,
    then press; the key ``VOICE`` speaks instead), then holding up to ``hold_ms`` for the PBX to hang
    up before hanging up itself. The keys' recordings are written into ``workdir``."""
    steps = []
    for order, (pause_ms, key) in enumerate(keys):
        if (key not in _PCAP_KEYS and key != VOICE) or pause_ms < 0:
            raise ValueError(f"a key must be one of 0-9 * # (or {VOICE!r}) after a pause >= 0: {key!r}")
        pcap = DTMF_PCAPS / "g711a.pcap" if key == VOICE else _key_pcap(key, order, workdir)
        steps.append(f'  <pause milliseconds="{int(pause_ms)}"/>')
        steps.append(f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>')
    text = caller_scenario("uac_keys.xml", names)
    return text.replace("  <!-- KEYS -->", "\n".join(steps)).replace("[hold_ms]", str(int(hold_ms)))


async def call_with_keys(
    *,
    pbx_port: int,
    dnis: str,
    caller: Caller,
    keys: Sequence[tuple[int, str]],
    port: int,
    media_port: int,
    hold_ms: int = 10_000,
) -> SippProcess:
    """Start one caller who presses ``keys`` (``(pause_ms, key)``: a pause, then the key) and then
    stays up to ``hold_ms`` on the line. ``wait()`` on the result for its end."""
    if not dnis.isdigit():
        raise ValueError(f"the DNIS must be digits: {dnis!r}")
    workdir = Path(tempfile.mkdtemp(prefix="sipp-keys-"))
    inf = workdir / "callers.csv"
    inf.write_text(f"SEQUENTIAL\n{caller.number};0;\n", encoding="utf-8")
    scenario = workdir / "uac_keys.xml"
    scenario.write_text(key_caller_scenario([caller.name], keys, hold_ms, workdir), encoding="utf-8")
    argv = [*_common(scenario, port, media_port), f"127.0.0.1:{pbx_port}", "-s", dnis, "-inf", str(inf)]
    argv += ["-m", "1"]
    return await _spawn(argv, workdir)


async def _start_phone(scenario: str, extra: list[str], port: int, media_port: int) -> SippProcess:
    workdir = Path(tempfile.mkdtemp(prefix="sipp-uas-"))
    proc = await _spawn(_common(SCENARIOS / scenario, port, media_port) + extra, workdir)
    # SIPp binds its port a moment after starting; a call placed before that would meet a closed port.
    await asyncio.sleep(0.3)
    if proc.proc.returncode is not None:
        result = await proc.wait()
        raise RuntimeError(f"the agent phone on port {port} did not start: {result.output[-2000:]}")
    return proc


async def start_agent_phone(
    *,
    port: int,
    media_port: int,
    talk_ms: int = 2000,
    calls: int | None = None,
    exponential_talk: bool = False,
) -> SippProcess:
    """An agent's auto-answering phone listening on 127.0.0.1:``port``: rings 200 ms, answers, talks
    ``talk_ms``, hangs up. Runs until ``calls`` calls are done, or until stopped.

    With ``exponential_talk`` each call's talk time is drawn by SIPp from an exponential distribution
    of mean ``talk_ms`` (the service times queueing formulas such as Erlang C assume)."""
    extra = ["-d", str(talk_ms)] + (["-m", str(calls)] if calls is not None else [])
    if not exponential_talk:
        return await _start_phone("uas_agent.xml", extra, port, media_port)
    text = (SCENARIOS / "uas_agent.xml").read_text(encoding="utf-8")
    if "<pause/>" not in text:
        raise RuntimeError("uas_agent.xml no longer has the talk pause this variant replaces")
    text = text.replace("<pause/>", f'<pause distribution="exponential" mean="{int(talk_ms)}"/>')
    fd, name = tempfile.mkstemp(prefix="sipp-uas-exp-", suffix=".xml")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    try:
        # An absolute path joined to SCENARIOS stays itself; SIPp has read it once it has started.
        return await _start_phone(name, extra, port, media_port)
    finally:
        os.unlink(name)


async def start_ringing_phone(*, port: int, media_port: int, calls: int | None = None) -> SippProcess:
    """An agent's phone on 127.0.0.1:``port`` that rings and never answers: it waits for the PBX to
    cancel each call (the caller hung up, or the dial timed out)."""
    extra = ["-m", str(calls)] if calls is not None else []
    return await _start_phone("uas_ringing.xml", extra, port, media_port)


# ------------------------------------------------------------------ campaign customers

#: The customer behaviour of a dialled number's last digit (``uas_customers.xml``).
CUSTOMER_BEHAVIOURS = {
    "1": "person",
    "2": "busy",
    "3": "no_answer",
    "4": "hangs_up",
    "5": "machine",
    "6": "person_late",
}
_SILENCE_ALAW = 0xD5  # A-law's code for zero
_PACKET_MS = 30  # SIPp's g711a.pcap carries 240 samples (30 ms) a packet


def speech_pcap(path: Path, *, voice: range, silence_ms: int) -> Path:
    """A recording for ``play_pcap_audio``: packets ``voice`` of SIPp's ``g711a.pcap`` (A-law speech,
    30 ms a packet), then ``silence_ms`` of A-law silence, renumbered to run on without a gap.

    A person's greeting (packets 50-80: 0.9 s of speech, then silence) is what AMD calls a person; a
    long one (packets 50-235, 5.5 s) what it calls a machine (``amd.conf``).
    """
    data = (DTMF_PCAPS / "g711a.pcap").read_bytes()
    header, packets = data[:24], []
    offset = 24
    while offset + 16 <= len(data):
        captured = int.from_bytes(data[offset + 8 : offset + 12], "little")
        packets.append(data[offset + 16 : offset + 16 + captured])
        offset += 16 + captured
    chosen = [packets[i] for i in voice if i < len(packets)]
    if not chosen:
        raise ValueError(f"no packets in {voice}")
    template = chosen[-1]
    rtp = 14 + 20 + 8
    silence = template[: rtp + 12] + bytes([_SILENCE_ALAW]) * (len(template) - rtp - 12)
    chosen += [silence] * (max(0, silence_ms) // _PACKET_MS)
    out = bytearray(header)
    for n, packet in enumerate(chosen):
        body = bytearray(packet)
        body[rtp + 2 : rtp + 4] = (n & 0xFFFF).to_bytes(2, "big")
        body[rtp + 4 : rtp + 8] = (n * 240).to_bytes(4, "big")
        micros = n * _PACKET_MS * 1000
        out += (micros // 1_000_000).to_bytes(4, "little") + (micros % 1_000_000).to_bytes(4, "little")
        out += len(body).to_bytes(4, "little") * 2
        out += body
    path.write_bytes(bytes(out))
    return path


@dataclass
class Customers:
    """The SIPp that answers every number a campaign dials (``uas_customers.xml``) and the log of
    the INVITEs it received, one line ``INVITE <number> for <request URI>`` each."""

    phone: SippProcess
    log: Path

    def invites(self) -> dict[str, int]:
        """How many INVITEs each number received so far."""
        counts: dict[str, int] = {}
        if not self.log.exists():
            return counts
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if "INVITE" in parts[:-1]:
                number = parts[parts.index("INVITE") + 1]
                counts[number] = counts.get(number, 0) + 1
        return counts

    async def stop(self) -> SippResult:
        return await self.phone.stop(grace=1.0)


def _customer_files(log_dir: Path) -> tuple[Path, Path]:
    log_dir.mkdir(parents=True, exist_ok=True)
    person = speech_pcap(log_dir / "person.pcap", voice=range(50, 80), silence_ms=60_000)
    machine = speech_pcap(log_dir / "machine.pcap", voice=range(50, 236), silence_ms=30_000)
    text = (SCENARIOS / "uas_customers.xml").read_text(encoding="utf-8")
    text = text.replace("[person_pcap]", str(person)).replace("[machine_pcap]", str(machine))
    scenario = log_dir / "uas_customers.xml"
    scenario.write_text(text, encoding="utf-8")
    return scenario, log_dir / "invites.log"


async def start_customers(*, port: int, media_port: int, log_dir: Path) -> Customers:
    """Campaign customers on 127.0.0.1:``port`` (the PBX's outside endpoint); behaviours by the
    dialled number's last digit (``CUSTOMER_BEHAVIOURS``). The INVITE log goes to ``log_dir``."""
    scenario, log = await asyncio.to_thread(_customer_files, log_dir)
    phone = await _start_phone(str(scenario), ["-trace_logs", "-log_file", str(log)], port, media_port)
    return Customers(phone, log)
