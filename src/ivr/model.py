"""IVR flows as data: the node kinds, the prompt table, and the loader that validates a flow.

Pure: no I/O and no clock. A flow arrives here as a plain mapping (what ``yaml.safe_load`` gives for
a flow file, see ``ivr.files``) and leaves as a frozen :class:`Flow`, or :class:`FlowError` lists
every problem found, each naming the file and the node, for example::

    support.yaml: node 'main_menu': option '3' goes to 'nowhere', which does not exist

Validation rules (docs/ivr.md explains them for flow authors):

* every node kind is known and every field is known, typed and in range (typos are errors, not
  silently ignored options);
* every target exists, the start node exists, and every node is reachable from the start node.
  An unreachable node is an **error**: in a phone flow it is almost always a mistyped target
  elsewhere, and a flow that keeps dead nodes is a flow nobody can read;
* a caller who presses nothing can never loop: the edges a call takes without a key press
  (play → next, hours → open/closed, greeting, lookup, voicemail, and every "after the last retry"
  edge) must not form a cycle. A cycle that needs a key press on every turn (a menu option leading
  back to the main menu) is fine: the caller is driving;
* every prompt a node plays exists in the prompt table with text or a recording in every language
  the flow speaks (a language-choice announcement only in its own language);
* time zones are IANA names, opening hours are ``HH:MM-HH:MM`` ranges within one day, and digit
  specifications (keys, lengths, terminators, timeouts, retries) are ones a phone can produce.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DTMF_KEYS = "0123456789*#"
MAX_COLLECT_DIGITS = 32  # longer than any PIN, card or account number a caller types
MAX_RETRIES = 9
MAX_TIMEOUT_SECONDS = 60
MAX_VOICEMAIL_SECONDS = 600
MAX_PRIORITY = 100
MIN_CALLBACK_DIGITS = 6  # shorter numbers are short codes (emergency services among them), never called back
MAX_CALLBACK_DIGITS = 15  # E.164

_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_DNIS = re.compile(r"^\+?[0-9]{1,20}$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class FlowError(ValueError):
    """A flow that cannot be used. ``problems`` lists each one; the message is one problem a line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class LookupQuery(enum.StrEnum):
    """The self-service questions the IVR can answer from the customer record."""

    BALANCE = "balance"
    LAST_ORDER = "last_order"
    OPEN_TICKET = "open_ticket"


class SayName(enum.StrEnum):
    """Where a personalised greeting speaks the customer's name ("张先生，您好" vs "Hello, John")."""

    BEFORE = "before"
    AFTER = "after"
    NEVER = "never"


# --- prompts ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextPrompt:
    """A prompt synthesised from text (``ivr.prompts`` builds the sound file)."""

    text: str


@dataclass(frozen=True, slots=True)
class RecordedPrompt:
    """A prompt recorded by a person: a WAV or MP3 upload, relative to the recordings folder."""

    file: str


@dataclass(frozen=True, slots=True)
class Prompt:
    """One entry of the prompt table: what to play for ``id`` in each language."""

    id: str
    variants: Mapping[str, TextPrompt | RecordedPrompt]

    def in_language(self, language: str) -> TextPrompt | RecordedPrompt | None:
        return self.variants.get(language)


# --- nodes -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlayPrompt:
    """Play prompts in the caller's language, then go to ``next``. Keys pressed meanwhile are dropped."""

    id: str
    prompts: tuple[str, ...]
    next: str
    interruptible: bool = False


@dataclass(frozen=True, slots=True)
class MenuOption:
    """One key of a menu. Choosing it adds ``skills`` and ``priority`` to what routing will get."""

    key: str
    target: str
    label: str = ""
    skills: tuple[str, ...] = ()
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Menu:
    """Ask for one key. An invalid key or silence costs one attempt; after ``retries`` more attempts
    the call goes to ``after_retries`` (routing to an agent, or a goodbye)."""

    id: str
    prompts: tuple[str, ...]
    options: tuple[MenuOption, ...]
    after_retries: str
    timeout_seconds: int = 5
    retries: int = 2
    invalid_prompt: str | None = None
    timeout_prompt: str | None = None

    def option(self, key: str) -> MenuOption | None:
        for option in self.options:
            if option.key == key:
                return option
        return None


