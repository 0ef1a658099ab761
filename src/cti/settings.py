"""The one settings model of the platform.

Values come, highest first, from ``CTI_*`` environment variables (nested with ``__``, for example
``CTI_AMI__PORT=5039``), then from a TOML file named by ``CTI_SETTINGS_FILE`` (default ``cti.toml`` in
the working directory, if present), then from the defaults here. Defaults are safe: everything listens
on loopback, secrets are generated on first use and kept in files readable by root only, and no secret
is ever rendered by ``repr`` or logged (``SecretStr``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class AmiSettings(BaseModel):
    """How the platform reaches Asterisk's manager interface."""

    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "cti"
    # When unset, the secret is read from ``secret_file`` (written by ``cti pbx up`` for the sandbox).
    secret: SecretStr | None = None
    secret_file: Path | None = None
    ping_interval: float = Field(5.0, gt=0, description="seconds between keep-alive pings")
    ping_timeout: float = Field(3.0, gt=0, description="a ping unanswered this long means Asterisk is hung")
    connect_timeout: float = Field(5.0, gt=0)
    action_timeout: float = Field(10.0, gt=0)
    reconnect_min: float = Field(0.2, gt=0, description="first reconnect delay, doubled up to reconnect_max")
    reconnect_max: float = Field(10.0, gt=0)
    max_frame_bytes: int = Field(256 * 1024, ge=1024, description="a longer AMI frame is dropped and counted")
    max_headers: int = Field(512, ge=8, description="a frame with more header lines is dropped and counted")
    event_queue_size: int = Field(
        20_000, ge=16, description="events buffered for the call model; overflow forces a resync"
    )

    def resolved_secret(self) -> SecretStr:
        """The secret from the setting, else from the secret file; a clear error if neither is there."""
        if self.secret is not None:
            return self.secret
        if self.secret_file is not None and self.secret_file.exists():
            return SecretStr(self.secret_file.read_text(encoding="utf-8").strip())
        raise RuntimeError(
            "no AMI secret: set CTI_AMI__SECRET or CTI_AMI__SECRET_FILE, or run `cti pbx up` for the sandbox"
        )


class SandboxSettings(BaseModel):
    """The local sandbox Asterisk used by the demo and the tests."""

    cache_dir: Path = Field(
        Path("/var/cache/cti-sandbox"),
        description="where Asterisk root filesystems are built and kept, outside the repository",
    )
    suite: str = "sid"
    mirror: str = "http://deb.debian.org/debian"
    asterisk_major: int = 22
    instance: str = Field("default", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    trunk_match: str = Field(
        "127.0.0.1", description="source address (optionally :port) that PJSIP treats as the trunk"
    )
    agent_count: int = Field(4, ge=0, le=500)
    agent_base_port: int = Field(5071, description="agent N's phone is expected at this port + N - 1")
    outside_port: int | None = Field(
        5069, description="the phone standing for outside numbers (transfers out); unset: none"
    )
    rtp_start: int = 20000
    rtp_end: int = 20999
    boot_timeout: float = 60.0


class HttpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    allowed_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8080", "http://localhost:8080"]
    )


class AuthSettings(BaseModel):
    token_secret: SecretStr | None = None
    token_secret_file: Path | None = None
    token_ttl_seconds: int = Field(8 * 3600, gt=0)


class IvrSettings(BaseModel):
    """The IVR: the FastAGI server Asterisk calls, the flow files, and where sounds and voicemails live.

    Asterisk and the platform may see one folder under two names (the sandbox bind-mounts its instance
    directory at ``/srv/cti`` inside its chroot), so each shared folder has a platform-side path and a
    PBX-side path. Unset, both default to the sandbox instance's folders.
    """

    enabled: bool = Field(True, description="run the FastAGI server with `cti serve`")
    agi_host: str = Field("127.0.0.1", description="where the FastAGI server listens")
    agi_port: int = Field(4573, ge=1, le=65535)
    flows_dir: Path | None = Field(None, description="folder of flow YAML files; default: the example flows")
    recordings_dir: Path | None = Field(None, description="uploaded recordings that flows refer to")
    sounds_dir: Path | None = Field(None, description="built prompts, as the platform writes them")
    pbx_sounds_dir: str | None = Field(None, description="the same folder as Asterisk reads it")
    voicemail_dir: Path | None = Field(None, description="recorded voicemails, as the platform reads them")
    pbx_voicemail_dir: str | None = Field(None, description="the same folder as Asterisk writes it")
    build_prompts_on_start: bool = Field(True, description="build missing prompt sounds when serving starts")
    voicemail_format: str = Field("mp3", pattern=r"^(mp3|ogg)$", description="the console's compressed copy")
    step_timeout_seconds: float = Field(
        4.0, gt=0, le=60, description="deadline of an IVR lookup or booking (then: the fallback)"
    )
    max_upload_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="largest recorded prompt (WAV or MP3) accepted for upload"
    )


