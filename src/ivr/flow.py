"""The IVR engine: a pure state machine that runs a :class:`~ivr.model.Flow` for one call.

No Asterisk, no I/O, no clock. The FastAGI adapter drives it::

    state, step = start(flow, context, now)
    while not state.finished:
        result = perform(step)          # play, read digits, look up, record ... in Asterisk
        state, step = advance(flow, state, result, now)
    perform(step)                       # the final Route or Hangup

What the adapter answers after each step:

* ``Play``, ``Say*``, ``Speak``, ``RequestCallback``: :class:`Done` (keys pressed during an
  interruptible play may come back as :class:`Digits`; they are dropped);
* ``Collect``: :class:`Digits` with what was read (possibly empty), or :class:`Timeout`;
* ``Lookup``: :class:`LookupResult`;
* ``RecordVoicemail``: :class:`Recorded`;
* at any time: :class:`CallerHungUp`.

Guarantees:

* a caller who presses nothing ends in a menu's after-the-last-retry target in a bounded number of
  steps (validation forbids silent cycles; :data:`MAX_NODE_ENTRIES` and :data:`MAX_STEPS` bound even
  an unvalidated flow);
* a digit flood is cut to :data:`MAX_INPUT_KEYS` keys before it is read, then to the node's
  ``max_digits``; extra keys are ignored, never queued for later nodes;
* digits of a ``masked`` collect node are kept only inside a :class:`Secret` (whose repr, str and
  pickling never show them) until one lookup uses them; the path and inputs hold their length only.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, NoReturn

from cti.model import CallClassification
from ivr import model
from ivr.model import MAX_CALLBACK_DIGITS, MAX_PRIORITY, MIN_CALLBACK_DIGITS, Flow, LookupQuery

MAX_INPUT_KEYS = 64  # a flood longer than any collect node accepts is cut before it is looked at
MAX_NODE_ENTRIES = 100  # no real call passes through a hundred nodes; past that the call ends
MAX_STEPS = 500

# The phase that enters a node (and records it in the path); every other phase resumes inside one.
_ENTER = "enter"


# --- secrets ---------------------------------------------------------------------------------------


class Secret:
    """Digits a caller typed into a masked node. Never shown: repr and str are ``****``, and it refuses
    to be pickled, so it cannot reach a log line, a screen-pop or a database by accident."""

    __slots__ = ("_digits",)

    def __init__(self, digits: str) -> None:
        self._digits = digits

    def reveal(self) -> str:
        """The digits, for the one check that needs them (the adapter's PIN verification)."""
        return self._digits

    def matches(self, digits: str) -> bool:
        return hmac.compare_digest(self._digits.encode(), digits.encode())

    def __len__(self) -> int:
        return len(self._digits)

    def __repr__(self) -> str:
        return "Secret('****')"

    def __str__(self) -> str:
        return "****"

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> NoReturn:
        raise TypeError("a caller's secret digits are never serialised")


@dataclass(frozen=True, slots=True)
class Masked:
    """What the call keeps of a masked input: that it was given, and its length."""

    length: int

    def __str__(self) -> str:
        return "****"


# --- the call as the IVR sees it --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KnownCustomer:
    id: int
    name: str
    tier: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who is calling what: ANI (None when withheld), DNIS, and the customer if the ANI matched one."""

    ani: str | None
    dnis: str
    customer: KnownCustomer | None = None

    @classmethod
    def from_classification(cls, ani: str | None, dnis: str, found: CallClassification | None) -> CallContext:
        """Build the context from the core's ANI/DNIS lookup result."""
        if found is None:
            return cls(ani, dnis)
        number = found.ani_e164 or ani
        if found.customer_id is None:
            return cls(number, dnis)
        customer = KnownCustomer(
            found.customer_id, found.customer_name or "", found.customer_tier, found.language
        )
        return cls(number, dnis, customer)


# --- steps: what to do next, in Asterisk's terms but abstract ---------------------------------------


@dataclass(frozen=True, slots=True)
class PromptRef:
    """A prompt of the flow's table in one language; the adapter maps it to a sound file."""

    prompt: str
    language: str


@dataclass(frozen=True, slots=True)
class Play:
    prompts: tuple[PromptRef, ...]
    interruptible: bool = False


@dataclass(frozen=True, slots=True)
class SayNumber:
    number: int
    language: str


@dataclass(frozen=True, slots=True)
class SayDigits:
    digits: str
    language: str


@dataclass(frozen=True, slots=True)
class SayAlpha:
    """Spell a reference with letters in it (an order number like ``A1024``)."""

    text: str
    language: str


@dataclass(frozen=True, slots=True)
class SayMoney:
    amount: Decimal
    currency: str
    language: str


@dataclass(frozen=True, slots=True)
class Speak:
    """Synthesise text that is not in the prompt table (a customer's name) and play it."""

    text: str
    language: str


@dataclass(frozen=True, slots=True)
class Collect:
    """Play ``prompts`` and read up to ``max_digits`` keys. ``masked``: never log what comes back."""

    prompts: tuple[PromptRef, ...]
    max_digits: int
    timeout_seconds: int
    terminator: str | None = None
    masked: bool = False
    min_digits: int = 1


@dataclass(frozen=True, slots=True)
class Lookup:
    """Ask the customer record; answer with :class:`LookupResult`. ``pin`` is checked by the adapter."""

    query: LookupQuery
    customer_id: int
    pin: Secret | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """Hand the call to routing. Final."""

    skills: tuple[str, ...]
    language: str
    priority: int


@dataclass(frozen=True, slots=True)
class RecordVoicemail:
    max_seconds: int
    beep: bool


@dataclass(frozen=True, slots=True)
class RequestCallback:
    """Queue a callback to ``number`` that keeps the caller's place (routing honours ``keep_place``)."""

    number: str
    skills: tuple[str, ...]
    language: str
    priority: int
    keep_place: bool = True


@dataclass(frozen=True, slots=True)
class Hangup:
    """Play ``prompts`` (if any) and hang up. Final."""

    prompts: tuple[PromptRef, ...] = ()


Step = (
    Play
    | SayNumber
    | SayDigits
    | SayAlpha
    | SayMoney
    | Speak
    | Collect
    | Lookup
    | Route
    | RecordVoicemail
    | RequestCallback
    | Hangup
)


# --- inputs: what the adapter reports back -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Done:
    """An output step finished."""


@dataclass(frozen=True, slots=True, repr=False)
class Digits:
    """Keys the caller pressed. The repr shows only how many: these may be a PIN."""

    keys: str

    def __repr__(self) -> str:
        return f"Digits(<{len(self.keys)} keys>)"


@dataclass(frozen=True, slots=True)
class Timeout:
    """The caller pressed nothing before the timeout."""


@dataclass(frozen=True, slots=True)
class LookupResult:
    """What the record said. Every field given is said back, in this order: count, amount, reference,
    then the prompt for ``status``."""

    found: bool
    count: int | None = None
    amount: Decimal | None = None
    currency: str = ""
    reference: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    """A voicemail was recorded (``seconds`` may be 0 when the caller said nothing)."""

    recording: str
    seconds: float


@dataclass(frozen=True, slots=True)
class CallerHungUp:
    pass


Input = Done | Digits | Timeout | LookupResult | Recorded | CallerHungUp


class UnexpectedInput(ValueError):
    """The adapter answered a step with the wrong kind of input (a bug in the adapter)."""


# --- state ------------------------------------------------------------------------------------------


class Awaiting(enum.StrEnum):
    OUTPUT = "output"
    DIGITS = "digits"
    LOOKUP = "lookup"
    RECORDING = "recording"
    NOTHING = "nothing"  # finished


class Outcome(enum.StrEnum):
    ROUTED = "routed"
    HUNG_UP = "hung_up"
    CALLER_HUNG_UP = "caller_hung_up"
    TOO_MANY_STEPS = "too_many_steps"


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One thing the caller told the IVR: the node, the input's name and the value (masked if secret)."""

    node: str
    name: str
    value: str | Masked


@dataclass(frozen=True, slots=True)
class LookupRecord:
    node: str
    query: LookupQuery
    found: bool


@dataclass(frozen=True, slots=True)
class VoicemailLeft:
    node: str
    recording: str
    seconds: float


@dataclass(frozen=True, slots=True)
class IvrState:
    """Everything the IVR learned about one call so far. Frozen: ``advance`` returns a new one."""

    context: CallContext
    language: str
    node: str
    phase: str = _ENTER
    awaiting: Awaiting = Awaiting.OUTPUT
    pending: tuple[Step, ...] = ()
    then: tuple[str, str] | None = None
    path: tuple[str, ...] = ()
    inputs: tuple[InputRecord, ...] = ()
    attempts: int = 0  # failed attempts at the current node
    skills: tuple[str, ...] = ()  # added by menu choices
    priority_boost: int = 0  # added by menu choices
    lookups: tuple[LookupRecord, ...] = ()
    voicemail: VoicemailLeft | None = None
    callback_number: str | None = None
    outcome: Outcome | None = None
    final: Step | None = None
    steps: int = 0
    # Masked digits by input name; excluded from repr and equality so they can never be printed.
    secrets: Mapping[str, Secret] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.awaiting is Awaiting.NOTHING

    def summary(self) -> dict[str, object]:
        """What the IVR learned, as JSON-ready data for the screen-pop and the customer record."""
        return {
            "path": list(self.path),
            "inputs": [{"node": i.node, "name": i.name, "value": str(i.value)} for i in self.inputs],
            "language": self.language,
            "lookups": [{"node": r.node, "query": r.query.value, "found": r.found} for r in self.lookups],
            "voicemail": None
            if self.voicemail is None
            else {"recording": self.voicemail.recording, "seconds": self.voicemail.seconds},
            "callback_number": self.callback_number,
            "outcome": None if self.outcome is None else self.outcome.value,
        }


Result = tuple[IvrState, Step]


# --- the engine -------------------------------------------------------------------------------------


def start(flow: Flow, context: CallContext, now: datetime) -> Result:
    """Begin the flow for a new call: the first step to perform."""
    return _enter(flow, IvrState(context, _initial_language(flow, context), flow.start), flow.start, now)


def advance(flow: Flow, state: IvrState, got: Input, now: datetime) -> Result:
    """Feed the result of the last step; return the new state and the next step.

    A finished state answers with its final step again. Raises :class:`UnexpectedInput` when ``got``
    does not answer the step that was asked.
    """
    if state.finished:
        assert state.final is not None
        return state, state.final
    if isinstance(got, CallerHungUp):
        return _finish(state, Hangup(), Outcome.CALLER_HUNG_UP)
    state = replace(state, steps=state.steps + 1)
    if state.steps > MAX_STEPS:
        return _finish(state, Hangup(), Outcome.TOO_MANY_STEPS)

    if state.awaiting is Awaiting.OUTPUT:
        if not isinstance(got, Done | Digits | Timeout):
            _unexpected(state, got)
        if state.pending:
            return replace(state, pending=state.pending[1:]), state.pending[0]
        assert state.then is not None
        return _resume(flow, replace(state, then=None), state.then, now)

    node = flow.node(state.node)
    if state.awaiting is Awaiting.DIGITS:
        if isinstance(got, Timeout):
            keys = ""
        elif isinstance(got, Digits):
            # Bound the work before looking: a flood of keys costs no more than MAX_INPUT_KEYS.
            keys = "".join(k for k in got.keys[:MAX_INPUT_KEYS] if k in model.DTMF_KEYS)
        else:
            _unexpected(state, got)
        return _on_keys(flow, state, node, keys, now)
    if state.awaiting is Awaiting.LOOKUP:
        if not isinstance(got, LookupResult) or not isinstance(node, model.Lookup):
            _unexpected(state, got)
        return _on_lookup(flow, state, node, got, now)
    if state.awaiting is Awaiting.RECORDING:
        if not isinstance(got, Recorded) or not isinstance(node, model.Voicemail):
            _unexpected(state, got)
        state = replace(state, voicemail=VoicemailLeft(node.id, got.recording, max(0.0, got.seconds)))
        return _enter(flow, state, node.next, now)
    _unexpected(state, got)


def _unexpected(state: IvrState, got: Input) -> NoReturn:
    raise UnexpectedInput(f"node '{state.node}' is waiting for {state.awaiting.value}, not {got!r}")


def _initial_language(flow: Flow, context: CallContext) -> str:
    customer = context.customer
    if customer is not None and customer.language:
        known = _match_language(flow, customer.language)
        if known is not None:
            return known
    return flow.default_language


def _match_language(flow: Flow, tag: str) -> str | None:
    """The flow language for a BCP 47 tag from the record: exact, else by primary subtag (zh-CN → zh)."""
    if tag in flow.languages:
        return tag
    primary = tag.split("-")[0].lower()
    for language in flow.languages:
        if language.split("-")[0].lower() == primary:
            return language
    return None


def _refs(state: IvrState, prompts: tuple[str, ...] | list[str]) -> tuple[PromptRef, ...]:
    return tuple(PromptRef(p, state.language) for p in prompts)


def _finish(state: IvrState, step: Step, outcome: Outcome) -> Result:
    done = replace(
        state, awaiting=Awaiting.NOTHING, pending=(), then=None, final=step, outcome=outcome, secrets={}
    )
    return done, step


def _emit(flow: Flow, state: IvrState, steps: list[Step], then: tuple[str, str], now: datetime) -> Result:
    """Perform ``steps`` one by one, then continue at ``then`` (a node and its phase)."""
    if not steps:
        return _resume(flow, state, then, now)
    return replace(state, awaiting=Awaiting.OUTPUT, pending=tuple(steps[1:]), then=then), steps[0]


def _ask(state: IvrState, phase: str, collect: Collect) -> Result:
    return replace(state, phase=phase, awaiting=Awaiting.DIGITS), collect


def _enter(flow: Flow, state: IvrState, node_id: str, now: datetime) -> Result:
    if len(state.path) >= MAX_NODE_ENTRIES:
        return _finish(state, Hangup(), Outcome.TOO_MANY_STEPS)
    state = replace(state, node=node_id, phase=_ENTER, attempts=0, path=(*state.path, node_id))
    return _run(flow, state, flow.node(node_id), _ENTER, now)


def _resume(flow: Flow, state: IvrState, then: tuple[str, str], now: datetime) -> Result:
    node_id, phase = then
    if phase == _ENTER:
        return _enter(flow, state, node_id, now)
    return _run(flow, replace(state, phase=phase), flow.node(node_id), phase, now)


def _run(flow: Flow, state: IvrState, node: model.Node, phase: str, now: datetime) -> Result:
    """Perform ``node`` from ``phase``: the next step of the call."""
    match node:
        case model.PlayPrompt():
            return _emit(
                flow, state, [Play(_refs(state, node.prompts), node.interruptible)], (node.next, _ENTER), now
            )
        case model.Menu():
            return _ask(state, "ask", Collect(_refs(state, node.prompts), 1, node.timeout_seconds))
        case model.CollectDigits():
            collect = Collect(
                _refs(state, node.prompts),
                node.max_digits,
                node.timeout_seconds,
                node.terminator,
                node.masked,
                node.min_digits,
            )
            return _ask(state, "ask", collect)
        case model.BusinessHours():
            return _enter(flow, state, node.target(now), now)
        case model.LanguageChoice():
            customer = state.context.customer
            if phase == _ENTER and node.skip_if_known and customer is not None and customer.language:
                known = _match_language(flow, customer.language)
                if known is not None:
                    record = InputRecord(node.id, "language", f"{known} (customer record)")
                    state = replace(state, language=known, inputs=(*state.inputs, record))
                    return _enter(flow, state, node.next, now)
            prompts = _refs(state, node.prompts) + tuple(
                PromptRef(o.prompt, o.language) for o in node.options
            )
            return _ask(state, "ask", Collect(prompts, 1, node.timeout_seconds))
        case model.Greeting():
            return _emit(flow, state, _greeting(state, node), (node.next, _ENTER), now)
        case model.Lookup():
            return _lookup(flow, state, node, now)
        case model.HandToRouting():
            if phase == _ENTER and node.prompts:
                return _emit(flow, state, [Play(_refs(state, node.prompts))], (node.id, "route"), now)
            return _finish(state, _route(state, node), Outcome.ROUTED)
        case model.Voicemail():
            if phase == _ENTER and node.prompts:
                return _emit(flow, state, [Play(_refs(state, node.prompts))], (node.id, "record"), now)
            return replace(state, awaiting=Awaiting.RECORDING), RecordVoicemail(node.max_seconds, node.beep)
        case model.CallbackRequest():
            return _callback(flow, state, node, phase, now)
        case model.Hangup():
            return _finish(state, Hangup(_refs(state, node.prompts)), Outcome.HUNG_UP)


def _on_keys(flow: Flow, state: IvrState, node: model.Node, keys: str, now: datetime) -> Result:
    """The caller answered a Collect with ``keys`` (cleaned, possibly empty)."""
    match node:
        case model.Menu():
            option = node.option(keys[0]) if keys else None
            if option is None:
                return _failed(flow, state, node, keys, now)
            record = InputRecord(node.id, "choice", option.key)
            state = replace(
                state,
                inputs=(*state.inputs, record),
                skills=tuple(dict.fromkeys((*state.skills, *option.skills))),
                priority_boost=state.priority_boost + option.priority,
            )
            return _enter(flow, state, option.target, now)
        case model.CollectDigits():
            value = _digits_value(keys, node.terminator, node.max_digits)
            if value is None or len(value) < node.min_digits:
                return _failed(flow, state, node, keys, now)
            if node.masked:
                record = InputRecord(node.id, node.name, Masked(len(value)))
                secrets = {**state.secrets, node.name: Secret(value)}
                state = replace(state, inputs=(*state.inputs, record), secrets=secrets)
            else:
                state = replace(state, inputs=(*state.inputs, InputRecord(node.id, node.name, value)))
            return _enter(flow, state, node.next, now)
        case model.LanguageChoice():
            choice = node.option(keys[0]) if keys else None
            if choice is None:
                return _failed(flow, state, node, keys, now)
            record = InputRecord(node.id, "language", choice.language)
            return _enter(
                flow, replace(state, language=choice.language, inputs=(*state.inputs, record)), node.next, now
            )
        case model.CallbackRequest():
            if state.phase == "confirm":
                number = _callback_number(state.context.ani)
                if keys[:1] == "1" and number is not None:
                    return _request_callback(flow, state, node, number, now)
                if keys[:1] == "2":
                    return _callback(flow, state, node, "type_number", now)
                return _failed(flow, state, node, keys, now)
            typed = _digits_value(keys, "#", MAX_CALLBACK_DIGITS)
            if typed is None or len(typed) < MIN_CALLBACK_DIGITS:
                return _failed(flow, state, node, keys, now)
            return _request_callback(flow, state, node, typed, now)
        case _:
            _unexpected(state, Digits(keys))


def _digits_value(keys: str, terminator: str | None, max_digits: int) -> str | None:
    """The digits of a collect answer: up to the terminator, at most ``max_digits``; None if not digits."""
    if terminator is not None:
        keys = keys.split(terminator, 1)[0]
    value = keys[:max_digits]
    return value if value.isdigit() and value.isascii() else None


def _failed(flow: Flow, state: IvrState, node: model.Node, keys: str, now: datetime) -> Result:
    """An invalid answer or silence: re-ask with the right prompt, or leave after the last retry."""
    assert isinstance(node, model.Menu | model.CollectDigits | model.LanguageChoice | model.CallbackRequest)
    attempts = state.attempts + 1
    if attempts > node.retries:
        why = "no input" if not keys else "invalid input"
        record = InputRecord(node.id, "retries_exhausted", why)
        return _enter(flow, replace(state, inputs=(*state.inputs, record)), node.after_retries, now)
    state = replace(state, attempts=attempts)
    prompt: str | None = node.invalid_prompt
    if isinstance(node, model.Menu | model.CollectDigits) and not keys and node.timeout_prompt is not None:
        prompt = node.timeout_prompt
    if prompt is None:
        refs: tuple[PromptRef, ...] = ()
    elif isinstance(node, model.LanguageChoice):
        refs = tuple(PromptRef(prompt, lang) for lang in dict.fromkeys(o.language for o in node.options))
    else:
        refs = (PromptRef(prompt, state.language),)
    return _emit(flow, state, [Play(refs)] if refs else [], (node.id, state.phase), now)


def _greeting(state: IvrState, node: model.Greeting) -> list[Step]:
    customer = state.context.customer
    if customer is None:
        return [Play((PromptRef(node.unknown_prompt, state.language),))]
    prompt = node.tier_prompts.get(customer.tier or "", node.known_prompt)
    steps: list[Step] = [Play((PromptRef(prompt, state.language),))]
    name = customer.name.strip()
    if name and node.say_name is model.SayName.BEFORE:
        steps.insert(0, Speak(name, state.language))
    elif name and node.say_name is model.SayName.AFTER:
        steps.append(Speak(name, state.language))
    return steps


def _lookup(flow: Flow, state: IvrState, node: model.Lookup, now: datetime) -> Result:
    customer = state.context.customer
    if customer is None:
        record = LookupRecord(node.id, node.query, False)
        state = replace(state, lookups=(*state.lookups, record))
        steps: list[Step] = [Play(_refs(state, [node.not_found_prompt]))] if node.not_found_prompt else []
        return _emit(flow, state, steps, (node.unknown_customer, _ENTER), now)
    pin: Secret | None = None
    if node.pin is not None:
        # A PIN is used once: it leaves the state with the step that checks it.
        pin = state.secrets.get(node.pin)
        state = replace(state, secrets={k: v for k, v in state.secrets.items() if k != node.pin})
        if pin is None:
            return _on_lookup(flow, state, node, LookupResult(found=False), now)
    return replace(state, awaiting=Awaiting.LOOKUP), Lookup(node.query, customer.id, pin)


def _on_lookup(flow: Flow, state: IvrState, node: model.Lookup, got: LookupResult, now: datetime) -> Result:
    state = replace(state, lookups=(*state.lookups, LookupRecord(node.id, node.query, got.found)))
    lang = state.language
    if not got.found:
        steps: list[Step] = [Play(_refs(state, [node.not_found_prompt]))] if node.not_found_prompt else []
        return _emit(flow, state, steps, (node.not_found, _ENTER), now)
    steps = [Play((PromptRef(node.found_prompt, lang),))]
    if got.count is not None:
        steps.append(SayNumber(got.count, lang))
    if got.amount is not None:
        steps.append(SayMoney(got.amount, got.currency, lang))
    if got.reference:
        ref = got.reference
        steps.append(SayDigits(ref, lang) if ref.isdigit() and ref.isascii() else SayAlpha(ref, lang))
    if got.status is not None and got.status in node.status_prompts:
        steps.append(Play((PromptRef(node.status_prompts[got.status], lang),)))
    if node.after_prompt:
        steps.append(Play((PromptRef(node.after_prompt, lang),)))
    return _emit(flow, state, steps, (node.next, _ENTER), now)


def _priority(state: IvrState, base: int, tier_bonus: Mapping[str, int]) -> int:
    customer = state.context.customer
    bonus = tier_bonus.get(customer.tier or "", 0) if customer is not None else 0
    return max(0, min(MAX_PRIORITY, base + bonus + state.priority_boost))


def _route(state: IvrState, node: model.HandToRouting) -> Route:
    skills = tuple(dict.fromkeys((*node.skills, *state.skills)))
    return Route(skills, node.language or state.language, _priority(state, node.priority, node.tier_priority))


def _callback_number(ani: str | None) -> str | None:
    if ani is None:
        return None
    digits = ani.removeprefix("+")
    ok = digits.isdigit() and digits.isascii() and MIN_CALLBACK_DIGITS <= len(digits) <= MAX_CALLBACK_DIGITS
    return ani if ok else None


def _callback(flow: Flow, state: IvrState, node: model.CallbackRequest, phase: str, now: datetime) -> Result:
    number = _callback_number(state.context.ani)
    if phase == _ENTER and number is not None:
        steps: list[Step] = [
            Play(_refs(state, [node.intro_prompt])),
            SayDigits(number.removeprefix("+"), state.language),
        ]
        return _emit(flow, state, steps, (node.id, "confirm"), now)
    if phase == "confirm" and number is not None:
        return _ask(state, "confirm", Collect(_refs(state, [node.confirm_prompt]), 1, node.timeout_seconds))
    collect = Collect(
        _refs(state, [node.enter_prompt]),
        MAX_CALLBACK_DIGITS,
        node.timeout_seconds,
        "#",
        False,
        MIN_CALLBACK_DIGITS,
    )
    return _ask(state, "type_number", collect)


def _request_callback(
    flow: Flow, state: IvrState, node: model.CallbackRequest, number: str, now: datetime
) -> Result:
    record = InputRecord(node.id, "callback_number", number)
    state = replace(state, callback_number=number, inputs=(*state.inputs, record))
    skills = tuple(dict.fromkeys((*node.skills, *state.skills)))
    step = RequestCallback(number, skills, state.language, _priority(state, node.priority, {}))
    return _emit(flow, state, [step], (node.next, _ENTER), now)