@dataclass(frozen=True, slots=True)
class CollectDigits:
    """Collect ``min_digits``..``max_digits`` digits into the input ``name``.

    Digits after ``terminator`` or beyond ``max_digits`` are ignored. ``masked`` inputs (PINs, card
    digits) are kept with the call only as their length; the digits themselves live in the call's
    state as a secret until one lookup uses them.
    """

    id: str
    name: str
    prompts: tuple[str, ...]
    next: str
    after_retries: str
    min_digits: int = 1
    max_digits: int = 1
    terminator: str | None = "#"
    timeout_seconds: int = 5
    masked: bool = False
    retries: int = 2
    invalid_prompt: str | None = None
    timeout_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Opening hours within one local day, in minutes since midnight; ``end`` may be 1440 (24:00)."""

    start: int
    end: int

    def contains(self, minute: int) -> bool:
        return self.start <= minute < self.end


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """Branch on the service's opening hours, read in the service's own time zone.

    ``weekly`` holds seven tuples of ranges, Monday first. A holiday is closed all day and goes to
    ``holiday`` when set, else to ``closed``.
    """

    id: str
    time_zone: str
    weekly: tuple[tuple[TimeRange, ...], ...]
    open: str
    closed: str
    holidays: frozenset[date] = frozenset()
    holiday: str | None = None

    def status(self, now: datetime) -> str:
        """``"open"``, ``"closed"`` or ``"holiday"`` at the aware instant ``now``."""
        if now.tzinfo is None:
            raise ValueError("business hours need an aware datetime: pass now in UTC or with its zone")
        local = now.astimezone(ZoneInfo(self.time_zone))
        if local.date() in self.holidays:
            return "holiday"
        minute = local.hour * 60 + local.minute
        if any(r.contains(minute) for r in self.weekly[local.weekday()]):
            return "open"
        return "closed"

    def target(self, now: datetime) -> str:
        status = self.status(now)
        if status == "open":
            return self.open
        if status == "holiday" and self.holiday is not None:
            return self.holiday
        return self.closed


@dataclass(frozen=True, slots=True)
class LanguageOption:
    """One key of a language choice; ``prompt`` announces it in ``language`` itself."""

    key: str
    language: str
    prompt: str


@dataclass(frozen=True, slots=True)
class LanguageChoice:
    """Let the caller pick the language of the rest of the call.

    With ``skip_if_known`` a known customer whose record names one of the flow's languages is not
    asked. A caller who presses nothing keeps the current language and goes to ``after_retries``
    (``next`` unless set).
    """

    id: str
    options: tuple[LanguageOption, ...]
    next: str
    after_retries: str
    prompts: tuple[str, ...] = ()
    timeout_seconds: int = 5
    retries: int = 1
    invalid_prompt: str | None = None
    skip_if_known: bool = False

    def option(self, key: str) -> LanguageOption | None:
        for option in self.options:
            if option.key == key:
                return option
        return None


@dataclass(frozen=True, slots=True)
class Greeting:
    """Greet a known customer personally (a prompt per tier, and the name spoken by synthesis);
    anyone else hears ``unknown_prompt``."""

    id: str
    known_prompt: str
    unknown_prompt: str
    next: str
    tier_prompts: Mapping[str, str] = field(default_factory=dict)
    say_name: SayName = SayName.AFTER


@dataclass(frozen=True, slots=True)
class Lookup:
    """Answer a self-service question from the customer's record and say the result.

    ``pin`` names a masked collect input that the record's owner must confirm; the adapter checks it
    and answers "not found" when it does not match. Unknown callers go to ``unknown_customer``.
    """

    id: str
    query: LookupQuery
    found_prompt: str
    next: str
    not_found: str
    unknown_customer: str
    not_found_prompt: str | None = None
    after_prompt: str | None = None
    status_prompts: Mapping[str, str] = field(default_factory=dict)
    pin: str | None = None


@dataclass(frozen=True, slots=True)
class HandToRouting:
    """Hand the call to routing. Priority is ``priority`` plus the tier's bonus plus what the menu
    choices on the path added; skills are ``skills`` plus the skills of those choices. ``language``
    None means the language the caller is using."""

    id: str
    skills: tuple[str, ...] = ()
    language: str | None = None
    priority: int = 0
    tier_priority: Mapping[str, int] = field(default_factory=dict)
    prompts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Voicemail:
    """Record a message of at most ``max_seconds`` after ``prompts`` (and a beep), then ``next``."""

    id: str
    next: str
    prompts: tuple[str, ...] = ()
    max_seconds: int = 120
    beep: bool = True


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """Offer a call back instead of waiting; the callback keeps the caller's place in the queue.

    A caller whose number is known hears it (``intro_prompt`` then the digits) and confirms with 1 or
    presses 2 to type another (``enter_prompt``, ended by #); a withheld number goes straight to
    typing one.
    """

    id: str
    intro_prompt: str
    confirm_prompt: str
    enter_prompt: str
    next: str
    after_retries: str
    invalid_prompt: str | None = None
    timeout_seconds: int = 8
    retries: int = 2
    skills: tuple[str, ...] = ()
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Hangup:
    """Say goodbye and hang up."""

    id: str
    prompts: tuple[str, ...] = ()


Node = (
    PlayPrompt
    | Menu
    | CollectDigits
    | BusinessHours
    | LanguageChoice
    | Greeting
    | Lookup
    | HandToRouting
    | Voicemail
    | CallbackRequest
    | Hangup
)

# The names flow files use for the node kinds.
KINDS: Mapping[str, type[Node]] = {
    "play": PlayPrompt,
    "menu": Menu,
    "collect": CollectDigits,
    "hours": BusinessHours,
    "language": LanguageChoice,
    "greeting": Greeting,
    "lookup": Lookup,
    "route": HandToRouting,
    "voicemail": Voicemail,
    "callback": CallbackRequest,
    "hangup": Hangup,
}


@dataclass(frozen=True, slots=True)
class Flow:
    """One service's IVR: the flow a call to ``dnis`` runs."""

    dnis: str
    name: str
    default_language: str
    languages: tuple[str, ...]
    start: str
    nodes: Mapping[str, Node]
    prompts: Mapping[str, Prompt]
    source: str = ""

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]


