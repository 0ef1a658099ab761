"""Audio the PBX wrote (call recordings, voicemails): measure a WAV and make a compressed copy (pydub).

One place for what recordings, the IVR's voicemail and overflow voicemail all need. Blocking (ffmpeg
runs in a subprocess): call it through ``asyncio.to_thread``. Never raises for a missing, empty or
undecodable file: those are answers (``missing``, ``empty``), since a file the PBX failed to write
must still be on the record as such, and must never stop the writer that files it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pydub import AudioSegment

log = logging.getLogger("cti.audio")


@dataclass(frozen=True, slots=True)
class Measured:
    """What an audio file holds: ``status`` ``ok``, ``empty`` or ``missing``; its length in seconds;
    the compressed copy's path (None when there is no sound or the copy failed)."""

    status: str
    seconds: float
    compressed: Path | None


def measure_and_compress(wav: Path, fmt: str = "mp3") -> Measured:
    """Measure ``wav`` and write ``<wav without suffix>.<fmt>`` beside it."""
    if not wav.is_file():
        return Measured("missing", 0.0, None)
    if wav.stat().st_size == 0:
        return Measured("empty", 0.0, None)
    try:
        segment = AudioSegment.from_file(str(wav), format="wav")
    except Exception as exc:  # pydub raises several types for a truncated or foreign file
        log.warning("%s is not decodable audio: %s", wav.name, exc)
        return Measured("empty", 0.0, None)
    seconds = len(segment) / 1000.0
    if seconds <= 0:
        return Measured("empty", 0.0, None)
    target = wav.with_suffix(f".{fmt}")
    try:
        segment.export(str(target), format=fmt)
    except Exception as exc:
        log.warning("could not compress %s: %s", wav.name, exc)
        target.unlink(missing_ok=True)
        return Measured("ok", seconds, None)
    return Measured("ok", seconds, target)
