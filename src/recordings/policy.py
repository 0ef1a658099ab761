"""Which calls are recorded, what their files are called, and when they expire. Pure: no I/O, no clock.

A service's recording policy is ``all``, ``none`` or a percentage (``"25%"``). The PBX applies it
itself: the dialplan is rendered with the service's percentage, and a call is recorded when the
sequence number of its Linkedid (the part after the last ``.``, a counter Asterisk increments for
every channel) modulo 100 is below that percentage. ``selects`` is the same rule in Python, so the
platform (and its tests) can tell which calls the PBX records. The counter advances by the number
of channels each call uses (two or three), so over many calls the share recorded is close to the
percentage, and no random number is involved: the same call is always decided the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

#: A Linkedid as Asterisk makes one: ``<epoch>.<sequence>``, optionally prefixed by the system name.
#: Letters, digits, ``_ . -`` only, so a file named after it can never leave its folder.
_LINKEDID: Final = re.compile(r"^[A-Za-z0-9_-]{0,32}[0-9]{1,20}\.[0-9]{1,20}$")
_POLICY: Final = re.compile(r"^(all|none|(100|[1-9]?[0-9])%)$")

#: The file format Asterisk's MixMonitor writes (``<linkedid>.wav`` in its monitor folder).
RECORDING_SUFFIX: Final = ".wav"


@dataclass(frozen=True, slots=True)
class RecordingPolicy:
    """A service's recording policy: the share of its calls recorded, 0 to 100 percent."""

    percent: int

    def __post_init__(self) -> None:
        percent = self.percent
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise ValueError(f"a recording percentage is 0 to 100: {self.percent!r}")

    def __str__(self) -> str:
        if self.percent == 100:
            return "all"
        return "none" if self.percent == 0 else f"{self.percent}%"


RECORD_ALL: Final = RecordingPolicy(100)
RECORD_NONE: Final = RecordingPolicy(0)


def parse_policy(text: str) -> RecordingPolicy:
    """``"all"``, ``"none"`` or ``"0%"``..``"100%"``; ``ValueError`` for anything else."""
    if not isinstance(text, str) or not _POLICY.fullmatch(text):
        raise ValueError(f"a recording policy is 'all', 'none' or a percentage such as '25%': {text!r}")
    if text == "all":
        return RECORD_ALL
    if text == "none":
        return RECORD_NONE
    return RecordingPolicy(int(text[:-1]))


def check_linkedid(linkedid: str) -> str:
    """``linkedid`` if it is a Linkedid as Asterisk makes them; ``ValueError`` otherwise.

    Every file name and every value the platform sends to Asterisk about a recording goes through
    this: no path separators, no ``..``, no CR, LF or NUL can pass.
    """
    if not isinstance(linkedid, str) or not _LINKEDID.fullmatch(linkedid):
        raise ValueError(f"not a call's Linkedid: {linkedid!r}"[:120])
    return linkedid


def selects(policy: RecordingPolicy, linkedid: str) -> bool:
    """Whether the PBX records the call ``linkedid`` under ``policy`` (the dialplan's own rule)."""
    sequence = int(check_linkedid(linkedid).rsplit(".", 1)[1])
    return sequence % 100 < policy.percent


def file_name(linkedid: str) -> str:
    """The name of the call's recording in the PBX's monitor folder: ``<linkedid>.wav``."""
    return check_linkedid(linkedid) + RECORDING_SUFFIX


def expires_before(now: datetime, retention_days: int) -> datetime:
    """Recordings made before this moment are past their retention (``retention_days`` ≥ 1)."""
    if isinstance(retention_days, bool) or retention_days < 1:
        raise ValueError(f"retention is at least one day: {retention_days!r}")
    return now - timedelta(days=retention_days)
