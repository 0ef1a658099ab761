"""Phone number normalisation: table-driven, pure."""

from __future__ import annotations

import pytest

from cti.phone import MAX_INPUT_CHARS, InvalidReason, NumberType, normalize, time_zones

VALID = [
    # raw, default region, e164, region, type
    ("+8613800138000", "US", "+8613800138000", "CN", NumberType.MOBILE),
    ("+8613800138000", "CN", "+8613800138000", "CN", NumberType.MOBILE),
    ("008613800138000", "CN", "+8613800138000", "CN", NumberType.MOBILE),  # China's own IDD
    ("008613800138000", "US", "+8613800138000", "CN", NumberType.MOBILE),  # 00 from a trunk, not US IDD
    ("01186 138 0013 8000", "US", "+8613800138000", "CN", NumberType.MOBILE),  # US IDD
    ("13800138000", "CN", "+8613800138000", "CN", NumberType.MOBILE),  # national
    ("138-0013-8000", "CN", "+8613800138000", "CN", NumberType.MOBILE),
    ("(138) 0013 8000", "CN", "+8613800138000", "CN", NumberType.MOBILE),
    ("8613800138000", "US", "+8613800138000", "CN", NumberType.MOBILE),  # bare international
    ("8613800138000", "CN", "+8613800138000", "CN", NumberType.MOBILE),
    ("021 6123 4567", "CN", "+862161234567", "CN", NumberType.FIXED_LINE),
    ("(201) 555-0123", "US", "+12015550123", "US", NumberType.FIXED_LINE_OR_MOBILE),
    ("201.555.0123", "US", "+12015550123", "US", NumberType.FIXED_LINE_OR_MOBILE),
    ("1-201-555-0123", "US", "+12015550123", "US", NumberType.FIXED_LINE_OR_MOBILE),
    ("+44 20 7946 0958", "US", "+442079460958", "GB", NumberType.FIXED_LINE),
    ("  +8613800138000  ", "us", "+8613800138000", "CN", NumberType.MOBILE),  # region case, padding
    ("＋８６１３８００１３８０００", "US", "+8613800138000", "CN", NumberType.MOBILE),  # full-width input
    ("tel:+8613800138000", "US", "+8613800138000", "CN", NumberType.MOBILE),
    ("sip:+8613800138000@10.0.0.1:5060;user=phone", "US", "+8613800138000", "CN", NumberType.MOBILE),
    ('"张伟" <sip:13800138000@trunk.example>', "CN", "+8613800138000", "CN", NumberType.MOBILE),
]


@pytest.mark.parametrize(("raw", "region", "e164", "number_region", "number_type"), VALID)
def test_valid_numbers(raw: str, region: str, e164: str, number_region: str, number_type: NumberType) -> None:
    result = normalize(raw, region)
    assert result.raw == raw
    assert result.e164 == e164
    assert result.valid
    assert result.possible
    assert result.region == number_region
    assert result.number_type is number_type
    assert result.reason is None


INVALID = [
    # raw, default region, reason
    ("", "US", InvalidReason.EMPTY),
    ("   ", "US", InvalidReason.EMPTY),
    ("anonymous", "US", InvalidReason.WITHHELD),
    ("Anonymous", "CN", InvalidReason.WITHHELD),
    ("<unknown>", "US", InvalidReason.WITHHELD),
    ("unknown", "US", InvalidReason.WITHHELD),
    ("Restricted", "US", InvalidReason.WITHHELD),
    ("sip:anonymous@anonymous.invalid", "US", InvalidReason.WITHHELD),
    ("1001", "US", InvalidReason.TOO_SHORT),  # an internal extension
    ("1001", "CN", InvalidReason.TOO_SHORT),
    ("110", "CN", InvalidReason.TOO_SHORT),  # an emergency short code is not a caller's number
    ("'; DROP TABLE x;--", "US", InvalidReason.NOT_A_NUMBER),
    ("<script>alert(1)</script>", "US", InvalidReason.NOT_A_NUMBER),
    ("1-800-FLOWERS", "US", InvalidReason.NOT_A_NUMBER),  # letters are never vanity digits here
    ("+86 138\x000013 8000", "US", InvalidReason.NOT_A_NUMBER),
    ("13800138000 OR 1=1", "CN", InvalidReason.NOT_A_NUMBER),
    ("+", "US", InvalidReason.NOT_A_NUMBER),
    ("--", "US", InvalidReason.NOT_A_NUMBER),
    ("++8613800138000", "US", InvalidReason.NOT_A_NUMBER),
    ("张伟", "CN", InvalidReason.NOT_A_NUMBER),
    ("+999 1234 5678", "US", InvalidReason.INVALID_COUNTRY_CODE),
    ("+86 138 0013 8000 1234 5678", "US", InvalidReason.TOO_LONG),
    ("1" * (MAX_INPUT_CHARS + 1), "US", InvalidReason.INPUT_TOO_LONG),
    ("x" * 100_000, "US", InvalidReason.INPUT_TOO_LONG),
]


@pytest.mark.parametrize(("raw", "region", "reason"), INVALID)
def test_invalid_numbers_never_raise(raw: str, region: str, reason: InvalidReason) -> None:
    result = normalize(raw, region)
    assert result.raw == raw
    assert result.e164 is None
    assert not result.valid
    assert result.reason is reason
    assert result.number_type is NumberType.UNKNOWN


def test_possible_but_unassigned_number() -> None:
    # Ten digits, as a US number has, but no area code starts with 1.
    result = normalize("(123) 123-4567", "US")
    assert result.possible
    assert result.reason is InvalidReason.NOT_ASSIGNED
    assert result.e164 is None


def test_a_mistyped_local_number_is_not_read_as_international() -> None:
    # Ten digits are a possible US number: never reinterpreted as +55 (Brazil) or anything else.
    result = normalize("5551234567", "US")
    assert not result.valid
    assert result.e164 is None


def test_unknown_default_region_still_accepts_international_numbers() -> None:
    assert normalize("+8613800138000", "ZZ").e164 == "+8613800138000"
    assert normalize("13800138000", "ZZ").valid is False
    assert normalize("+8613800138000", "not a region").e164 == "+8613800138000"


@pytest.mark.parametrize(
    ("e164", "zones"),
    [
        ("+8613800138000", ("Asia/Shanghai",)),
        ("+442079460958", ("Europe/London",)),
        ("+12015550123", ("America/New_York",)),
        ("not a number", ()),
        ("", ()),
        ("+999", ()),
    ],
)
def test_time_zones(e164: str, zones: tuple[str, ...]) -> None:
    assert time_zones(e164) == zones
