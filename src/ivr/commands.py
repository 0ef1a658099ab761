"""What ``cti prompts build`` and ``cti prompts import`` do, with their output as lines of text.

The composition root's CLI parses the arguments and passes the folders from the settings; these
functions print progress through ``out`` and return the command's exit code (0 done, 1 a clear
failure whose message says what is wrong and where).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ivr.files import example_flows, load_flows
from ivr.model import Flow, FlowError
from ivr.prompts import MAX_UPLOAD_BYTES, BuiltSound, PromptBuilder, PromptError, import_recording

Out = Callable[[str], None]


def load_for_build(flows_dir: Path | None) -> dict[str, Flow]:
    """The flows of ``flows_dir`` (every ``.yaml``), or the example flows when it is None.
    Raises :class:`FlowError` listing every problem of every file, each naming the file and node."""
    return load_flows(flows_dir) if flows_dir is not None else example_flows()


def build_prompts(flows_dir: Path | None, sounds_dir: Path, recordings_dir: Path | None, out: Out) -> int:
    """Validate every flow, then build the sound of each prompt whose text (or recording) changed.

    One line per prompt and language as it is done (``built`` or ``unchanged``), then a total. A flow
    with problems stops the command before anything is built.
    """
    try:
        flows = load_for_build(flows_dir)
    except FlowError as exc:
        out(f"flows not valid ({len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''}):")
        for problem in exc.problems:
            out(f"  {problem}")
        return 1
    except OSError as exc:
        out(f"flows folder cannot be read: {exc}")
        return 1
    if not flows:
        out(f"no flow files (*.yaml) in {flows_dir}")
        return 1
    builder = PromptBuilder(sounds_dir)
    built = unchanged = 0
    seconds = 0.0
    for flow in flows.values():
        out(f"{flow.source or flow.name} (DNIS {flow.dnis}, {', '.join(flow.languages)}):")

        def progress(done: int, total: int, sound: BuiltSound) -> None:
            state = "built    " if sound.built else "unchanged"
            out(
                f"  [{done:>3}/{total}] {state} {sound.prompt} ({sound.language}) "
                f"{sound.sound} {sound.seconds:.1f} s"
            )

        try:
            report = builder.build(flow, progress, recordings_dir)
        except PromptError as exc:
            out(f"  {flow.source or flow.name}: {exc}")
            return 1
        built += report.built
        unchanged += report.skipped
        seconds += report.seconds
    out(f"{built + unchanged} prompts in {len(flows)} flows: {built} built, {unchanged} unchanged "
        f"({seconds:.0f} s of sound) in {sounds_dir}")  # fmt: skip
    return 0


def import_prompt(
    file: Path, name: str, recordings_dir: Path, sounds_dir: Path, out: Out, max_bytes: int = MAX_UPLOAD_BYTES
) -> int:
    """Convert the WAV or MP3 ``file`` into the recorded prompt ``name`` (see ``import_recording``)."""
    try:
        size = file.stat().st_size
        if size > max_bytes:  # checked before reading: the file may be anything
            out(f"{file.name}: {size} bytes is more than the {max_bytes} bytes a prompt upload may have")
            return 1
        data = file.read_bytes()
    except OSError as exc:
        out(f"{file}: cannot be read: {exc.strerror or exc}")
        return 1
    try:
        imported = import_recording(data, name, recordings_dir, sounds_dir, max_bytes=max_bytes)
    except PromptError as exc:
        out(str(exc).replace(f"{name}.upload", file.name))
        return 1
    verb = "replaced" if imported.replaced else "imported"
    out(f"{verb} {imported.file} ({imported.seconds:.1f} s, 8 kHz mono) as sound {imported.sound}")
    out(f"use it in a flow as: {{file: {imported.file}}}")
    return 0
