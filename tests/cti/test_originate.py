"""Originate with a pre-assigned ChannelId: validated before sending, never sent twice, and an
answer lost with the link is reconciled by looking for the ChannelId once the link is back.

The link-loss cases run against the scripted AMI server (tests/support/ami_server.py): a drop
exactly after an Originate is written cannot be produced on demand by a real Asterisk. The same
reconciliation runs against the real sandbox Asterisk in tests/e2e/test_originate.py.
"""

from __future__ import annotations

import pytest

from cti.originate import OriginateOutcome, OriginateRequest, originate
from tests.support.ami_server import FakeAmi


def request(**overrides: object) -> OriginateRequest:
    values: dict[str, object] = dict(
        channel="PJSIP/1001", context="cti-wait", exten="s", channel_id="cti-abc123"
    )
    values.update(overrides)
    return OriginateRequest(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        {"channel": "PJSIP/1001&PJSIP/1002"},
        {"channel": "PJSIP/1001,30,tT"},
        {"channel": "PJSIP/1001\r\nAction: Hangup"},
        {"channel": "DAHDI/1"},
        {"exten": "8001;x"},
        {"context": "from trunk"},
        {"caller_id_num": "1380013800a"},
        {"caller_id_name": "张伟, 李娜"},
        {"variables": {"CTI_CALL": "a,b"}},
        {"variables": {"BAD NAME": "x"}},
        {"channel_id": "id with spaces"},
        {"ring_seconds": 0},
    ],
)
def test_anything_unsafe_for_asterisk_is_refused_before_sending(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        request(**bad)


def test_headers_carry_the_channel_id_and_a_chinese_caller_name() -> None:
    headers = request(
        caller_id_num="+8613800138000", caller_id_name="张伟", variables={"CTI_CALL": "k1"}
    ).headers()
    assert ("ChannelId", "cti-abc123") in headers
    assert ("CallerID", '"张伟" <+8613800138000>') in headers
    assert ("Variable", "CTI_CALL=k1") in headers
    assert ("Async", "true") in headers


async def test_accepted(server: FakeAmi, start) -> None:
    client = start()
    await client.wait_connected(5)
    result = await originate(client, request())
    assert result.outcome is OriginateOutcome.ACCEPTED and result.channel_id == "cti-abc123"


async def test_refused_by_asterisk(server: FakeAmi, start) -> None:
    server.fail = {"Originate": "Originate failed"}
    client = start()
    await client.wait_connected(5)
    result = await originate(client, request())
    assert result.outcome is OriginateOutcome.FAILED and result.message == "Originate failed"


@pytest.mark.parametrize(("live", "outcome"), [(True, OriginateOutcome.LIVE_AFTER_LOSS),
                                                (False, OriginateOutcome.ABSENT_AFTER_LOSS)])  # fmt: skip
async def test_a_lost_answer_is_reconciled_by_channel_id_and_never_resent(
    server: FakeAmi,
    start,
    live: bool,
    outcome: OriginateOutcome,
) -> None:
    server.drop_after = {"Originate"}
    if live:
        server.channels = [
            {"Channel": "PJSIP/1001-00000001", "Uniqueid": "cti-abc123", "Linkedid": "cti-abc123"}
        ]
    else:
        server.channels = [{"Channel": "PJSIP/trunk-00000002", "Uniqueid": "99.1", "Linkedid": "99.1"}]
    client = start()
    await client.wait_connected(5)
    result = await originate(client, request(), reconcile_within=5)
    assert result.outcome is outcome
    assert len(server.actions("Originate")) == 1
    assert len(server.actions("CoreShowChannels")) == 1


async def test_unresolved_when_the_link_does_not_come_back(server: FakeAmi, start) -> None:
    server.drop_after = {"Originate"}
    client = start()
    await client.wait_connected(5)
    server.refuse_logins = True
    result = await originate(client, request(), reconcile_within=0.5)
    assert result.outcome is OriginateOutcome.UNRESOLVED
    assert len(server.actions("Originate")) == 1