class RoutingSettings(BaseModel):
    """Skills-based routing: where its live state is kept and its default timings."""

    redis_url: str | None = Field(
        None, description="share agents' states and waiting calls through Redis; unset: in this process"
    )
    redis_prefix: str = Field("cti:routing", pattern=r"^[A-Za-z0-9:_-]{1,64}$")
    default_wrap_up_seconds: int = Field(
        10, ge=0, le=3600, description="after-call work for services without their own routing"
    )
    ring_timeout_seconds: float = Field(
        30.0, gt=0, description="how long an agent's phone rings before the PBX gives up (the dial timeout)"
    )
    connect_grace_seconds: float = Field(
        10.0, gt=0, description="a redirect with no ring at the agent after this long is given up"
    )
    announce_every_seconds: int = Field(
        0, ge=0, le=3600, description="position and expected-wait announcements every N s (10+); 0: off"
    )
    announce_services: dict[str, int] = Field(
        default_factory=dict,
        description="per service name: announcement interval (0: off), overriding the default",
    )
    default_handle_seconds: float = Field(
        180.0, gt=0, description="handle time assumed for expected waits until a service has handled calls"
    )
    callback_endpoint: str = Field(
        "outside", pattern=r"^[A-Za-z0-9_-]{1,40}$", description="PJSIP endpoint queue callbacks dial out on"
    )
    callback_max_attempts: int = Field(
        3, ge=1, le=10, description="dials of one queue callback before it fails"
    )
    callback_retry_seconds: float = Field(
        30.0, gt=0, description="wait before dialling an unanswered callback again"
    )
    callback_dial_ahead_seconds: float = Field(
        0.0,
        ge=0,
        le=120,
        description="dial a queue callback this long before its agent's wrap-up ends (0: when free)",
    )
    callback_dial_ahead_services: dict[str, Annotated[float, Field(ge=0, le=120)]] = Field(
        default_factory=dict,
        description="per service name: the dial-ahead time of its callbacks, overriding the default",
    )


_RECORDING_POLICY = r"^(all|none|(100|[1-9]?[0-9])%)$"


class RecordingSettings(BaseModel):
    """Call recording: which services' calls the PBX records, where the files are, how long they stay.

    A policy is ``all``, ``none`` or a percentage such as ``25%``; ``services`` gives a dialled
    service (its DNIS) its own policy, the rest follow ``policy``. Policies are rendered into the
    PBX's dialplan (``cti pbx up``), so a change takes effect with the next rendering.
    """

    policy: str = Field("all", pattern=_RECORDING_POLICY, description="the policy of every other service")
    services: dict[str, str] = Field(
        default_factory=dict, description="DNIS -> policy, for services with their own policy"
    )
    monitor_dir: Path | None = Field(
        None, description="the PBX's monitor folder as the platform reads it; default: the sandbox's"
    )
    retention_days: int = Field(90, ge=1, le=36500, description="recordings older than this are purged")
    purge_interval_seconds: float = Field(3600.0, gt=0, description="how often `cti serve` purges")
    pause_confirm_seconds: float = Field(
        3.0, gt=0, le=30, description="how long a pause or resume waits for Asterisk to confirm it"
    )
    compressed_format: str = Field("mp3", pattern=r"^(mp3|ogg)$", description="the console's playback copy")

    @field_validator("services")
    @classmethod
    def _service_policies(cls, value: dict[str, str]) -> dict[str, str]:
        import re

        for dnis, policy in value.items():
            if not re.fullmatch(r"[0-9]{1,32}", dnis) or not re.fullmatch(_RECORDING_POLICY, policy):
                raise ValueError(f"recording policy {dnis!r}: {policy!r} (a DNIS and all, none or N%)")
        return value

    def percent_for(self, dnis: str) -> int:
        """The share (0..100) of the calls to ``dnis`` the PBX records."""
        policy = self.services.get(dnis, self.policy)
        return 100 if policy == "all" else 0 if policy == "none" else int(policy[:-1])


