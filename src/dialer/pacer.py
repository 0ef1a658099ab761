"""How many calls to dial now: the pacers for preview, progressive and predictive campaigns.

Pure: a pacer reads a :class:`PacingSnapshot` (the campaign's lines and agents at one instant, the
traffic it has seen, its abandonment figures) and answers with a :class:`PaceDecision`: a number of
calls to place now, and the reason in words and in numbers, which the console shows live. The same
code paces the live dialler and the simulator (``dialer.simulate``), so what the benchmark
measures is what runs.

The predictive pacer
--------------------
Every call dialled now will, if a person answers, want an agent about ``H`` seconds from now (``H``
is the mean time to a live answer). At that moment the agents free are the ready ones, plus each
agent now talking or in wrap-up who will have finished by then, minus the answered calls already
waiting. The calls that will be answered are each ringing call (with the chance that it is still
going to be answered live, given how long it has rung) and each new call (with the live answer
rate). Both sides are sums of independent yes/no chances, so their distributions are computed
exactly (Poisson-binomial), and so is the expected number of answered calls that find no agent:
``E[max(answers - free agents, 0)]``. The pacer dials the largest number of new calls whose
expected share of abandoned answers stays at or under its *aim*.

The aim is below the legal cap and follows the campaign's own record over the rule's window
(30 days or 24 hours): it is ``safety × cap`` while the observed rate is there, lower when the
observed rate is above it (to bring the window back down), higher (up to the cap) when well under.
Under ``min_answers`` live answers the estimates are not trusted and it dials progressively
(one call per ready agent), which never abandons a call.

Time-to-finish of talk and wrap-up is read as memoryless around the observed means, with what has
already elapsed taken off (a residual mean, floored); the model is an approximation and the aim's
feedback on the real abandonment rate is what holds the cap, which the seeded simulations check.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from dialer.abandonment import AbandonmentFigures
from dialer.model import SAFE_HARBOR_SECONDS, DialMode


@dataclass(frozen=True, slots=True)
class TrafficEstimate:
    """The campaign's traffic as observed so far (or the priors, before anything was observed).

    ``live_answer_rate``: share of dials answered by a person. ``mean_answer_seconds``: mean time
    from dial to a live answer. ``mean_talk_seconds``/``mean_wrap_seconds``: agents' talk and
    wrap-up. ``dials``/``live_answers``: how many observations the figures rest on.
    """

    live_answer_rate: float = 0.3
    mean_answer_seconds: float = 8.0
    mean_talk_seconds: float = 120.0
    mean_wrap_seconds: float = 15.0
    dials: int = 0
    live_answers: int = 0
    answer_times: tuple[float, ...] = ()  # recent dial-to-live-answer times, sorted
    talk_times: tuple[float, ...] = ()  # recent talk times, sorted
    wrap_times: tuple[float, ...] = ()  # recent wrap-up times, sorted

    def answer_survival(self, elapsed: float) -> float:
        """Share of live answers that come later than ``elapsed`` s after dialling: from the
        recent answer times when there are some, else memoryless around the mean."""
        if self.answer_times:
            later = len(self.answer_times) - bisect.bisect_right(self.answer_times, elapsed)
            return later / len(self.answer_times)
        return math.exp(-elapsed / max(self.mean_answer_seconds, 0.1))


class TrafficObserver:
    """Running estimates of the traffic, forgetting old observations gradually.

    Each figure is an exponentially weighted mean whose weight is ``1/memory`` once ``memory``
    observations have been seen (a plain mean before), so the pace follows a list whose answer
    rate drifts during the day. Pure: fed by the caller, no clock.
    """

    def __init__(self, prior: TrafficEstimate | None = None, *, memory: int = 300) -> None:
        if memory < 10:
            raise ValueError("memory must be at least 10 observations")
        self._memory = memory
        p = prior or TrafficEstimate()
        self._rate, self._answer, self._talk, self._wrap = (
            p.live_answer_rate,
            p.mean_answer_seconds,
            p.mean_talk_seconds,
            p.mean_wrap_seconds,
        )
        self._dials = self._answers = self._talks = self._wraps = 0
        self._answer_times: deque[float] = deque(maxlen=memory)
        self._talk_times: deque[float] = deque(maxlen=memory)
        self._wrap_times: deque[float] = deque(maxlen=memory)

    def _step(self, n: int) -> float:
        return 1.0 / min(n, self._memory)

    def dial_ended(self, *, live: bool, answer_seconds: float | None = None) -> None:
        """A dial resolved: answered by a person (after ``answer_seconds``) or not."""
        self._dials += 1
        self._rate += self._step(self._dials) * ((1.0 if live else 0.0) - self._rate)
        if live:
            if answer_seconds is None or answer_seconds < 0:
                raise ValueError("a live answer needs its answer time")
            self._answers += 1
            self._answer_times.append(answer_seconds)
            self._answer += self._step(self._answers) * (answer_seconds - self._answer)

    def talk_ended(self, seconds: float) -> None:
        self._talks += 1
        self._talk_times.append(max(seconds, 0.0))
        self._talk += self._step(self._talks) * (max(seconds, 0.0) - self._talk)

    def wrap_ended(self, seconds: float) -> None:
        self._wraps += 1
        self._wrap_times.append(max(seconds, 0.0))
        self._wrap += self._step(self._wraps) * (max(seconds, 0.0) - self._wrap)

    def estimate(self) -> TrafficEstimate:
        return TrafficEstimate(
            live_answer_rate=self._rate,
            mean_answer_seconds=self._answer,
            mean_talk_seconds=self._talk,
            mean_wrap_seconds=self._wrap,
            dials=self._dials,
            live_answers=self._answers,
            answer_times=tuple(sorted(self._answer_times)),
            talk_times=tuple(sorted(self._talk_times)),
            wrap_times=tuple(sorted(self._wrap_times)),
        )


@dataclass(frozen=True, slots=True)
class PacingSnapshot:
    """One campaign at one instant, as the pacer sees it.

    ``talking``/``wrapping``: for each agent on a campaign call or in wrap-up, the seconds it has
    lasted so far. ``ringing``: for each dialled call not yet answered, the seconds since it was
    dialled. ``waiting``: answered calls waiting for an agent (inside the safe-harbor seconds).
    ``leads_available``: how many leads may be dialled now (compliance already applied).
    """

    ready: int
    talking: tuple[float, ...]
    wrapping: tuple[float, ...]
    ringing: tuple[float, ...]
    waiting: int
    traffic: TrafficEstimate
    abandonment: AbandonmentFigures
    leads_available: int = 1_000_000

    @property
    def logged_in(self) -> int:
        return self.ready + len(self.talking) + len(self.wrapping)


@dataclass(frozen=True, slots=True)
class PaceDecision:
    """Dial ``dial`` calls now, because ``reason``; ``figures`` carries the numbers behind it."""

    dial: int
    reason: str
    figures: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dial < 0:
            raise ValueError("a pace dials zero calls or more")
        object.__setattr__(self, "figures", MappingProxyType(dict(self.figures)))


class Pacer(Protocol):
    """Anything that paces a campaign: the live dialler and the simulator call ``decide`` after
    every change and at least once a second, with ``now`` in seconds on any steady clock."""

    def decide(self, snapshot: PacingSnapshot, now: float) -> PaceDecision: ...


def _progressive_count(s: PacingSnapshot) -> int:
    # Each ringing or waiting call already has a ready agent kept for it.
    return max(0, min(s.ready - len(s.ringing) - s.waiting, s.leads_available))


class PreviewPacer:
    """Preview: the dialler never dials by itself; the agent sees the lead and dials or skips."""

    def decide(self, snapshot: PacingSnapshot, now: float) -> PaceDecision:
        return PaceDecision(0, "preview: agents dial each lead themselves", {"ready": snapshot.ready})


class ProgressivePacer:
    """Progressive: one call per ready agent not already covered by a ringing or waiting call.

    Never abandons a call (an agent is free for every call that can be answered), at the price of
    the agent's idle time while each call rings.
    """

    def decide(self, snapshot: PacingSnapshot, now: float) -> PaceDecision:
        n = _progressive_count(snapshot)
        return PaceDecision(
            n,
            f"progressive: {snapshot.ready} ready, {len(snapshot.ringing)} ringing, "
            f"{snapshot.waiting} waiting: dialling {n}",
            {"ready": snapshot.ready, "ringing": len(snapshot.ringing), "dial": n},
        )


def _poisson_binomial(chances: Sequence[float]) -> list[float]:
    """P(exactly k successes) for independent yes/no chances, k = 0..len(chances)."""
    dist = [1.0]
    for p in chances:
        q = 1.0 - p
        nxt = [0.0] * (len(dist) + 1)
        for k, mass in enumerate(dist):
            if mass:
                nxt[k] += mass * q
                nxt[k + 1] += mass * p
        dist = nxt
    return dist


def _add_chance(dist: list[float], p: float) -> list[float]:
    q = 1.0 - p
    nxt = [0.0] * (len(dist) + 1)
    for k, mass in enumerate(dist):
        nxt[k] += mass * q
        nxt[k + 1] += mass * p
    return nxt


def _finished_within(samples: tuple[float, ...], mean: float, elapsed: float, within: float) -> float:
    """Chance that something running for ``elapsed`` s (talk, wrap-up) ends within ``within`` s more.

    From the recent durations (sorted ``samples``) when at least 20 are known: among those longer
    than ``elapsed``, the share no longer than ``elapsed + within``. Before that, memoryless around
    the residual mean (``mean - elapsed``, at least a second).
    """
    if within <= 0:
        return 0.0
    if len(samples) >= 20:
        longer = len(samples) - bisect.bisect_right(samples, elapsed)
        if longer == 0:
            return 1.0 - math.exp(-within / max(mean, 1.0))  # longer than anything seen: no data
        done = bisect.bisect_right(samples, elapsed + within) - (len(samples) - longer)
        return done / longer
    residual = max(mean - elapsed, 1.0)
    return 1.0 - math.exp(-within / residual)


def _still_answers(traffic: TrafficEstimate, elapsed: float) -> float:
    """Chance that a call ringing for ``elapsed`` s is still going to be answered by a person.

    Of all dials, the share ``rate × survival(elapsed)`` is answered later than now; the calls
    still ringing are those plus the ones never answered by a person.
    """
    rate = traffic.live_answer_rate
    later = rate * traffic.answer_survival(elapsed)
    rest = later + 1.0 - rate
    return later / rest if rest > 0 else 0.0


class PredictivePacer:
    """Predictive pacing that keeps the share of abandoned answers under the cap.

    ``safety`` sets the nominal aim as a share of the cap; ``gain`` how strongly the aim reacts to
    the observed rate; ``min_answers`` how many live answers the window needs before the model is
    used (progressive before); ``max_lines_per_agent`` bounds lines in use per logged-in agent.
    See the module docstring for the model.
    """

    def __init__(
        self,
        *,
        safety: float = 0.8,
        gain: float = 2.0,
        min_answers: int = 30,
        max_lines_per_agent: float = 4.0,
    ) -> None:
        if not 0.0 < safety <= 1.0 or gain < 0 or min_answers < 0 or max_lines_per_agent < 1:
            raise ValueError("safety in (0, 1], gain >= 0, min_answers >= 0, max_lines_per_agent >= 1")
        self.safety = safety
        self.gain = gain
        self.min_answers = min_answers
        self.max_lines_per_agent = max_lines_per_agent

    def aim(self, figures: AbandonmentFigures) -> float:
        """The share of answers the next dials may expect to abandon."""
        nominal = figures.cap * self.safety
        if figures.answered < self.min_answers:
            return nominal
        return min(figures.cap, max(0.0, nominal + self.gain * (nominal - figures.rate)))

    def decide(self, snapshot: PacingSnapshot, now: float) -> PaceDecision:
        s = snapshot
        t = s.traffic
        ab = s.abandonment
        base: dict[str, float] = {
            "ready": s.ready,
            "talking": len(s.talking),
            "wrapping": len(s.wrapping),
            "ringing": len(s.ringing),
            "waiting": s.waiting,
            "live_answer_rate": t.live_answer_rate,
            "mean_answer_seconds": t.mean_answer_seconds,
            "mean_talk_seconds": t.mean_talk_seconds,
            "mean_wrap_seconds": t.mean_wrap_seconds,
            "abandonment_rate": ab.rate,
            "abandonment_answered": ab.answered,
            "cap": ab.cap,
        }
        floor = _progressive_count(s)
        if t.live_answers < self.min_answers or s.logged_in == 0:
            base["dial"] = floor
            return PaceDecision(
                floor,
                f"predictive, learning: {t.live_answers} of {self.min_answers} live answers seen; "
                f"dialling progressively ({floor} for {s.ready} ready, {len(s.ringing)} ringing)",
                base,
            )
        aim = self.aim(ab)
        horizon = max(t.mean_answer_seconds, 1.0)
        # A call answered now may wait the safe-harbor seconds for an agent to free up.
        reach = horizon + SAFE_HARBOR_SECONDS
        # An agent on a call is free only after the rest of the call and a whole wrap-up.
        after_wrap = reach - t.mean_wrap_seconds
        free_chances = [
            _finished_within(t.talk_times, t.mean_talk_seconds, e, after_wrap) for e in s.talking
        ] + [_finished_within(t.wrap_times, t.mean_wrap_seconds, e, reach) for e in s.wrapping]
        freed = _poisson_binomial(free_chances)
        # Agents free at the horizon: Y = ready - waiting + freed (waiting calls take agents first).
        offset = s.ready - s.waiting
        # expected_short[x] = E[max(x - Y, 0)]: built from the cumulative distribution of Y.
        answers = _poisson_binomial([_still_answers(t, e) for e in s.ringing])
        lines_left = int(self.max_lines_per_agent * s.logged_in) - len(s.ringing) - s.waiting - len(s.talking)
        limit = max(0, min(lines_left, s.leads_available))

        # short[n] = E[max(n - freed, 0)], grown by one cumulative step at a time.
        size = len(answers) + limit + 1 + max(0, -offset)
        short = [0.0] * (size + 1)
        cumulative = 0.0
        for n in range(1, size + 1):
            cumulative += freed[n - 1] if n - 1 < len(freed) else 0.0
            short[n] = short[n - 1] + cumulative

        def shortfall(dist: list[float]) -> float:
            return sum(mass * short[x - offset] for x, mass in enumerate(dist) if x > offset)

        chosen = 0
        dist = answers
        exp_answers = sum(k * m for k, m in enumerate(dist))
        exp_short = shortfall(dist)
        for k in range(1, limit + 1 if t.live_answer_rate > 0 else 1):
            dist = _add_chance(dist, t.live_answer_rate)
            a = exp_answers + t.live_answer_rate
            sh = shortfall(dist)
            if (sh - exp_short) / t.live_answer_rate > aim:
                break
            chosen, exp_answers, exp_short = k, a, sh
        dial = max(chosen, min(floor, limit))
        expected_rate = exp_short / exp_answers if exp_answers > 0 else 0.0
        base.update(
            {
                "aim": aim,
                "expected_answers": exp_answers,
                "expected_abandoned": exp_short,
                "expected_rate": expected_rate,
                "horizon_seconds": horizon,
                "dial": dial,
            }
        )
        reason = (
            f"predictive: {s.ready} ready, {len(s.talking)} talking, {len(s.wrapping)} in wrap-up, "
            f"{len(s.ringing)} ringing; {t.live_answer_rate:.0%} of {t.dials} dials answered live "
            f"after {t.mean_answer_seconds:.0f} s, talk {t.mean_talk_seconds:.0f} s, "
            f"wrap-up {t.mean_wrap_seconds:.0f} s; abandoned {ab.rate:.1%} of {ab.answered} "
            f"(cap {ab.cap:.0%}), aiming at {aim:.1%}; dialling {dial} expects "
            f"{exp_answers:.1f} answers and {expected_rate:.1%} of them abandoned"
        )
        return PaceDecision(dial, reason, base)


def pacer_for(mode: DialMode) -> Pacer:
    """The pacer a campaign's dial mode uses."""
    if mode is DialMode.PREVIEW:
        return PreviewPacer()
    if mode is DialMode.PROGRESSIVE:
        return ProgressivePacer()
    return PredictivePacer()
