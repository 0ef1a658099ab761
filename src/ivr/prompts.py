"""Prompt sound files: text synthesised with espeak-ng, uploads converted, all to what Asterisk plays.

The I/O edge of prompts (subprocesses and files); everything here blocks, so an event loop calls the
``*_async`` wrappers, which run the work through ``asyncio.to_thread``.

Format: 8 kHz, mono, 16-bit signed PCM in a ``.wav`` file. Asterisk plays that natively (its
``format_wav`` module is signed linear at 8 kHz, no transcoding), exactly like a raw ``.sln`` file;
we prefer ``.wav`` because the header makes each file self-describing: any audio tool plays it, and
a test or an operator can check its rate and width from the file alone, which a headerless ``.sln``
does not allow. Play a prompt by its name without the suffix (``Playback(ivr/<name>)``).

File names are content hashes: a text prompt's name hashes (format version, language, voice, text),
a recording's name hashes (format version, the uploaded bytes). Identical text is built once and
shared by every flow; changed text gets a new name and is built; an existing file is never rebuilt.
Files are written to a temporary name and renamed, so a crash never leaves a half file that a later
build would skip.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydub import AudioSegment
from pydub.exceptions import CouldntDecodeError

from ivr.model import Flow, RecordedPrompt, TextPrompt

FORMAT_VERSION = 1  # bump when the conversion changes: every name changes and everything is rebuilt
SAMPLE_RATE = 8000
SAMPLE_WIDTH = 2
CHANNELS = 1
SUFFIX = ".wav"
MAX_RECORDING_SECONDS = 600
SYNTHESIS_TIMEOUT_SECONDS = 60

# espeak-ng voices by the primary language subtag the flows use.
VOICES = {"zh": "cmn", "cmn": "cmn", "en": "en"}

# ffmpeg resamples with a proper low-pass filter (pydub's own set_frame_rate does not, and aliases).
# No metadata and bit-exact output: a plain 44-byte WAV header, the same bytes for the same input.
_EXPORT_PARAMETERS = [
    "-ar", str(SAMPLE_RATE),
    "-ac", str(CHANNELS),
    "-acodec", "pcm_s16le",
    "-map_metadata", "-1",
    "-flags", "+bitexact",
    "-fflags", "+bitexact",
]  # fmt: skip


class PromptError(ValueError):
    """A prompt that cannot be built or an upload that is not usable audio."""


def voice_for(language: str) -> str:
    """The espeak-ng voice for a flow language (``zh`` → ``cmn``, Mandarin; ``en`` → ``en``)."""
    voice = VOICES.get(language) or VOICES.get(language.split("-")[0].lower())
    if voice is None:
        raise PromptError(f"no speech synthesis voice for language '{language}' (known: {', '.join(VOICES)})")
    return voice


def text_sound_name(text: str, language: str) -> str:
    """The sound name (no suffix) of a text prompt: a hash of everything that changes its audio."""
    key = json.dumps([FORMAT_VERSION, "text", language, voice_for(language), text], ensure_ascii=False)
    return "ivr-" + hashlib.sha256(key.encode()).hexdigest()[:24]


def recording_sound_name(data: bytes) -> str:
    digest = hashlib.sha256(f"{FORMAT_VERSION}:recording:".encode() + data).hexdigest()[:24]
    return "rec-" + digest


@dataclass(frozen=True, slots=True)
class BuiltSound:
    """One prompt in one language: its sound name, whether this build made it, and its length."""

    prompt: str
    language: str
    sound: str
    built: bool
    seconds: float


@dataclass(slots=True)
class BuildReport:
    sounds: list[BuiltSound] = field(default_factory=list)

    @property
    def built(self) -> int:
        return sum(1 for s in self.sounds if s.built)

    @property
    def skipped(self) -> int:
        return sum(1 for s in self.sounds if not s.built)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.sounds)

    def sound_for(self, prompt: str, language: str) -> str:
        """The sound name to play for a prompt in a language (what a ``PromptRef`` resolves to)."""
        for s in self.sounds:
            if s.prompt == prompt and s.language == language:
                return s.sound
        raise KeyError(f"prompt '{prompt}' in '{language}' was not built")


Progress = Callable[[int, int, BuiltSound], None]


@dataclass(frozen=True, slots=True)
class _Job:
    prompt: str
    language: str
    text: str | None = None
    file: Path | None = None


def _duration(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / float(w.getframerate())


def _export(segment: AudioSegment, target: Path) -> float:
    """Write ``segment`` as an 8 kHz mono 16-bit WAV at ``target`` atomically; its length in seconds."""
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        segment.export(str(tmp), format="wav", parameters=list(_EXPORT_PARAMETERS))
        seconds = _duration(tmp)
        # mkstemp makes the file private; Asterisk plays it as its own user.
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return seconds


def _decode(path: Path, max_seconds: float) -> AudioSegment:
    try:
        segment = AudioSegment.from_file(str(path))
    except (CouldntDecodeError, IndexError, OSError) as exc:
        # pydub raises IndexError on some non-audio input that ffmpeg half-understands.
        raise PromptError(f"{path.name}: not audio that can be decoded (WAV or MP3 expected)") from exc
    seconds = len(segment) / 1000.0
    if seconds <= 0:
        raise PromptError(f"{path.name}: holds no sound")
    if seconds > max_seconds:
        raise PromptError(
            f"{path.name}: {seconds:.0f} s is longer than the {max_seconds:.0f} s a prompt may last"
        )
    return segment


def convert_recording(
    path_in: str | Path, path_out: str | Path, max_seconds: float = MAX_RECORDING_SECONDS
) -> float:
    """Convert an uploaded WAV or MP3 to the prompt format at ``path_out``; its length in seconds.

    Raises :class:`PromptError` for anything that is not decodable audio, is empty, or is too long.
    """
    segment = _decode(Path(path_in), max_seconds)
    return _export(segment, Path(path_out))


async def convert_recording_async(
    path_in: str | Path, path_out: str | Path, max_seconds: float = MAX_RECORDING_SECONDS
) -> float:
    return await asyncio.to_thread(convert_recording, path_in, path_out, max_seconds)


class PromptBuilder:
    """Builds prompt sound files into ``sounds_dir`` (the folder Asterisk plays them from)."""

    def __init__(self, sounds_dir: str | Path, espeak: str = "espeak-ng") -> None:
        self.sounds_dir = Path(sounds_dir)
        self.espeak = espeak

    def path_of(self, sound: str) -> Path:
        return self.sounds_dir / f"{sound}{SUFFIX}"

    def build(
        self,
        source: Flow | Iterable[tuple[str, str]],
        progress: Progress | None = None,
        recordings_dir: str | Path | None = None,
    ) -> BuildReport:
        """Build every prompt of a flow (or every ``(text, language)`` pair) that is not built yet.

        Recorded prompts of a flow are read from ``recordings_dir``. ``progress(done, total, sound)``
        is called after each prompt, from the thread doing the work. Raises :class:`PromptError` for
        a language without a voice, a failed synthesis or an unusable recording.
        """
        jobs = self._jobs(source, None if recordings_dir is None else Path(recordings_dir))
        self.sounds_dir.mkdir(parents=True, exist_ok=True)
        report = BuildReport()
        for done, job in enumerate(jobs, start=1):
            sound = self._build_one(job)
            report.sounds.append(sound)
            if progress is not None:
                progress(done, len(jobs), sound)
        return report

    async def build_async(
        self,
        source: Flow | Iterable[tuple[str, str]],
        progress: Progress | None = None,
        recordings_dir: str | Path | None = None,
    ) -> BuildReport:
        return await asyncio.to_thread(self.build, source, progress, recordings_dir)

    def speak(self, text: str, language: str) -> BuiltSound:
        """The sound for text that is not in a prompt table (a customer's name), built once."""
        self.sounds_dir.mkdir(parents=True, exist_ok=True)
        return self._build_one(_Job("", language, text=text))

    async def speak_async(self, text: str, language: str) -> BuiltSound:
        return await asyncio.to_thread(self.speak, text, language)

    def _jobs(self, source: Flow | Iterable[tuple[str, str]], recordings_dir: Path | None) -> list[_Job]:
        if not isinstance(source, Flow):
            return [_Job("", language, text=text) for text, language in source]
        jobs: list[_Job] = []
        for prompt in source.prompts.values():
            for language, variant in prompt.variants.items():
                if isinstance(variant, TextPrompt):
                    jobs.append(_Job(prompt.id, language, text=variant.text))
                elif isinstance(variant, RecordedPrompt):
                    if recordings_dir is None:
                        raise PromptError(
                            f"{source.source or source.name}: prompt '{prompt.id}' is recorded "
                            f"({variant.file}); pass the recordings folder"
                        )
                    jobs.append(_Job(prompt.id, language, file=recordings_dir / variant.file))
        return jobs

    def _build_one(self, job: _Job) -> BuiltSound:
        if job.file is not None:
            try:
                data = job.file.read_bytes()
            except OSError as exc:
                raise PromptError(
                    f"prompt '{job.prompt}': recording {job.file.name} cannot be read: {exc}"
                ) from exc
            sound = recording_sound_name(data)
        else:
            assert job.text is not None
            sound = text_sound_name(job.text, job.language)
        target = self.path_of(sound)
        if target.exists():
            return BuiltSound(job.prompt, job.language, sound, False, _duration(target))
        if job.file is not None:
            seconds = _export(_decode(job.file, MAX_RECORDING_SECONDS), target)
        else:
            assert job.text is not None
            seconds = self._synthesise(job.text, job.language, target)
        return BuiltSound(job.prompt, job.language, sound, True, seconds)

    def _synthesise(self, text: str, language: str, target: Path) -> float:
        voice = voice_for(language)
        with tempfile.TemporaryDirectory(prefix="prompt-", dir=self.sounds_dir) as tmp:
            raw = Path(tmp) / "espeak.wav"
            # Text goes in on stdin as UTF-8 (-b 1): never as an argument, where a leading '-' would
            # be read as an option.
            command = [self.espeak, "-v", voice, "-b", "1", "-w", str(raw), "--stdin"]
            try:
                subprocess.run(
                    command,
                    input=text.encode(),
                    capture_output=True,
                    check=True,
                    timeout=SYNTHESIS_TIMEOUT_SECONDS,
                )
            except FileNotFoundError as exc:
                raise PromptError(f"{self.espeak} is not installed (Debian package espeak-ng)") from exc
            except subprocess.CalledProcessError as exc:
                message = exc.stderr.decode(errors="replace").strip()
                raise PromptError(f"speech synthesis failed for '{language}': {message}") from exc
            except subprocess.TimeoutExpired as exc:
                raise PromptError(
                    f"speech synthesis for '{language}' took longer than {exc.timeout} s"
                ) from exc
            return _export(_decode(raw, MAX_RECORDING_SECONDS), target)


# --- recorded prompt uploads ------------------------------------------------------------------------

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # ten minutes of 16-bit 16 kHz WAV fit; larger is never a prompt
_RECORDING_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ImportedRecording:
    """A recorded prompt after import: ``file`` is what a flow names (``{file: <file>}``), ``sound``
    the built sound (``rec-<hash>``) Asterisk plays, ``replaced`` whether ``file`` existed before."""

    name: str
    file: str
    sound: str
    seconds: float
    replaced: bool


def check_recording_name(name: str) -> str:
    """``name`` if it can name a recording (letters, digits, ``_`` and ``-``; at most 64), else
    :class:`PromptError`. It becomes a file name, so nothing else may pass."""
    if not _RECORDING_NAME.match(name):
        raise PromptError(
            f"recording name {name[:80]!r}: use letters, digits, '_' or '-' (at most 64, no dots or slashes)"
        )
    return name


def import_recording(
    data: bytes,
    name: str,
    recordings_dir: str | Path,
    sounds_dir: str | Path,
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_seconds: float = MAX_RECORDING_SECONDS,
) -> ImportedRecording:
    """Store an uploaded WAV or MP3 as the recorded prompt ``name``.

    The upload is decoded with pydub (ffmpeg) and converted to the prompt format (8 kHz mono 16-bit
    WAV); the converted file becomes ``<recordings_dir>/<name>.wav``, which flows name as
    ``{file: <name>.wav}``, and its sound ``rec-<hash>.wav`` (hash of the converted bytes, as a flow
    build would name it) is written into ``sounds_dir`` at once. Raises :class:`PromptError` for a bad
    name, an empty or oversized upload, or anything that is not decodable audio; nothing is written
    then, and an existing recording of that name is kept.
    """
    check_recording_name(name)
    if not data:
        raise PromptError(f"recording {name!r}: the upload is empty")
    if len(data) > max_bytes:
        raise PromptError(
            f"recording {name!r}: {len(data)} bytes is more than the {max_bytes} bytes an upload may have"
        )
    recordings, sounds = Path(recordings_dir), Path(sounds_dir)
    recordings.mkdir(parents=True, exist_ok=True)
    sounds.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="upload-", dir=recordings) as tmp:
        upload = Path(tmp) / f"{name}.upload"
        upload.write_bytes(data)
        segment = _decode(upload, max_seconds)
        converted = Path(tmp) / f"{name}.wav"
        seconds = _export(segment, converted)
        sound = recording_sound_name(converted.read_bytes())
        target = sounds / f"{sound}{SUFFIX}"
        if not target.exists():
            shutil.copyfile(converted, Path(tmp) / "sound.wav")
            os.replace(Path(tmp) / "sound.wav", target)
        file = recordings / f"{name}{SUFFIX}"
        replaced = file.exists()
        os.replace(converted, file)
    return ImportedRecording(name, file.name, sound, seconds, replaced)


async def import_recording_async(
    data: bytes,
    name: str,
    recordings_dir: str | Path,
    sounds_dir: str | Path,
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> ImportedRecording:
    return await asyncio.to_thread(
        import_recording, data, name, recordings_dir, sounds_dir, max_bytes=max_bytes
    )
