"""How long building IVR prompts takes: espeak-ng synthesis plus the ffmpeg conversion to 8 kHz mono.

Builds every prompt of the example flows (``ivr/flows``) into a fresh temporary folder (cold: all
synthesised), then again (warm: every name is a content hash that exists, nothing is synthesised),
``--repeat`` times, and reports wall seconds for each pass, the mean per synthesised prompt by
language, and how many seconds of sound one second of building makes.

Usage: ``python benchmarks/ivr_prompts.py [--repeat R]``. Needs espeak-ng and ffmpeg.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict

from ivr.files import example_flows
from ivr.prompts import BuiltSound, PromptBuilder


def one_run() -> tuple[float, float, dict[str, list[float]], float, int]:
    flows = example_flows()
    per_language: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="bench-prompts-") as folder:
        builder = PromptBuilder(folder)
        sound_seconds = 0.0
        built = 0
        started = time.perf_counter()
        for flow in flows.values():
            last = time.perf_counter()

            def progress(done: int, total: int, sound: BuiltSound) -> None:
                nonlocal last
                now = time.perf_counter()
                if sound.built:
                    per_language[sound.language].append(now - last)
                last = now

            report = builder.build(flow, progress)
            sound_seconds += sum(s.seconds for s in report.sounds if s.built)
            built += report.built
        cold = time.perf_counter() - started
        started = time.perf_counter()
        for flow in flows.values():
            assert builder.build(flow).built == 0
        warm = time.perf_counter() - started
    return cold, warm, per_language, sound_seconds, built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    colds, warms = [], []
    per_language: dict[str, list[float]] = defaultdict(list)
    sound = built = 0.0
    for _ in range(args.repeat):
        cold, warm, languages, sound, built = one_run()
        colds.append(cold)
        warms.append(warm)
        for language, times in languages.items():
            per_language[language].extend(times)
    print(f"example flows: {built:.0f} prompts synthesised, {sound:.0f} s of sound")
    print(
        f"cold build  median {statistics.median(colds):.2f} s  (runs: {', '.join(f'{c:.2f}' for c in colds)})"
    )
    print(f"warm build  median {statistics.median(warms) * 1000:.0f} ms (nothing rebuilt)")
    for language, times in sorted(per_language.items()):
        print(f"  {language}: {statistics.mean(times) * 1000:.0f} ms per prompt (n={len(times)})")
    print(f"sound built per second of building: {sound / statistics.median(colds):.1f} s")


if __name__ == "__main__":
    main()
