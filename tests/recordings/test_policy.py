"""The recording policy, file names and retention: pure, table-tested."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from recordings.policy import (
    RECORD_ALL,
    RECORD_NONE,
    RecordingPolicy,
    check_linkedid,
    expires_before,
    file_name,
    parse_policy,
    selects,
)


@pytest.mark.parametrize(
    ("text", "percent"),
    [("all", 100), ("none", 0), ("0%", 0), ("25%", 25), ("100%", 100), ("7%", 7)],
)
def test_policies_parse(text: str, percent: int) -> None:
    assert parse_policy(text) == RecordingPolicy(percent)


@pytest.mark.parametrize("text", ["", "ALL", "101%", "-1%", "25", "25 %", "1e2%", "50%\n", "007%"])
def test_bad_policies_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="recording policy"):
        parse_policy(text)


@pytest.mark.parametrize("percent", [-1, 101, True, 2.5])
def test_a_percentage_is_0_to_100(percent: object) -> None:
    with pytest.raises(ValueError):
        RecordingPolicy(percent)  # type: ignore[arg-type]


def test_policies_print_as_they_are_written() -> None:
    assert [str(p) for p in (RECORD_ALL, RECORD_NONE, RecordingPolicy(25))] == ["all", "none", "25%"]


@pytest.mark.parametrize(
    ("policy", "linkedid", "recorded"),
    [
        (RECORD_ALL, "1732280000.0", True),
        (RECORD_ALL, "1732280000.99", True),
        (RECORD_NONE, "1732280000.0", False),
        (RecordingPolicy(25), "1732280000.24", True),
        (RecordingPolicy(25), "1732280000.25", False),
        (RecordingPolicy(25), "1732280000.124", True),  # the sequence modulo 100, as the dialplan
        (RecordingPolicy(25), "1732280000.199", False),
        (RecordingPolicy(1), "pbx-east-1732280000.300", True),  # a system name prefix
    ],
)
def test_selects_is_the_dialplans_rule(policy: RecordingPolicy, linkedid: str, recorded: bool) -> None:
    assert selects(policy, linkedid) is recorded


def test_a_percentage_records_about_that_share_of_consecutive_calls() -> None:
    # Each call takes two channels (caller and agent), so Linkedids advance by two.
    ids = [f"1732280000.{n}" for n in range(0, 2000, 2)]
    share = sum(selects(RecordingPolicy(30), i) for i in ids) / len(ids)
    assert share == pytest.approx(0.30, abs=0.01)


@pytest.mark.parametrize(
    "linkedid",
    [
        "",
        "../1.2",
        "1.2/x",
        "1732280000",
        "1732280000.1\n",
        "1732280000.1\x00",
        "a b-1.2",
        ".1",
        "x" * 40 + "1.2",
    ],
)
def test_only_asterisks_linkedids_make_file_names(linkedid: str) -> None:
    with pytest.raises(ValueError, match="Linkedid"):
        check_linkedid(linkedid)
    with pytest.raises(ValueError):
        file_name(linkedid)


def test_file_names_are_the_linkedid() -> None:
    assert file_name("1732280000.42") == "1732280000.42.wav"
    assert file_name("pbx_2-1732280000.42") == "pbx_2-1732280000.42.wav"


def test_retention_counts_whole_days_back_from_now() -> None:
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    assert expires_before(now, 30) == now - timedelta(days=30)
    with pytest.raises(ValueError, match="at least one day"):
        expires_before(now, 0)
