"""From the platform's settings to ``PbxConfigParams``: the one mapping the composition root and the
test support both use, so the demo and the tests render the same PBX for the same settings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from cti.settings import Settings

from .render import Agent, PbxConfigParams, PbxDirs, Service

#: Agent N (1-based) has id ``AGENT_ID_BASE + N``: 1001, 1002, ...
AGENT_ID_BASE = 1000


def sandbox_agents(settings: Settings) -> tuple[Agent, ...]:
    """The sandbox's agents: ``agent_count`` of them, agent N's phone at ``agent_base_port + N - 1``."""
    sb = settings.sandbox
    return tuple(
        Agent(id=str(AGENT_ID_BASE + n), port=sb.agent_base_port + n - 1, host=sb.sip_host)
        for n in range(1, sb.agent_count + 1)
    )


def params_from_settings(
    settings: Settings,
    *,
    dirs: Mapping[str, str],
    ami_secret: str,
    services: Iterable[Service | tuple[str, str]],
    capture_secret: str | None = None,
    verbose: int = 0,
) -> PbxConfigParams:
    """The PBX configuration for ``settings``.

    ``dirs`` are the instance's directories as Asterisk sees them (keys ``etc spool log run db cache``;
    the sandbox's ``inside_layout`` has them). ``services`` are ``Service`` values or ``(dnis, mode)``
    pairs. A ``capture_secret`` adds the read-only capture user ``<ami username>-capture``. Each
    service's recording share comes from ``settings.recordings``.
    """
    sb, ami = settings.sandbox, settings.ami
    return PbxConfigParams(
        dirs=PbxDirs(
            etc=dirs["etc"],
            spool=dirs["spool"],
            log=dirs["log"],
            run=dirs["run"],
            db=dirs["db"],
            cache=dirs["cache"],
        ),
        sip_host=sb.sip_host,
        sip_port=sb.sip_port,
        trunk_match=sb.trunk_match,
        rtp_start=sb.rtp_start,
        rtp_end=sb.rtp_end,
        ami_host=ami.host,
        ami_port=ami.port,
        ami_username=ami.username,
        ami_secret=ami_secret,
        agents=sandbox_agents(settings),
        services=tuple(
            replace(s, record_percent=settings.recordings.percent_for(s.dnis))
            for s in (s if isinstance(s, Service) else Service(s[0], s[1]) for s in services)  # type: ignore[arg-type]
        ),
        capture_user=capture_secret is not None,
        capture_username=f"{ami.username}-capture",
        capture_secret=capture_secret,
        verbose=verbose,
        # Asterisk dials the FastAGI server; one listening on every address is reached on loopback.
        agi_host="127.0.0.1" if settings.ivr.agi_host == "0.0.0.0" else settings.ivr.agi_host,  # noqa: S104
        agi_port=settings.ivr.agi_port,
        ivr_voicemail_dir=settings.ivr_dirs()[3],
        # The agents' phones ring as long as routing expects them to (its ring-no-answer timing).
        dial_timeout=max(1, round(settings.routing.ring_timeout_seconds)),
        # The announcer's rule (routing.waiting.Announcing.anywhere), read from the same settings.
        wait_announcements=settings.routing.announce_every_seconds > 0
        or any(seconds > 0 for seconds in settings.routing.announce_services.values()),
        outside_port=sb.outside_port,
        outside_host=sb.sip_host,
    )
