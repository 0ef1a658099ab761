"""Prompt sound files, built with the real espeak-ng and converted with pydub and the real ffmpeg."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import pytest
from pydub.generators import Sine

from ivr.files import example_flows
from ivr.model import load_flow
from ivr.prompts import (
    SAMPLE_RATE,
    BuiltSound,
    PromptBuilder,
    PromptError,
    convert_recording,
    convert_recording_async,
    text_sound_name,
    voice_for,
)

from .helpers import BASE, flow_data

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None,
    reason="prompts need espeak-ng and ffmpeg (Debian packages; ./scripts/setup installs them)",
)

ZH = ("您好，欢迎致电客户服务热线。", "zh")
EN = ("Thank you for calling customer support.", "en")


def assert_asterisk_format(path: Path) -> float:
    """8 kHz, mono, 16-bit PCM WAV; returns the duration in seconds."""
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getcomptype()) == (
            SAMPLE_RATE,
            1,
            2,
            "NONE",
        )
        seconds = w.getnframes() / w.getframerate()
    assert path.read_bytes()[36:40] == b"data"  # a plain 44-byte header, nothing for Asterisk to skip
    return seconds


def test_mandarin_and_english_prompts_are_built_once(tmp_path: Path) -> None:
    builder = PromptBuilder(tmp_path / "sounds")
    seen: list[tuple[int, int, BuiltSound]] = []
    report = builder.build([ZH, EN], progress=lambda done, total, sound: seen.append((done, total, sound)))
    assert (report.built, report.skipped) == (2, 0)
    assert [(d, t) for d, t, _ in seen] == [(1, 2), (2, 2)]
    for sound in report.sounds:
        seconds = assert_asterisk_format(builder.path_of(sound.sound))
        assert seconds > 0.3 and sound.seconds == pytest.approx(seconds)
    zh, en = report.sounds
    assert zh.sound == text_sound_name(*ZH) and zh.sound != en.sound

    again = builder.build([ZH, EN])
    assert (again.built, again.skipped) == (0, 2)
    assert [s.seconds for s in again.sounds] == [s.seconds for s in report.sounds]

    changed = builder.build([("您好，欢迎致电销售热线。", "zh"), EN])
    assert (changed.built, changed.skipped) == (1, 1)
    assert changed.sounds[0].sound != zh.sound
    assert sorted(p.name for p in (tmp_path / "sounds").iterdir()) == sorted(
        f"{s}.wav" for s in {zh.sound, en.sound, changed.sounds[0].sound}
    )  # no temporary files left behind


def test_the_same_text_in_another_language_is_another_sound() -> None:
    assert text_sound_name("OK", "en") != text_sound_name("OK", "zh")
    assert voice_for("zh") == "cmn" and voice_for("zh-CN") == "cmn" and voice_for("en-GB") == "en"
    with pytest.raises(PromptError, match="no speech synthesis voice for language 'tlh'"):
        voice_for("tlh")


async def test_a_flow_is_built_off_the_event_loop_with_its_recordings(tmp_path: Path) -> None:
    recordings = tmp_path / "uploads"
    recordings.mkdir()
    Sine(440).to_audio_segment(duration=700).set_frame_rate(44100).export(
        recordings / "bye-zh.mp3", format="mp3"
    )
    flow = load_flow(
        flow_data(prompts={**BASE["prompts"], "bye": {"zh": {"file": "bye-zh.mp3"}, "en": "Goodbye."}}),
        "t.yaml",
    )
    builder = PromptBuilder(tmp_path / "sounds")
    report = await builder.build_async(flow, recordings_dir=recordings)
    assert report.built == len(report.sounds) == sum(len(p.variants) for p in flow.prompts.values())
    recorded = builder.path_of(report.sound_for("bye", "zh"))
    assert recorded.name.startswith("rec-")
    assert assert_asterisk_format(recorded) == pytest.approx(0.7, abs=0.05)
    with pytest.raises(PromptError, match="pass the recordings folder"):
        builder.build(flow)


def test_example_flows_build(tmp_path: Path) -> None:
    builder = PromptBuilder(tmp_path)
    flow = example_flows()["18005550100"]
    report = builder.build(flow)
    assert report.built == len(flow.prompts) and report.seconds > 5


def test_a_wav_upload_is_converted(tmp_path: Path) -> None:
    upload = tmp_path / "greeting.wav"
    Sine(300).to_audio_segment(duration=1500).set_frame_rate(48000).set_channels(2).export(
        upload, format="wav"
    )
    seconds = convert_recording(upload, tmp_path / "greeting-8k.wav")
    assert seconds == pytest.approx(1.5, abs=0.02)
    assert assert_asterisk_format(tmp_path / "greeting-8k.wav") == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.wav", b"this is a shopping list, not a recording\n", "not audio that can be decoded"),
        ("empty.mp3", b"", "not audio that can be decoded"),
        ("picture.mp3", b"\x89PNG\r\n\x1a\n" + bytes(200), "not audio that can be decoded"),
    ],
)
async def test_a_non_audio_upload_is_rejected(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    upload = tmp_path / name
    upload.write_bytes(content)
    with pytest.raises(PromptError, match=f"{name}: {message}"):
        await convert_recording_async(upload, tmp_path / "out.wav")
    assert not (tmp_path / "out.wav").exists()


def test_an_overlong_upload_is_rejected(tmp_path: Path) -> None:
    upload = tmp_path / "long.wav"
    Sine(300).to_audio_segment(duration=3000).export(upload, format="wav")
    with pytest.raises(PromptError, match="longer than the 2 s"):
        convert_recording(upload, tmp_path / "out.wav", max_seconds=2)


def test_a_name_is_spoken_on_demand_and_cached(tmp_path: Path) -> None:
    builder = PromptBuilder(tmp_path)
    first = builder.speak("张伟", "zh")
    assert first.built and assert_asterisk_format(builder.path_of(first.sound)) > 0
    assert not builder.speak("张伟", "zh").built
