"""Phone number normalisation: whatever arrives as an ANI or is typed into the CRM becomes E.164.

Pure: no I/O, no clock. ``normalize`` never raises; anything that is not a usable number comes back
with ``valid=False`` and a ``reason`` from :class:`InvalidReason`, because a caller ID is untrusted
input (Asterisk hands over ``anonymous``, ``<unknown>``, internal extensions, or whatever a trunk or a
softphone put in the From header).

Rules, in order:

1. Unicode is folded with NFKC first, so full-width digits and ``＋`` typed on a Chinese keyboard work.
2. ``tel:``/``sip:``/``sips:`` URIs and ``"Name" <sip:...>`` leftovers are reduced to their user part.
3. Withheld markers (``anonymous``, ``unknown``, ``private``, ``restricted``, ...) and inputs with
   characters other than digits, a leading ``+`` and the usual separators (space, ``-``, ``.``,
   ``/``, parentheses) are rejected before parsing. Letters are never read as vanity digits: an ANI
   never legitimately holds them.
4. The number is parsed for ``default_region`` (national numbers, the region's own international
   prefix such as ``011`` for the US and ``00`` for China).
5. If that gives no valid number, two international readings are tried, because trunks deliver them
   regardless of the region: ``00`` followed by a country code (the ITU prefix used by most of the
   world), and bare ``<country code><national number>`` without ``+``. They are tried only when the
   digits cannot even be a number of the default region (wrong length), and a reading is kept only
   when it is a valid number, so a local number always wins.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberFormat, PhoneNumberType, ValidationResult
from phonenumbers import timezone as phone_timezone

# Longer inputs are junk by construction (E.164 allows 15 digits); the cap also bounds parse cost.
MAX_INPUT_CHARS = 64
_MIN_BARE_INTERNATIONAL_DIGITS = 10

_WITHHELD = frozenset(
    {
        "anonymous",
        "unknown",
        "<unknown>",
        "private",
        "restricted",
        "unavailable",
        "withheld",
        "blocked",
        "anonymous.invalid",
    }
)
_URI_SCHEME = re.compile(r"^(?:tel|sips?):", re.IGNORECASE)
_ANGLE_URI = re.compile(r"<((?:tel|sips?):[^>]*)>", re.IGNORECASE)
_ALLOWED = re.compile(r"^\+?[0-9 ()./-]+$")
_SEPARATORS = re.compile(r"[ ()./-]")


class InvalidReason(enum.StrEnum):
    """Why a number is not usable. Values are stable: they are stored and shown to users."""

    EMPTY = "empty"
    WITHHELD = "withheld"
    NOT_A_NUMBER = "not_a_number"
    INPUT_TOO_LONG = "input_too_long"
    INVALID_COUNTRY_CODE = "invalid_country_code"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    INVALID_LENGTH = "invalid_length"
    LOCAL_ONLY = "local_only"
    NOT_ASSIGNED = "not_assigned"  # the right length, but no such number range exists


class NumberType(enum.StrEnum):
    FIXED_LINE = "fixed_line"
    MOBILE = "mobile"
    FIXED_LINE_OR_MOBILE = "fixed_line_or_mobile"
    TOLL_FREE = "toll_free"
    PREMIUM_RATE = "premium_rate"
    SHARED_COST = "shared_cost"
    VOIP = "voip"
    PERSONAL_NUMBER = "personal_number"
    PAGER = "pager"
    UAN = "uan"
    VOICEMAIL = "voicemail"
    UNKNOWN = "unknown"


_KINDS: dict[int, NumberType] = {
    PhoneNumberType.FIXED_LINE: NumberType.FIXED_LINE,
    PhoneNumberType.MOBILE: NumberType.MOBILE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE: NumberType.FIXED_LINE_OR_MOBILE,
    PhoneNumberType.TOLL_FREE: NumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE: NumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST: NumberType.SHARED_COST,
    PhoneNumberType.VOIP: NumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER: NumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER: NumberType.PAGER,
    PhoneNumberType.UAN: NumberType.UAN,
    PhoneNumberType.VOICEMAIL: NumberType.VOICEMAIL,
}

_POSSIBILITY_REASONS: dict[int, InvalidReason] = {
    ValidationResult.INVALID_COUNTRY_CODE: InvalidReason.INVALID_COUNTRY_CODE,
    ValidationResult.TOO_SHORT: InvalidReason.TOO_SHORT,
    ValidationResult.TOO_LONG: InvalidReason.TOO_LONG,
    ValidationResult.INVALID_LENGTH: InvalidReason.INVALID_LENGTH,
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: InvalidReason.LOCAL_ONLY,
}


@dataclass(frozen=True, slots=True)
class NormalizedNumber:
    """The outcome of :func:`normalize`.

    ``raw`` is the input exactly as received. ``e164`` is set if and only if ``valid``. ``possible``
    says the digits have a plausible length for their region even when no such range is assigned.
    ``region`` is the ISO 3166 region of a parsed number (``None`` when unknown or shared, as for
    ``+800``). ``reason`` is ``None`` exactly when ``valid``.
    """

    raw: str
    e164: str | None
    valid: bool
    possible: bool
    region: str | None
    number_type: NumberType
    reason: InvalidReason | None


def _invalid(raw: str, reason: InvalidReason) -> NormalizedNumber:
    return NormalizedNumber(raw, None, False, False, None, NumberType.UNKNOWN, reason)


def _user_part(text: str) -> str:
    """The number inside a SIP or tel URI; other text unchanged."""
    match = _ANGLE_URI.search(text)
    if match:
        text = match.group(1)
    if _URI_SCHEME.match(text):
        text = _URI_SCHEME.sub("", text, count=1)
        text = text.split("@", 1)[0].split(";", 1)[0]
    return text.strip()


_PARSE_REASONS: dict[int, InvalidReason] = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: InvalidReason.INVALID_COUNTRY_CODE,
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: InvalidReason.TOO_SHORT,
    phonenumbers.NumberParseException.TOO_SHORT_NSN: InvalidReason.TOO_SHORT,
    phonenumbers.NumberParseException.TOO_LONG: InvalidReason.TOO_LONG,
}


def _parse(candidate: str, region: str) -> PhoneNumber | InvalidReason:
    try:
        return phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException as exc:
        return _PARSE_REASONS.get(exc.error_type, InvalidReason.NOT_A_NUMBER)


def _result(raw: str, number: PhoneNumber) -> NormalizedNumber:
    valid = phonenumbers.is_valid_number(number)
    possibility = phonenumbers.is_possible_number_with_reason(number)
    possible = possibility in (ValidationResult.IS_POSSIBLE, ValidationResult.IS_POSSIBLE_LOCAL_ONLY)
    region = phonenumbers.region_code_for_number(number)
    if region in (None, "ZZ", "001"):
        region = None
    if valid:
        e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
        number_type = _KINDS.get(phonenumbers.number_type(number), NumberType.UNKNOWN)
        return NormalizedNumber(raw, e164, True, possible, region, number_type, None)
    reason = _POSSIBILITY_REASONS.get(possibility, InvalidReason.NOT_ASSIGNED)
    return NormalizedNumber(raw, None, False, possible, region, NumberType.UNKNOWN, reason)


def normalize(raw: str, default_region: str) -> NormalizedNumber:
    """Normalise ``raw`` (an ANI or a typed number) for ``default_region`` (ISO 3166, e.g. "CN").

    Never raises for any ``raw``; see the module docstring for the rules.
    """
    if len(raw) > MAX_INPUT_CHARS:
        return _invalid(raw, InvalidReason.INPUT_TOO_LONG)
    text = _user_part(unicodedata.normalize("NFKC", raw).strip())
    if not text:
        return _invalid(raw, InvalidReason.EMPTY)
    if text.lower() in _WITHHELD:
        return _invalid(raw, InvalidReason.WITHHELD)
    if not _ALLOWED.match(text):
        return _invalid(raw, InvalidReason.NOT_A_NUMBER)
    digits = _SEPARATORS.sub("", text)
    region = default_region.upper()

    first = _parse(digits, region)
    if isinstance(first, InvalidReason):
        return _invalid(raw, first)
    result = _result(raw, first)
    # Only a reading that cannot even be a number of the default region is retried internationally,
    # so a mistyped local number is never turned into some other country's valid number.
    if result.valid or result.possible or digits.startswith("+"):
        return result

    alternatives: list[str] = []
    if digits.startswith("00") and not digits.startswith("000"):
        alternatives.append("+" + digits[2:])
    elif len(digits) >= _MIN_BARE_INTERNATIONAL_DIGITS and not digits.startswith("0"):
        alternatives.append("+" + digits)
    for candidate in alternatives:
        number = _parse(candidate, region)
        if isinstance(number, PhoneNumber) and phonenumbers.is_valid_number(number):
            return _result(raw, number)
    return result


def time_zones(e164: str) -> tuple[str, ...]:
    """IANA time zones a number may be in (several for large countries); ``()`` when unknown.

    Never raises: anything that is not a parseable international number gives ``()``.
    """
    number = _parse(e164, "ZZ")
    if isinstance(number, InvalidReason):
        return ()
    zones = tuple(phone_timezone.time_zones_for_number(number))
    return tuple(z for z in zones if z != phone_timezone.UNKNOWN_TIMEZONE)
