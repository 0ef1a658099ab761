"""``cti prompts build`` and ``cti prompts import`` as the CLI runs them: real files, espeak-ng, ffmpeg."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from pydub.generators import Sine

from ivr.commands import build_prompts, import_prompt

from .helpers import flow_data

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None,
    reason="prompts need espeak-ng and ffmpeg (Debian packages; ./scripts/setup installs them)",
)


def write_flow(folder: Path, data: dict[str, object], name: str = "support.yaml") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def run_build(flows: Path, sounds: Path) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = build_prompts(flows, sounds, None, lines.append)
    return code, lines


def test_build_shows_progress_and_rebuilds_only_changed_text(tmp_path: Path) -> None:
    flows, sounds = tmp_path / "flows", tmp_path / "sounds"
    data = flow_data()
    write_flow(flows, data)
    code, lines = run_build(flows, sounds)
    total = sum(len(p) for p in data["prompts"].values())
    assert code == 0, lines
    progress = [line for line in lines if line.lstrip().startswith("[")]
    assert len(progress) == total and progress[0].strip().startswith(f"[  1/{total}] built")
    assert lines[-1].startswith(f"{total} prompts in 1 flows: {total} built, 0 unchanged")

    # Nothing changed: nothing is rebuilt.
    code, lines = run_build(flows, sounds)
    assert code == 0 and lines[-1].startswith(f"{total} prompts in 1 flows: 0 built, {total} unchanged")

    # One text changed: exactly that prompt in that language is rebuilt.
    data["prompts"]["welcome"]["zh"] = "您好，欢迎致电新的客户服务热线。"
    write_flow(flows, data)
    code, lines = run_build(flows, sounds)
    assert code == 0
    rebuilt = [line for line in lines if "] built" in line]
    assert len(rebuilt) == 1 and " welcome (zh) " in rebuilt[0]
    assert lines[-1].startswith(f"{total} prompts in 1 flows: 1 built, {total - 1} unchanged")


@pytest.mark.parametrize(
    ("flow", "expected"),
    [
        (
            flow_data(
                nodes__welcome={"kind": "play", "prompts": ["welcome"], "next": "again"},
                nodes__again={"kind": "play", "prompts": ["welcome"], "next": "welcome"},
            ),
            "support.yaml: node 'again': a caller who presses nothing would loop forever: "
            "again → welcome → again",
        ),
        (
            flow_data(nodes__goodbye={"kind": "hangup", "prompts": ["farewell"]}),
            "support.yaml: node 'goodbye': 'prompts' plays prompt 'farewell', which is not in 'prompts'",
        ),
    ],
    ids=["cycle", "missing prompt"],
)
def test_build_refuses_a_bad_flow_naming_the_node_and_builds_nothing(
    tmp_path: Path, flow: dict[str, object], expected: str
) -> None:
    flows, sounds = tmp_path / "flows", tmp_path / "sounds"
    write_flow(flows, flow)
    code, lines = run_build(flows, sounds)
    assert code == 1
    assert lines[0].startswith("flows not valid") and f"  {expected}" in lines
    assert not sounds.exists() or not any(sounds.iterdir())


def test_build_reports_a_missing_recording_clearly(tmp_path: Path) -> None:
    flows, sounds = tmp_path / "flows", tmp_path / "sounds"
    data = flow_data()
    data["prompts"]["bye"] = {"zh": {"file": "bye-zh.wav"}, "en": "Goodbye."}
    write_flow(flows, data)
    lines: list[str] = []
    assert build_prompts(flows, sounds, tmp_path / "recordings", lines.append) == 1
    assert "prompt 'bye': recording bye-zh.wav cannot be read" in lines[-1]


def test_import_then_a_flow_naming_the_recording_builds_without_converting_again(tmp_path: Path) -> None:
    recordings, sounds, flows = tmp_path / "recordings", tmp_path / "sounds", tmp_path / "flows"
    upload = tmp_path / "bye.mp3"
    Sine(330).to_audio_segment(duration=800).export(upload, format="mp3")
    lines: list[str] = []
    assert import_prompt(upload, "bye-zh", recordings, sounds, lines.append) == 0, lines
    assert lines[0].startswith("imported bye-zh.wav (0.8 s, 8 kHz mono) as sound rec-")
    sound = lines[0].rsplit(" ", 1)[-1]
    assert (sounds / f"{sound}.wav").exists()

    data = flow_data()
    data["prompts"]["bye"] = {"zh": {"file": "bye-zh.wav"}, "en": "Goodbye."}
    write_flow(flows, data)
    lines = []
    assert build_prompts(flows, sounds, recordings, lines.append) == 0
    (bye_zh,) = [line for line in lines if " bye (zh) " in line]
    assert "unchanged" in bye_zh and sound in bye_zh


def test_import_refuses_what_is_not_a_usable_recording(tmp_path: Path) -> None:
    recordings, sounds = tmp_path / "recordings", tmp_path / "sounds"
    text = tmp_path / "notes.wav"
    text.write_text("not a recording")
    lines: list[str] = []
    assert import_prompt(text, "hold", recordings, sounds, lines.append) == 1
    assert lines == ["notes.wav: not audio that can be decoded (WAV or MP3 expected)"]
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * 5000)
    lines = []
    assert import_prompt(big, "hold", recordings, sounds, lines.append, max_bytes=4096) == 1
    assert lines == ["big.wav: 5000 bytes is more than the 4096 bytes a prompt upload may have"]
    lines = []
    assert import_prompt(tmp_path / "missing.mp3", "hold", recordings, sounds, lines.append) == 1
    assert lines[0].startswith(f"{tmp_path / 'missing.mp3'}: cannot be read")
    assert not recordings.exists() or not any(recordings.iterdir())
