"""The flow examples in docs/ivr.md are complete, valid flows (a doc example that does not load would
teach the wrong thing)."""

from __future__ import annotations

import re
from pathlib import Path

from ivr.files import load_flow_text
from ivr.model import CollectDigits, Menu

DOC = Path(__file__).resolve().parents[2] / "docs" / "ivr.md"


def examples() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    return [b for b in blocks if "\nnodes:" in b]


def test_the_english_and_the_mandarin_example_load() -> None:
    flows = [load_flow_text(text, f"docs/ivr.md example {i + 1}") for i, text in enumerate(examples())]
    assert [f.languages for f in flows] == [("en",), ("zh",)]
    english, mandarin = flows
    assert any(isinstance(n, Menu) for n in english.nodes.values())
    assert any(isinstance(n, CollectDigits) and n.masked for n in mandarin.nodes.values())
