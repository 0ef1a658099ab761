"""The ``cti`` command: ``pbx up|down|status|restart``, ``serve``, ``demo``, ``users add``, ``db upgrade``.

Settings come from ``CTI_*`` environment variables and ``cti.toml`` (see docs/operations.md).
Exit codes: 0 success, 1 a clear failure (the message says what and what to do), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import signal
import sys
from collections.abc import Sequence

from cti.settings import Settings

log = logging.getLogger("cti")


def _progress(line: str) -> None:
    print(f"  {line}", flush=True)


def _settings() -> Settings:
    return Settings()


# ---------------------------------------------------------------------- pbx


def pbx_files(settings: Settings) -> dict[str, str]:
    """Render the sandbox's Asterisk configuration for ``settings`` (secrets generated on first use)."""
    from dialplans.render import render_pbx_config
    from dialplans.wiring import params_from_settings
    from sandbox.service import Sandbox

    box = Sandbox(settings)
    capture = box.ensure_secret("capture") if os.environ.get("CTI_SANDBOX_CAPTURE_USER") == "1" else None
    params = params_from_settings(
        settings,
        dirs=box.inside_layout.asterisk_dirs(),
        ami_secret=box.ensure_secret("ami"),
        services=DEMO_SERVICES,
        capture_secret=capture,
    )
    return render_pbx_config(params)


# The sandbox's dialled numbers: 8001 support and 8002 sales wait on hold (routing picks agents in a
# later issue); 8009 rings agent 1001 directly.
# 4008001234 (the support hotline, Mandarin first) and 18005550100 (the sales line) run the example
# IVR flows (ivr/flows).
DEMO_SERVICES: tuple[tuple[str, str], ...] = (
    ("8001", "hold"), ("8002", "hold"), ("8009", "direct"), ("4008001234", "ivr"), ("18005550100", "ivr")
)  # fmt: skip


async def _pbx(args: argparse.Namespace) -> int:
    from sandbox.model import SandboxError
    from sandbox.service import Sandbox

    settings = _settings()
    box = Sandbox(settings)
    try:
        if args.pbx_command == "up":
            print(f"sandbox PBX '{settings.sandbox.instance}': starting")
            status = await box.up(pbx_files(settings), _progress)
        elif args.pbx_command == "restart":
            await box.down(_progress)
            status = await box.up(pbx_files(settings), _progress)
        elif args.pbx_command == "down":
            stopped = await box.down(_progress)
            print("sandbox PBX stopped" if stopped else "sandbox PBX was not running")
            return 0
        else:
            status = box.status()
    except SandboxError as exc:
        print(f"cti pbx {args.pbx_command}: {exc}", file=sys.stderr)
        return 1
    print(status.describe())
    return 0 if status.running or args.pbx_command == "status" else 1


# ---------------------------------------------------------------------- serve


async def _serve(settings: Settings) -> int:
    from app.compose import Platform

    platform = Platform(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, platform.stop)
    print(
        f"platform serving on http://{settings.http.host}:{settings.http.port} (pbx {settings.pbx_id})",
        flush=True,
    )
    await platform.run()
    return 0


# ---------------------------------------------------------------------- users


