"""Flow files: YAML on disk to validated :class:`~ivr.model.Flow` values (the I/O edge of flows)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from ivr.model import Flow, FlowError, load_flow

FLOW_SUFFIXES = (".yaml", ".yml")


def load_flow_text(text: str, source: str = "") -> Flow:
    """Parse and validate one flow written in YAML. ``source`` names it in every error."""
    prefix = f"{source}: " if source else ""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FlowError([f"{prefix}not valid YAML: {exc}"]) from exc
    if not isinstance(data, dict):
        raise FlowError([f"{prefix}a flow file must hold a mapping with dnis, name, languages, start, nodes"])
    return load_flow(data, source)


def load_flow_file(path: str | Path) -> Flow:
    """Read, parse and validate one flow file; errors start with the file's name."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowError([f"{path.name}: cannot be read: {exc}"]) from exc
    return load_flow_text(text, path.name)


def load_flows(folder: str | Path) -> dict[str, Flow]:
    """Every flow file in ``folder``, by DNIS. All files are checked; problems are reported together,
    and two files claiming the same DNIS are an error (which flow would a call run?)."""
    flows: dict[str, Flow] = {}
    problems: list[str] = []
    for path in sorted(Path(folder).iterdir()):
        if path.suffix not in FLOW_SUFFIXES:
            continue
        try:
            flow = load_flow_file(path)
        except FlowError as exc:
            problems.extend(exc.problems)
            continue
        other = flows.get(flow.dnis)
        if other is not None:
            problems.append(f"{path.name}: dnis '{flow.dnis}' is already served by {other.source}")
            continue
        flows[flow.dnis] = flow
    if problems:
        raise FlowError(problems)
    return flows


def example_flows() -> dict[str, Flow]:
    """The example flows shipped with the package (``ivr/flows``), by DNIS."""
    with resources.as_file(resources.files("ivr") / "flows") as folder:
        return load_flows(folder)