# --- edges and prompt uses, the facts validation and the engine share ------------------------------


@dataclass(frozen=True, slots=True)
class Edge:
    """A way out of a node. ``silent`` edges are taken without the caller pressing anything."""

    label: str
    target: str
    silent: bool


def edges(node: Node) -> tuple[Edge, ...]:
    match node:
        case PlayPrompt() | Greeting() | Voicemail():
            return (Edge("'next'", node.next, True),)
        case Menu():
            return (
                *(Edge(f"option '{o.key}'", o.target, False) for o in node.options),
                Edge("'after_retries'", node.after_retries, True),
            )
        case CollectDigits() | CallbackRequest():
            return (Edge("'next'", node.next, False), Edge("'after_retries'", node.after_retries, True))
        case BusinessHours():
            found = [Edge("'open'", node.open, True), Edge("'closed'", node.closed, True)]
            if node.holiday is not None:
                found.append(Edge("'holiday'", node.holiday, True))
            return tuple(found)
        case LanguageChoice():
            # A known customer skips the question, so with skip_if_known 'next' needs no key press.
            return (
                Edge("'next'", node.next, node.skip_if_known),
                Edge("'after_retries'", node.after_retries, True),
            )
        case Lookup():
            return (
                Edge("'next'", node.next, True),
                Edge("'not_found'", node.not_found, True),
                Edge("'unknown_customer'", node.unknown_customer, True),
            )
        case HandToRouting() | Hangup():
            return ()


@dataclass(frozen=True, slots=True)
class PromptUse:
    """A prompt a node plays; ``languages`` None means every language of the flow."""

    label: str
    prompt: str
    languages: tuple[str, ...] | None = None


def prompt_uses(node: Node) -> tuple[PromptUse, ...]:
    uses: list[PromptUse] = []

    def add(label: str, prompt: str | None) -> None:
        if prompt is not None:
            uses.append(PromptUse(label, prompt))

    match node:
        case PlayPrompt() | HandToRouting() | Voicemail() | Hangup():
            for p in node.prompts:
                add("'prompts'", p)
        case Menu() | CollectDigits():
            for p in node.prompts:
                add("'prompts'", p)
            add("'invalid_prompt'", node.invalid_prompt)
            add("'timeout_prompt'", node.timeout_prompt)
        case LanguageChoice():
            for p in node.prompts:
                add("'prompts'", p)
            announced = tuple(dict.fromkeys(o.language for o in node.options))
            for o in node.options:
                uses.append(PromptUse(f"option '{o.key}'", o.prompt, (o.language,)))
            if node.invalid_prompt is not None:
                # Said in every offered language: the caller has not chosen one yet.
                uses.append(PromptUse("'invalid_prompt'", node.invalid_prompt, announced))
        case Greeting():
            add("'known_prompt'", node.known_prompt)
            add("'unknown_prompt'", node.unknown_prompt)
            for tier, p in node.tier_prompts.items():
                add(f"tier '{tier}'", p)
        case Lookup():
            add("'found_prompt'", node.found_prompt)
            add("'not_found_prompt'", node.not_found_prompt)
            add("'after_prompt'", node.after_prompt)
            for status, p in node.status_prompts.items():
                add(f"status '{status}'", p)
        case CallbackRequest():
            add("'intro_prompt'", node.intro_prompt)
            add("'confirm_prompt'", node.confirm_prompt)
            add("'enter_prompt'", node.enter_prompt)
            add("'invalid_prompt'", node.invalid_prompt)
        case BusinessHours():
            pass
    return tuple(uses)