class ConsoleSettings(BaseModel):
    """The agent console and the supervisor's wallboard."""

    crm_pop_urls: dict[str, str] = Field(
        default_factory=dict,
        description="service name -> URL template (sandboxed jinja2) of an external CRM page opened beside "
        "the console on a pop, e.g. https://crm.example/search?phone={{ ani_e164 | urlencode }}",
    )
    dispositions: list[str] = Field(
        default_factory=lambda: ["resolved", "follow_up", "escalated", "wrong_number", "no_action"],
        description="the disposition codes an agent picks from",
    )
    alert_longest_wait_seconds: float = Field(60.0, gt=0, description="wallboard alert: a wait longer")
    alert_service_level: float = Field(0.8, ge=0, le=1, description="wallboard alert: level below")


class Settings(BaseSettings):
    """Everything the platform can be told. See docs/operations.md for each value."""

    model_config = SettingsConfigDict(env_prefix="CTI_", env_nested_delimiter="__", extra="forbid")

    pbx_id: str = Field("pbx1", pattern=r"^[A-Za-z0-9_-]{1,32}$", description="names this Asterisk")
    default_region: str = Field("US", description="region for numbers dialled without a country code")
    state_dir: Path = Field(Path("var"), description="runtime files: database, secrets, spool")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in state_dir")
    wrap_up_seconds: float = Field(0.0, ge=0, description="default after-call work before a call is closed")
    ami: AmiSettings = Field(default_factory=AmiSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    ivr: IvrSettings = Field(default_factory=IvrSettings)
    recordings: RecordingSettings = Field(default_factory=RecordingSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)

    @field_validator("default_region")
    @classmethod
    def _region_upper(cls, value: str) -> str:
        return value.upper()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("CTI_SETTINGS_FILE", "cti.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file))

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.state_dir / 'cti.sqlite3').resolve()}"

    def instance_dir(self) -> Path:
        """Where the sandbox instance keeps its rendered config, secrets, spool and logs."""
        return self.sandbox.cache_dir / "instances" / self.sandbox.instance

    def ivr_recordings_dir(self) -> Path:
        """Recorded prompts (uploads, converted) that flows name as ``{file: ...}``: the setting, else
        the sandbox instance's ``ivr-recordings``."""
        return self.ivr.recordings_dir or self.instance_dir() / "ivr-recordings"

    def ivr_dirs(self) -> tuple[Path, str, Path, str]:
        """``(sounds, pbx sounds, voicemail, pbx voicemail)``: the IVR's shared folders on each side,
        defaulting to the sandbox instance's ``sounds/ivr`` and ``spool/ivr-voicemail``."""
        ivr, inside = self.ivr, "/srv/cti"
        sounds = ivr.sounds_dir or self.instance_dir() / "sounds" / "ivr"
        pbx_sounds = ivr.pbx_sounds_dir or (
            f"{inside}/sounds/ivr" if ivr.sounds_dir is None else str(ivr.sounds_dir)
        )
        voicemail = ivr.voicemail_dir or self.instance_dir() / "spool" / "ivr-voicemail"
        pbx_voicemail = ivr.pbx_voicemail_dir or (
            f"{inside}/spool/ivr-voicemail" if ivr.voicemail_dir is None else str(ivr.voicemail_dir)
        )
        return sounds, pbx_sounds, voicemail, pbx_voicemail

    def monitor_dir(self) -> Path:
        """The PBX's monitor folder (recordings) as the platform reads it: the setting, else the
        sandbox instance's ``spool/monitor``."""
        return self.recordings.monitor_dir or self.instance_dir() / "spool" / "monitor"

    def effective_ami(self) -> AmiSettings:
        """The AMI settings, with the sandbox instance's generated secret file as the default secret."""
        if self.ami.secret is None and self.ami.secret_file is None:
            return self.ami.model_copy(update={"secret_file": self.instance_dir() / "ami.secret"})
        return self.ami


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
