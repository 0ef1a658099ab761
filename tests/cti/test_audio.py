"""``cti.audio`` with the real pydub and ffmpeg: what a file the PBX wrote holds, never an exception."""

from __future__ import annotations

from pathlib import Path

from pydub import AudioSegment
from pydub.generators import Sine

from cti.audio import measure_and_compress


def test_a_recording_is_measured_and_gets_a_compressed_copy(tmp_path: Path) -> None:
    wav = tmp_path / "1700000000.12.wav"
    Sine(440).to_audio_segment(duration=1500).set_frame_rate(8000).set_channels(1).export(wav, format="wav")
    measured = measure_and_compress(wav)
    assert measured.status == "ok" and abs(measured.seconds - 1.5) < 0.01
    assert measured.compressed == tmp_path / "1700000000.12.mp3"
    assert abs(len(AudioSegment.from_file(measured.compressed, format="mp3")) / 1000 - 1.5) < 0.1


def test_missing_empty_and_foreign_files_are_answers(tmp_path: Path) -> None:
    assert measure_and_compress(tmp_path / "gone.wav").status == "missing"
    (tmp_path / "empty.wav").write_bytes(b"")
    assert measure_and_compress(tmp_path / "empty.wav").status == "empty"
    (tmp_path / "junk.wav").write_bytes(b"<html>not audio</html>" * 10)
    junk = measure_and_compress(tmp_path / "junk.wav")
    assert (junk.status, junk.seconds, junk.compressed) == ("empty", 0.0, None)
    silent = tmp_path / "hung-up-before-the-beep.wav"
    AudioSegment.silent(duration=0, frame_rate=8000).export(silent, format="wav")
    assert measure_and_compress(silent).status == "empty"