# --- loading ---------------------------------------------------------------------------------------

_MISSING = object()


class _Fields:
    """Typed reads of one node's mapping; every problem is recorded, named after the node."""

    def __init__(self, problems: list[str], where: str, data: Mapping[str, object]) -> None:
        self.problems = problems
        self.where = where
        self.data = data
        self.read: set[str] = {"kind"}

    def problem(self, message: str) -> None:
        self.problems.append(f"{self.where}{message}")

    def raw(self, key: str) -> object:
        self.read.add(key)
        return self.data.get(key, _MISSING)

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw(key)
        if value is _MISSING or value is None:
            if required:
                self.problem(f"'{key}' is required")
            return default
        if not isinstance(value, str) or not value.strip():
            self.problem(f"'{key}' must be non-empty text, not {value!r}")
            return default
        return value.strip()

    def target(self, key: str, *, default: str | None = None) -> str:
        value = self.text(key, default, required=default is None)
        return value if value is not None else ""

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.raw(key)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(f"'{key}' must be a whole number, not {value!r}")
            return default
        if not low <= value <= high:
            self.problem(f"'{key}' must be between {low} and {high}, not {value}")
            return default
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.problem(f"'{key}' must be true or false, not {value!r}")
            return default
        return value

    def names(self, key: str) -> tuple[str, ...]:
        """A list of ids; a single id is accepted as a list of one."""
        value = self.raw(key)
        if value is _MISSING or value is None:
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
            self.problem(f"'{key}' must be a list of names, not {value!r}")
            return ()
        return tuple(i.strip() for i in items)

    def mapping(self, key: str) -> Mapping[object, object]:
        value = self.raw(key)
        if value is _MISSING or value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problem(f"'{key}' must be a mapping, not {value!r}")
            return {}
        return value

    def finish(self) -> None:
        unknown = sorted(str(k) for k in self.data if k not in self.read)
        if unknown:
            self.problem(
                f"unknown field {', '.join(repr(k) for k in unknown)} (known: {', '.join(sorted(self.read))})"
            )


def _key(raw: object) -> str:
    # YAML reads an unquoted menu key 1 as the number 1; a key is what the phone sends, as text.
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    return raw if isinstance(raw, str) else ""


def _check_key(f: _Fields, label: str, raw: object) -> str | None:
    key = _key(raw)
    if len(key) != 1 or key not in DTMF_KEYS:
        f.problem(f"{label} {raw!r} is not one phone key (0-9, * or #)")
        return None
    return key