async def _users_add(args: argparse.Namespace) -> int:
    from crm import db as crm_db
    from crm.service import Conflict, CrmError, add_user

    settings = _settings()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.username}: ")
    if len(password) < 8:
        print("cti users add: the password needs at least 8 characters", file=sys.stderr)
        return 1
    url = settings.resolved_database_url()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    await crm_db.migrate_async(url)
    engine = crm_db.make_engine(url)
    try:
        user = await add_user(
            crm_db.make_sessionmaker(engine),
            args.username,
            password,
            args.role,
            display_name=args.display_name or "",
        )
    except Conflict:
        print(f"cti users add: a user named {args.username!r} exists already", file=sys.stderr)
        return 1
    except CrmError as exc:
        print(f"cti users add: {exc}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()
    print(f"added {user.role} {user.username}")
    return 0


async def _db_upgrade() -> int:
    from crm import db as crm_db

    settings = _settings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    await crm_db.migrate_async(settings.resolved_database_url())
    print("database is at the newest schema")
    return 0


# ---------------------------------------------------------------------- prompts


def _prompts(args: argparse.Namespace) -> int:
    """``cti prompts build`` (validate flows, build changed prompts) and ``cti prompts import``."""
    from pathlib import Path

    from ivr.commands import build_prompts, import_prompt

    settings = _settings()
    sounds = settings.ivr_dirs()[0]
    recordings = settings.ivr_recordings_dir()

    def out(line: str) -> None:
        print(line, flush=True)

    if args.prompts_command == "build":
        flows = Path(args.flows) if args.flows else settings.ivr.flows_dir
        return build_prompts(flows, sounds, recordings, out)
    return import_prompt(Path(args.file), args.name, recordings, sounds, out, settings.ivr.max_upload_bytes)


async def _recordings_purge() -> int:
    """Delete the recordings past their retention now (``cti serve`` also does it periodically)."""
    from app.recordings_wiring import purge
    from crm import db as crm_db

    settings = _settings()
    url = settings.resolved_database_url()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    await crm_db.migrate_async(url)
    engine = crm_db.make_engine(url)
    try:
        result = await purge(settings, crm_db.make_sessionmaker(engine))
    finally:
        await engine.dispose()
    days = settings.recordings.retention_days
    print(f"purged {result.rows} recordings older than {days} days ({result.files} files deleted)")
    return 0


# ---------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cti", description="Contact center platform beside Asterisk.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", required=True)
    pbx = sub.add_parser("pbx", help="the local sandbox Asterisk")
    pbx.add_argument("pbx_command", choices=["up", "down", "status", "restart"])
    sub.add_parser("serve", help="run the platform")
    demo = sub.add_parser("demo", help="sandbox + platform + demo data + simulated callers")
    demo.add_argument("--calls-per-minute", type=float, default=6.0)
    demo.add_argument("--duration", type=float, default=0, help="seconds to run (0: until Ctrl-C)")
    users = sub.add_parser("users", help="platform users")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser("add", help="add a user")
    add.add_argument("username")
    add.add_argument("--role", choices=["agent", "supervisor", "admin"], required=True)
    add.add_argument("--display-name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    db = sub.add_parser("db", help="the database")
    db.add_argument("db_command", choices=["upgrade"])
    recordings = sub.add_parser("recordings", help="call recordings")
    recordings.add_argument("recordings_command", choices=["purge"], help="delete those past retention")
    prompts = sub.add_parser("prompts", help="the IVR's prompt sounds")
    prompts_sub = prompts.add_subparsers(dest="prompts_command", required=True)
    build = prompts_sub.add_parser("build", help="check the flows, build prompts whose text changed")
    build.add_argument("--flows", help="folder of flow files (default: the ivr.flows_dir setting)")
    imp = prompts_sub.add_parser("import", help="convert a WAV or MP3 into a recorded prompt")
    imp.add_argument("file", help="the WAV or MP3 file")
    imp.add_argument("--name", required=True, help="the recording's name (flows use {file: NAME.wav})")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Alembic announces its plugins and every migration step at INFO on every start.
    logging.getLogger("alembic").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    if args.command == "pbx":
        code = asyncio.run(_pbx(args))
    elif args.command == "serve":
        code = asyncio.run(_serve(_settings()))
    elif args.command == "demo":
        from app.demo import run_demo

        code = asyncio.run(
            run_demo(_settings(), calls_per_minute=args.calls_per_minute, duration=args.duration)
        )
    elif args.command == "users":
        code = asyncio.run(_users_add(args))
    elif args.command == "recordings":
        code = asyncio.run(_recordings_purge())
    elif args.command == "prompts":
        code = _prompts(args)
    else:
        code = asyncio.run(_db_upgrade())
    raise SystemExit(code)
