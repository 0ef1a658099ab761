"""A replica of VICIdial's adaptive dial level (``ADAPT_AVERAGE``), for the benchmark only.

VICIdial is the leading open-source dialer; this is a re-implementation of the behaviour its
public source (``bin/AST_VDadapt.pl``, subroutine ``calculate_dial_level``, and the line count in
``bin/AST_VDauto_dial.pl``, AGPLv2, read at version 2.14) describes, written from that reading, not
copied. The behaviour replicated:

- **Dial level.** The campaign's ``auto_dial_level`` is lines per agent: the dialler keeps
  ``round(level × agents)`` calls in use, where agents are those ready or on a call (paused agents,
  such as ours in wrap-up, are not counted unless "available only" tallying is chosen), and calls in
  use are those being sent, ringing, answered and waiting, or connected. It places the difference.
- **Differential.** About once a second the adapt process samples ready agents, waiting (answered,
  unconnected) calls and agents; over the last 15 samples it averages them and takes
  ``differential = mean ready − mean waiting``, plus the ``adaptive_dl_diff_target`` setting.
- **Adjustment.** Every 15 samples the level becomes ``level × (1 + differential / mean agents)``,
  with ``adaptive_intensity`` scaling the change (0, the default, leaves it as is), then is capped
  at ``adaptive_maximum_level`` (3.0 by default) and floored at 1.0.
- **Drop rules.** Over the last minute, with more than 20 calls and more than 50 % of them dropped,
  the level is halved. Over the day, with more than 50 calls and dropped calls above
  ``adaptive_dropped_percentage`` of answered calls (3 % here), ``ADAPT_AVERAGE`` halves the level
  (``ADAPT_HARD_LIMIT`` would set it to 1.0; ``ADAPT_TAPERED`` would scale it by the time left).
  The result is floored at 1.0 again.

Simplifications, stated: the day's figures are the campaign's abandonment window from the
snapshot (the simulated shift is shorter than a day); "calls" in the drop rules are live answers,
the denominator the day rule uses for its percentage.
"""

from __future__ import annotations

from collections import deque

from dialer.pacer import PaceDecision, PacingSnapshot

SAMPLES = 15  # AST_VDadapt.pl's $stat_it: samples averaged, and samples between adjustments
MIN_DAY_CALLS = 50
MIN_MINUTE_CALLS = 20
MINUTE_DROP_SHARE = 0.5


class AdaptAverage:
    """VICIdial-style ``ADAPT_AVERAGE`` pacing (see the module docstring for what is replicated).

    Stateful but pure: ``decide`` samples the snapshot at most once per ``sample_seconds`` of the
    ``now`` it is given.
    """

    def __init__(
        self,
        *,
        dropped_percentage: float = 3.0,
        maximum_level: float = 3.0,
        intensity: float = 0.0,
        dl_diff_target: float = 0.0,
        start_level: float = 1.0,
        sample_seconds: float = 1.0,
    ) -> None:
        if not 1.0 <= start_level <= maximum_level or not -100.0 <= intensity <= 100.0:
            raise ValueError("1 <= start_level <= maximum_level; intensity in -100..100")
        self.level = start_level
        self.dropped_percentage = dropped_percentage
        self.maximum_level = maximum_level
        self.intensity = intensity
        self.dl_diff_target = dl_diff_target
        self.sample_seconds = sample_seconds
        self._samples: deque[tuple[int, int, int]] = deque(maxlen=SAMPLES)  # ready, waiting, agents
        self._since_adjust = 0
        self._last_sample: float | None = None
        self._minute: deque[tuple[float, int, int]] = deque()  # (now, answered, abandoned) totals
        self.last_note = "not adjusted yet"

    def _sample(self, s: PacingSnapshot, now: float) -> None:
        if self._last_sample is not None and now - self._last_sample < self.sample_seconds:
            return
        self._last_sample = now
        self._samples.append((s.ready, s.waiting, s.ready + len(s.talking)))
        self._minute.append((now, s.abandonment.answered, s.abandonment.abandoned))
        while self._minute and now - self._minute[0][0] > 60.0:
            self._minute.popleft()
        self._since_adjust += 1
        if self._since_adjust >= SAMPLES and len(self._samples) == SAMPLES:
            self._since_adjust = 0
            self._adjust(s)

    def _adjust(self, s: PacingSnapshot) -> None:
        ready = sum(r for r, _, _ in self._samples) / SAMPLES
        waiting = sum(w for _, w, _ in self._samples) / SAMPLES
        agents = sum(a for _, _, a in self._samples) / SAMPLES
        target = ready - waiting + self.dl_diff_target
        share = target / agents if target and agents else 0.0
        factor = self.intensity / 100.0
        change = share * abs(factor - 1.0) if share < 0 else share * (factor + 1.0)
        level = min(self.level * (1.0 + change), self.maximum_level)
        level = max(level, 1.0)
        note = f"differential {target:+.2f} over {agents:.1f} agents"
        if self._minute:
            _, answered0, abandoned0 = self._minute[0]
            answered = s.abandonment.answered - answered0
            dropped = s.abandonment.abandoned - abandoned0
            if answered > MIN_MINUTE_CALLS and dropped / answered > MINUTE_DROP_SHARE:
                level /= 2.0
                note += "; over 50 % dropped in the last minute: halved"
        day = s.abandonment
        if day.answered > MIN_DAY_CALLS and 100.0 * day.rate > self.dropped_percentage:
            level /= 2.0
            note += f"; day's drops {day.rate:.1%} over {self.dropped_percentage:.1f} %: averaged (halved)"
        self.level = max(level, 1.0)
        self.last_note = note

    def decide(self, snapshot: PacingSnapshot, now: float) -> PaceDecision:
        s = snapshot
        self._sample(s, now)
        agents = s.ready + len(s.talking)
        goal = round(self.level * agents)
        in_use = len(s.ringing) + s.waiting + len(s.talking)
        dial = max(0, min(goal - in_use, s.leads_available))
        return PaceDecision(
            dial,
            f"adaptive dial level {self.level:.3f} × {agents} agents = {goal} lines, {in_use} in use "
            f"({self.last_note}): dialling {dial}",
            {"level": self.level, "agents": agents, "goal": goal, "in_use": in_use, "dial": dial},
        )