def _time_zone_ok(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _parse_range(f: _Fields, day: str, raw: object) -> TimeRange | None:
    match = _RANGE.match(raw) if isinstance(raw, str) else None
    if match is None:
        f.problem(f"hours on '{day}': {raw!r} is not a range like '09:00-18:00'")
        return None
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 1440:
        f.problem(f"hours on '{day}': {raw!r} is not a time of day")
        return None
    if end <= start:
        # Ranges never cross midnight: which weekday a night shift belongs to is ambiguous.
        f.problem(f"hours on '{day}': {raw!r} ends before it starts; split a night across two days")
        return None
    return TimeRange(start, end)


def _parse_options(f: _Fields) -> tuple[MenuOption, ...]:
    options: list[MenuOption] = []
    raw_options = f.mapping("options")
    if not raw_options:
        f.problem("'options' must list at least one key")
    for raw_key, raw in raw_options.items():
        key = _check_key(f, "option", raw_key)
        if key is None:
            continue
        if any(o.key == key for o in options):
            f.problem(f"option '{key}' is given twice")
            continue
        if isinstance(raw, str):
            options.append(MenuOption(key, raw.strip()))
        elif isinstance(raw, Mapping):
            sub = _Fields(f.problems, f"{f.where}option '{key}': ", raw)
            sub.read.discard("kind")
            options.append(
                MenuOption(
                    key,
                    sub.target("goto"),
                    label=sub.text("label", "") or "",
                    skills=sub.names("skills"),
                    priority=sub.integer("priority", 0, -MAX_PRIORITY, MAX_PRIORITY),
                )
            )
            sub.finish()
        else:
            f.problem(f"option '{key}' must name a node or be a mapping with 'goto', not {raw!r}")
    return tuple(options)


def _parse_node(node_id: str, data: Mapping[str, object], where: str, problems: list[str]) -> Node | None:
    f = _Fields(problems, where, data)
    kind = data.get("kind")
    node: Node | None = None
    if kind == "play":
        node = PlayPrompt(node_id, f.names("prompts"), f.target("next"), f.flag("interruptible", False))
        if not node.prompts:
            f.problem("'prompts' must name at least one prompt")
    elif kind == "menu":
        node = Menu(
            node_id,
            prompts=f.names("prompts"),
            options=_parse_options(f),
            after_retries=f.target("after_retries"),
            timeout_seconds=f.integer("timeout_seconds", 5, 1, MAX_TIMEOUT_SECONDS),
            retries=f.integer("retries", 2, 0, MAX_RETRIES),
            invalid_prompt=f.text("invalid_prompt"),
            timeout_prompt=f.text("timeout_prompt"),
        )
        if not node.prompts:
            f.problem("'prompts' must name at least one prompt")
    elif kind == "collect":
        name = f.text("name", node_id) or node_id
        min_digits = f.integer("min_digits", 1, 1, MAX_COLLECT_DIGITS)
        max_digits = f.integer("max_digits", max(min_digits, 1), 1, MAX_COLLECT_DIGITS)
        if max_digits < min_digits:
            f.problem(f"'max_digits' ({max_digits}) is less than 'min_digits' ({min_digits})")
        terminator_raw = f.raw("terminator")
        terminator: str | None = "#"
        if terminator_raw is None:
            terminator = None
        elif terminator_raw is not _MISSING:
            terminator = _check_key(f, "terminator", terminator_raw)
            if terminator is not None and terminator not in "#*":
                f.problem(f"terminator {terminator!r} must be '#' or '*': a digit would end the input early")
                terminator = "#"
        node = CollectDigits(
            node_id,
            name=name,
            prompts=f.names("prompts"),
            next=f.target("next"),
            after_retries=f.target("after_retries"),
            min_digits=min_digits,
            max_digits=max_digits,
            terminator=terminator,
            timeout_seconds=f.integer("timeout_seconds", 5, 1, MAX_TIMEOUT_SECONDS),
            masked=f.flag("masked", False),
            retries=f.integer("retries", 2, 0, MAX_RETRIES),
            invalid_prompt=f.text("invalid_prompt"),
            timeout_prompt=f.text("timeout_prompt"),
        )
        if not node.prompts:
            f.problem("'prompts' must name at least one prompt")
    elif kind == "hours":
        zone = f.text("time_zone", required=True) or "UTC"
        if not _time_zone_ok(zone):
            f.problem(f"time zone {zone!r} is not an IANA time zone name (like 'Asia/Shanghai')")
            zone = "UTC"
        weekly_raw = f.mapping("weekly")
        for day in weekly_raw:
            if day not in WEEKDAYS:
                f.problem(f"'weekly' has {day!r}; days are {', '.join(WEEKDAYS)}")
        weekly: list[tuple[TimeRange, ...]] = []
        for day in WEEKDAYS:
            raw_ranges = weekly_raw.get(day) or []
            if isinstance(raw_ranges, str):
                raw_ranges = [raw_ranges]
            if not isinstance(raw_ranges, list):
                f.problem(f"hours on '{day}' must be a list of ranges, not {raw_ranges!r}")
                raw_ranges = []
            parsed = [_parse_range(f, day, r) for r in raw_ranges]
            weekly.append(tuple(r for r in parsed if r is not None))
        holidays: set[date] = set()
        raw_holidays = f.raw("holidays")
        for raw in raw_holidays if isinstance(raw_holidays, list) else []:
            if isinstance(raw, date) and not isinstance(raw, datetime):
                holidays.add(raw)
                continue
            try:
                holidays.add(date.fromisoformat(str(raw)))
            except ValueError:
                f.problem(f"holiday {raw!r} is not a date like 2026-10-01")
        if raw_holidays is not _MISSING and raw_holidays is not None and not isinstance(raw_holidays, list):
            f.problem("'holidays' must be a list of dates")
        node = BusinessHours(
            node_id,
            time_zone=zone,
            weekly=tuple(weekly),
            open=f.target("open"),
            closed=f.target("closed"),
            holidays=frozenset(holidays),
            holiday=f.text("holiday"),
        )
    elif kind == "language":
        options: list[LanguageOption] = []
        raw_options = f.mapping("options")
        if not raw_options:
            f.problem("'options' must list at least one key")
        for raw_key, raw in raw_options.items():
            key = _check_key(f, "option", raw_key)
            if key is None:
                continue
            if not isinstance(raw, Mapping):
                f.problem(f"option '{key}' must be a mapping with 'language' and 'prompt'")
                continue
            sub = _Fields(problems, f"{where}option '{key}': ", raw)
            sub.read.discard("kind")
            options.append(
                LanguageOption(
                    key, sub.text("language", required=True) or "", sub.text("prompt", required=True) or ""
                )
            )
            sub.finish()
        next_node = f.target("next")
        node = LanguageChoice(
            node_id,
            options=tuple(options),
            next=next_node,
            after_retries=f.target("after_retries", default=next_node or "-"),
            prompts=f.names("prompts"),
            timeout_seconds=f.integer("timeout_seconds", 5, 1, MAX_TIMEOUT_SECONDS),
            retries=f.integer("retries", 1, 0, MAX_RETRIES),
            invalid_prompt=f.text("invalid_prompt"),
            skip_if_known=f.flag("skip_if_known", False),
        )
    elif kind == "greeting":
        tiers: dict[str, str] = {}
        for tier, prompt in f.mapping("tier_prompts").items():
            if not isinstance(tier, str) or not isinstance(prompt, str):
                f.problem(f"'tier_prompts' maps tier names to prompt names, not {tier!r}: {prompt!r}")
                continue
            tiers[tier] = prompt
        say_name_raw = f.text("say_name", SayName.AFTER.value) or SayName.AFTER.value
        if say_name_raw not in SayName.__members__.values():
            f.problem(f"'say_name' must be before, after or never, not {say_name_raw!r}")
            say_name_raw = SayName.AFTER.value
        node = Greeting(
            node_id,
            known_prompt=f.text("known_prompt", required=True) or "",
            unknown_prompt=f.text("unknown_prompt", required=True) or "",
            next=f.target("next"),
            tier_prompts=tiers,
            say_name=SayName(say_name_raw),
        )
    elif kind == "lookup":
        query_raw = f.text("query", required=True) or ""
        if query_raw not in LookupQuery.__members__.values():
            if query_raw:
                f.problem(f"query {query_raw!r} is not one of {', '.join(q.value for q in LookupQuery)}")
            query_raw = LookupQuery.BALANCE.value
        statuses: dict[str, str] = {}
        for status, prompt in f.mapping("status_prompts").items():
            if not isinstance(status, str) or not isinstance(prompt, str):
                f.problem(f"'status_prompts' maps statuses to prompt names, not {status!r}: {prompt!r}")
                continue
            statuses[status] = prompt
        next_node = f.target("next")
        not_found = f.target("not_found", default=next_node or "-")
        node = Lookup(
            node_id,
            query=LookupQuery(query_raw),
            found_prompt=f.text("found_prompt", required=True) or "",
            next=next_node,
            not_found=not_found,
            unknown_customer=f.target("unknown_customer", default=not_found),
            not_found_prompt=f.text("not_found_prompt"),
            after_prompt=f.text("after_prompt"),
            status_prompts=statuses,
            pin=f.text("pin"),
        )
    elif kind == "route":
        tier_priority: dict[str, int] = {}
        for tier, bonus in f.mapping("tier_priority").items():
            if not isinstance(tier, str) or isinstance(bonus, bool) or not isinstance(bonus, int):
                f.problem(f"'tier_priority' maps tier names to whole numbers, not {tier!r}: {bonus!r}")
                continue
            tier_priority[tier] = bonus
        language = f.text("language")
        node = HandToRouting(
            node_id,
            skills=f.names("skills"),
            language=None if language in (None, "caller") else language,
            priority=f.integer("priority", 0, 0, MAX_PRIORITY),
            tier_priority=tier_priority,
            prompts=f.names("prompts"),
        )
    elif kind == "voicemail":
        node = Voicemail(
            node_id,
            next=f.target("next"),
            prompts=f.names("prompts"),
            max_seconds=f.integer("max_seconds", 120, 5, MAX_VOICEMAIL_SECONDS),
            beep=f.flag("beep", True),
        )
    elif kind == "callback":
        node = CallbackRequest(
            node_id,
            intro_prompt=f.text("intro_prompt", required=True) or "",
            confirm_prompt=f.text("confirm_prompt", required=True) or "",
            enter_prompt=f.text("enter_prompt", required=True) or "",
            next=f.target("next"),
            after_retries=f.target("after_retries"),
            invalid_prompt=f.text("invalid_prompt"),
            timeout_seconds=f.integer("timeout_seconds", 8, 1, MAX_TIMEOUT_SECONDS),
            retries=f.integer("retries", 2, 0, MAX_RETRIES),
            skills=f.names("skills"),
            priority=f.integer("priority", 0, -MAX_PRIORITY, MAX_PRIORITY),
        )
    elif kind == "hangup":
        node = Hangup(node_id, prompts=f.names("prompts"))
    else:
        kinds = ", ".join(KINDS)
        problems.append(f"{where}unknown kind {kind!r} (kinds: {kinds})")
        return None
    f.finish()
    return node


def _parse_prompts(raw: object, prefix: str, problems: list[str]) -> dict[str, Prompt]:
    prompts: dict[str, Prompt] = {}
    if not isinstance(raw, Mapping):
        problems.append(f"{prefix}'prompts' must map prompt names to text per language")
        return prompts
    for prompt_id, raw_variants in raw.items():
        where = f"{prefix}prompt '{prompt_id}': "
        if not isinstance(prompt_id, str) or not _ID.match(prompt_id):
            problems.append(f"{where}a prompt name is letters, digits, '_' or '-'")
            continue
        if not isinstance(raw_variants, Mapping) or not raw_variants:
            problems.append(f"{where}must map languages to text or to {{file: ...}}")
            continue
        variants: dict[str, TextPrompt | RecordedPrompt] = {}
        for language, value in raw_variants.items():
            if isinstance(value, str) and value.strip():
                variants[str(language)] = TextPrompt(value.strip())
            elif isinstance(value, Mapping) and set(value) == {"file"} and isinstance(value["file"], str):
                file = value["file"].strip()
                parts = file.replace("\\", "/").split("/")
                # Flow files are data from a web form: a recording is never read from outside its folder.
                if not file or file.startswith(("/", "\\")) or ".." in parts or ":" in file:
                    problems.append(f"{where}recording {file!r} must be a path inside the recordings folder")
                    continue
                variants[str(language)] = RecordedPrompt(file)
            else:
                problems.append(f"{where}'{language}' must be text or {{file: name.wav}}, not {value!r}")
        prompts[prompt_id] = Prompt(prompt_id, variants)
    return prompts


def _silent_cycle(nodes: Mapping[str, Node]) -> list[str] | None:
    """A cycle of silent edges (as node ids, the first repeated at the end), or None.

    Iterative depth-first search: a flow file is data, and its depth must not reach Python's stack.
    """
    state: dict[str, int] = {}  # absent: not seen; 1: on the current trail; 2: done
    for root in sorted(nodes):
        if root in state:
            continue
        trail: list[str] = [root]
        stack: list[Iterator[str]] = [_silent_targets(nodes, root)]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[trail.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*trail[trail.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                trail.append(nxt)
                stack.append(_silent_targets(nodes, nxt))
    return None


def _silent_targets(nodes: Mapping[str, Node], node_id: str) -> Iterator[str]:
    return iter([e.target for e in edges(nodes[node_id]) if e.silent and e.target in nodes])


def load_flow(data: Mapping[str, object], source: str = "") -> Flow:
    """Validate a flow given as plain data and return it, or raise :class:`FlowError`.

    ``source`` (usually the file name) starts every problem so an author knows which file to open.
    """
    prefix = f"{source}: " if source else ""
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise FlowError(
            [f"{prefix}a flow must be a mapping with dnis, name, languages, start, prompts, nodes"]
        )

    known = {"dnis", "name", "default_language", "languages", "start", "prompts", "nodes"}
    for key in sorted(str(k) for k in data if k not in known):
        problems.append(f"{prefix}unknown top-level field {key!r} (known: {', '.join(sorted(known))})")

    dnis = data.get("dnis")
    if not isinstance(dnis, str) or not _DNIS.match(dnis):
        # YAML reads 010... as an octal number: a DNIS must be quoted to keep its digits.
        problems.append(f"{prefix}'dnis' must be the dialled number as quoted digits, not {dnis!r}")
        dnis = ""
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{prefix}'name' is required")
        name = ""

    raw_languages = data.get("languages")
    languages: tuple[str, ...] = ()
    if isinstance(raw_languages, list) and raw_languages and all(isinstance(x, str) for x in raw_languages):
        languages = tuple(dict.fromkeys(raw_languages))
        for lang in languages:
            if not _LANGUAGE.match(lang):
                problems.append(f"{prefix}language {lang!r} is not a language tag like 'zh' or 'en'")
    else:
        problems.append(f"{prefix}'languages' must list the flow's languages, like [zh, en]")
    default_language = data.get("default_language", languages[0] if languages else None)
    if not isinstance(default_language, str) or default_language not in languages:
        problems.append(f"{prefix}'default_language' {default_language!r} is not one of 'languages'")
        default_language = languages[0] if languages else ""

    prompts = _parse_prompts(data.get("prompts", {}), prefix, problems)
    for prompt in prompts.values():
        for lang in prompt.variants:
            if lang not in languages:
                problems.append(
                    f"{prefix}prompt '{prompt.id}': language '{lang}' is not one of the flow's languages"
                )

    nodes: dict[str, Node] = {}
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, Mapping) or not raw_nodes:
        problems.append(f"{prefix}'nodes' must map node ids to nodes")
        raw_nodes = {}
    for node_id, raw in raw_nodes.items():
        where = f"{prefix}node '{node_id}': "
        if not isinstance(node_id, str) or not _ID.match(node_id):
            problems.append(f"{where}a node id is letters, digits, '_' or '-', starting with a letter")
            continue
        if not isinstance(raw, Mapping):
            problems.append(f"{where}must be a mapping with a 'kind'")
            continue
        node = _parse_node(node_id, raw, where, problems)
        if node is not None:
            nodes[node_id] = node

    start = data.get("start")
    if not isinstance(start, str) or start not in raw_nodes:
        problems.append(f"{prefix}start node {start!r} does not exist")
        start = ""

    if problems:
        # The graph checks below would only repeat these problems in a more confusing form.
        raise FlowError(problems)

    masked_inputs = {n.name for n in nodes.values() if isinstance(n, CollectDigits) and n.masked}
    for node in nodes.values():
        where = f"{prefix}node '{node.id}': "
        for edge in edges(node):
            if edge.target not in nodes:
                problems.append(f"{where}{edge.label} goes to '{edge.target}', which does not exist")
        for use in prompt_uses(node):
            used = prompts.get(use.prompt)
            if used is None:
                problems.append(f"{where}{use.label} plays prompt '{use.prompt}', which is not in 'prompts'")
                continue
            for lang in use.languages or languages:
                if used.in_language(lang) is None:
                    problems.append(
                        f"{where}{use.label} plays prompt '{use.prompt}', which has no text or recording "
                        f"for language '{lang}'"
                    )
        if isinstance(node, LanguageChoice):
            for option in node.options:
                if option.language not in languages:
                    problems.append(
                        f"{where}option '{option.key}' chooses language '{option.language}', "
                        "which is not one of the flow's languages"
                    )
        if isinstance(node, HandToRouting) and node.language is not None and node.language not in languages:
            problems.append(f"{where}'language' {node.language!r} is not one of the flow's languages")
        if isinstance(node, Lookup) and node.pin is not None and node.pin not in masked_inputs:
            problems.append(f"{where}'pin' {node.pin!r} is not the name of a masked collect node")

    reachable: set[str] = set()
    frontier = [start]
    while frontier:
        node_id = frontier.pop()
        if node_id in reachable or node_id not in nodes:
            continue
        reachable.add(node_id)
        frontier.extend(e.target for e in edges(nodes[node_id]))
    for node_id in nodes:
        if node_id not in reachable:
            problems.append(f"{prefix}node '{node_id}': not reachable from the start node '{start}'")

    cycle = _silent_cycle(nodes)
    if cycle is not None:
        problems.append(
            f"{prefix}node '{cycle[0]}': a caller who presses nothing would loop forever: {' → '.join(cycle)}"
        )

    if problems:
        raise FlowError(problems)
    return Flow(
        dnis=str(dnis),
        name=str(name).strip(),
        default_language=str(default_language),
        languages=languages,
        start=start,
        nodes=nodes,
        prompts=prompts,
        source=source,
    )
