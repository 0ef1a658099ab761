"""The AMI client against a scripted AMI server over real loopback sockets.

The server (tests/support/ami_server.py) is a fake because the failures proven here, a hung manager,
a drop right after an Originate was written, cannot be produced on demand by a real Asterisk; the
end-to-end tests run the same client against the sandbox Asterisk.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable

import pytest
from pydantic import SecretStr

from cti.ami import AmiClient, LinkUp, ResyncNeeded
from cti.ami import LinkDown as LinkDownMarker
from cti.ports import ActionFailed, ActionOutcomeUnknown, ActionSink, LinkDown
from tests.cti.conftest import SECRET, Factory, decode, settings
from tests.support.ami_server import FakeAmi, frame


def drain(queue: asyncio.Queue[object]) -> list[object]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def next_item(client: AmiClient, within: float = 2.0) -> object:
    async with asyncio.timeout(within):
        return await client.events.get()


async def wait_for(predicate: Callable[[], bool], within: float = 3.0) -> None:
    """Poll a counter or state flag: the client exposes no event for each of them."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


# -------------------------------------------------------------------------------------- login


async def test_login_then_link_up_precedes_the_events_of_the_same_read(
    server: FakeAmi, start: Factory
) -> None:
    client = start()
    await client.wait_connected(2)
    assert client.connected
    assert client.generation == 1
    assert await next_item(client) == LinkUp(1, "Asterisk Call Manager/9.0.0")
    booted = await next_item(client)  # written by the server in the same write as the login answer
    assert isinstance(booted, dict)
    assert booted["Event"] == "FullyBooted"
    (login,) = server.actions("Login")
    assert login.headers["Username"] == "cti"
    assert login.headers["Secret"] == SECRET
    assert login.headers["Events"] == "on"
    assert client.counters.connects == 1
    assert client.counters.login_failures == 0


async def test_refused_login_is_counted_retried_and_never_logs_the_secret(
    server: FakeAmi, start: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cti.ami")
    server.refuse_logins = True
    client = start()
    await server.wait_action("Login", count=3)
    assert not client.connected
    assert client.counters.login_failures >= 2
    with pytest.raises(LinkDown):
        await client.send("Ping")
    server.refuse_logins = False
    await client.wait_connected(3)
    assert SECRET not in caplog.text
    assert "Authentication failed" in caplog.text
    assert SECRET not in repr(client)
    assert SECRET not in str(client.settings)


async def test_secret_with_a_newline_is_refused_before_writing_and_not_logged(
    server: FakeAmi, start: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cti.ami")
    client = start(secret=SecretStr(SECRET + "\r\nAction: Originate"))
    await wait_for(lambda: client.counters.login_failures >= 2)
    assert server.actions("Login") == []
    assert server.actions("Originate") == []
    assert SECRET not in caplog.text
    assert "'Secret'" in caplog.text


async def test_unreachable_server_is_retried_without_raising(server: FakeAmi, start: Factory) -> None:
    port = server.port
    await server.stop()
    client = start(port=port)
    await wait_for(lambda: client.counters.connect_failures >= 3)
    assert client.counters.reconnects >= 2
    assert not client.connected


# ------------------------------------------------------------------------------------ actions


async def test_responses_are_matched_by_action_id_even_out_of_order(server: FakeAmi, start: Factory) -> None:
    client = start()
    await client.wait_connected(2)
    server.hold = {"Getvar"}
    calls = [asyncio.create_task(client.send("Getvar", {"Variable": f"V{i}"})) for i in range(5)]
    await server.wait_action("Getvar", count=5)
    server.release(reverse=True)
    results = await asyncio.gather(*calls)
    sent = {a.headers["Variable"]: a.action_id for a in server.actions("Getvar")}
    for i, result in enumerate(results):
        assert result["ActionID"] == sent[f"V{i}"]
    ids = [a.action_id for a in server.received]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("ami-") for i in ids)


async def test_ping_returns_the_response_headers(server: FakeAmi, start: Factory) -> None:
    client = start()
    await client.wait_connected(2)
    sink: ActionSink = client
    response = await sink.send("Ping")
    assert response["Response"] == "Success"
    assert response["Ping"] == "Pong"
    assert "Timestamp" in response


async def test_response_error_raises_action_failed(server: FakeAmi, start: Factory) -> None:
    client = start()
    await client.wait_connected(2)
    server.fail["Redirect"] = "Channel does not exist: PJSIP/9999-00000001"
    with pytest.raises(ActionFailed) as info:
        await client.send(
            "Redirect", {"Channel": "PJSIP/9999-00000001", "Context": "x", "Exten": "1", "Priority": "1"}
        )
    assert info.value.action == "Redirect"
    assert info.value.message == "Channel does not exist: PJSIP/9999-00000001"
    assert client.connected


async def test_timeout_raises_and_the_late_response_is_discarded(server: FakeAmi, start: Factory) -> None:
    client = start()
    await client.wait_connected(2)
    drain(client.events)
    server.hold = {"Getvar"}
    with pytest.raises(TimeoutError):
        await client.send("Getvar", {"Variable": "X"}, timeout=0.1)
    server.release()
    await wait_for(lambda: client.counters.unmatched_responses == 1)
    assert client.connected
    assert client.events.empty()
    server.hold = set()
    assert (await client.send("Ping"))["Ping"] == "Pong"


async def test_send_while_down_raises_link_down_and_writes_nothing(server: FakeAmi, start: Factory) -> None:
    client = start(secret=SecretStr("wrong"))
    await server.wait_action("Login")
    with pytest.raises(LinkDown):
        await client.send("Originate", {"Channel": "PJSIP/1001"})
    await asyncio.sleep(0.05)
    assert server.actions("Originate") == []


async def test_invalid_action_raises_value_error_before_anything_is_written(
    server: FakeAmi, start: Factory
) -> None:
    client = start()
    await client.wait_connected(2)
    count = len(server.received)
    with pytest.raises(ValueError, match="'Channel'"):
        await client.send("Originate", {"Channel": "PJSIP/1001\r\nAction: Hangup"})
    with pytest.raises(ValueError, match="reserved"):
        await client.send("Ping", {"ActionID": "mine"})
    with pytest.raises(ValueError, match="managed by the AMI client"):
        await client.send("Logoff")
    await client.send("Ping")
    assert [a.action for a in server.received[count:]] == ["Ping"]


async def test_drop_while_originate_awaits_gives_outcome_unknown_and_it_is_never_resent(
    server: FakeAmi, start: Factory
) -> None:
    client = start()
    await client.wait_connected(2)
    server.drop_after = {"Originate"}  # the connection dies right after the Originate is written
    with pytest.raises(ActionOutcomeUnknown, match="ActionID ami-1-"):
        await client.send("Originate", {"Channel": "PJSIP/13800138000@trunk", "Exten": "8001"})
    server.drop_after = set()
    await wait_for(lambda: client.generation == 2 and client.connected)
    await client.send("Ping")  # the new link is answering; anything re-sent would have arrived first
    await asyncio.sleep(0.1)
    assert len(server.actions("Originate")) == 1
    assert [a.connection for a in server.actions("Login")] == [1, 2]
    assert [a.action for a in server.received if a.connection == 2] == ["Login", "Ping"]
    items = drain(client.events)
    markers = [i for i in items if not isinstance(i, dict)]
    assert markers == [
        LinkUp(1, "Asterisk Call Manager/9.0.0"),
        LinkDownMarker(1, "connection closed by Asterisk"),
        LinkUp(2, "Asterisk Call Manager/9.0.0"),
    ]


async def test_drop_while_an_idempotent_action_awaits_gives_link_down(
    server: FakeAmi, start: Factory
) -> None:
    client = start()
    await client.wait_connected(2)
    server.hold = {"Ping"}
    call = asyncio.create_task(client.send("Ping"))
    await server.wait_action("Ping")
    server.drop()
    with pytest.raises(LinkDown, match="safe to retry"):
        await call
    server.hold = set()
    await wait_for(lambda: client.generation == 2 and client.connected)
    assert len(server.actions("Ping")) == 1


async def test_hung_server_is_found_by_the_ping_deadline_and_reconnected(
    server: FakeAmi, start: Factory
) -> None:
    client = start(ping_interval=0.05, ping_timeout=0.2)
    await client.wait_connected(2)
    server.hang()
    await wait_for(lambda: client.counters.ping_timeouts == 1)
    await wait_for(lambda: client.generation == 2 and client.connected)
    items = drain(client.events)
    down = [i for i in items if isinstance(i, LinkDownMarker)]
    assert len(down) == 1
    assert down[0].generation == 1
    assert "Ping unanswered" in down[0].reason
    assert LinkUp(2, "Asterisk Call Manager/9.0.0") in items
    assert client.counters.reconnects >= 1


async def test_backoff_grows_between_failed_attempts_and_is_capped(server: FakeAmi, start: Factory) -> None:
    server.refuse_logins = True
    start(reconnect_min=0.05, reconnect_max=0.4)
    await server.wait_until(lambda: len(server.connection_times) >= 7, within=8)
    t = server.connection_times
    gaps = [b - a for a, b in itertools.pairwise(t)]
    # Planned delays 0.05, 0.1, 0.2, 0.4, 0.4, 0.4 (each ±20 %), plus a login round trip each.
    assert gaps[2] > 1.5 * gaps[0]
    assert gaps[3] > 1.5 * gaps[1]
    assert 0.3 < gaps[5] < 0.8


# ---------------------------------------------------------------------------------- event path


async def test_a_failing_decoder_costs_only_its_frame(
    server: FakeAmi, start: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    client = start()
    await client.wait_connected(2)
    drain(client.events)
    burst = (
        frame("Event: Boom", "X: 1")
        + frame("Event: Good", "N: 1")
        + frame("Event: VarSet")
        + frame("Event: Good", "N: 2")
    )
    await server.push(burst)  # one write: one read on the client
    first, second = await next_item(client), await next_item(client)
    assert [first, second] == [{"Event": "Good", "N": "1"}, {"Event": "Good", "N": "2"}]
    assert client.counters.handler_errors == 1
    assert client.counters.events_skipped >= 1
    await server.push(
        frame("Event: Boom", "X: 2") + frame("Event: Boom", "X: 3") + frame("Event: Good", "N: 3")
    )
    assert await next_item(client) == {"Event": "Good", "N": "3"}
    assert client.counters.handler_errors == 3
    assert len([r for r in caplog.records if r.name == "cti.ami" and r.levelno == logging.ERROR]) == 1
    assert client.connected
    assert client.generation == 1


async def test_chinese_text_split_across_reads_arrives_intact(server: FakeAmi, start: Factory) -> None:
    client = start()
    await client.wait_connected(2)
    drain(client.events)
    data = frame("Event: Newchannel", "CallerIDNum: 13800138000", "CallerIDName: 张伟", "Channel: PJSIP/t-1")
    inside = data.index("张".encode()) + 1
    await server.push(data, cuts=[inside, inside + 2, inside + 4], pause=0.02)
    item = await next_item(client)
    assert isinstance(item, dict)
    assert item["CallerIDName"] == "张伟"


async def test_queue_overflow_drops_then_emits_exactly_one_resync_with_the_count(
    server: FakeAmi, start: Factory
) -> None:
    client = start(event_queue_size=16)
    await client.wait_connected(2)
    await wait_for(lambda: client.events.qsize() == 2)  # LinkUp, FullyBooted
    await server.push(b"".join(frame("Event: Tick", f"N: {n}") for n in range(40)))
    await wait_for(lambda: client.counters.events_dropped == 26)
    # The reader never waited on the (absent) consumer: actions are still answered.
    assert (await client.send("Ping"))["Ping"] == "Pong"
    assert client.counters.queue_overflows == 1
    items = [await next_item(client) for _ in range(17)]  # consuming frees room: the marker follows
    assert items[-1] == ResyncNeeded("event queue overflow", 26)
    assert [i["N"] for i in items[2:16] if isinstance(i, dict)] == [str(n) for n in range(14)]
    await server.push(frame("Event: Tick", "N: after"))
    assert await next_item(client) == {"Event": "Tick", "N": "after"}
    assert client.counters.resyncs_requested == 1
    assert client.events.empty()


async def test_overflow_marker_is_emitted_when_the_next_event_finds_room(
    server: FakeAmi, start: Factory
) -> None:
    client = start(event_queue_size=16)
    await client.wait_connected(2)
    await wait_for(lambda: client.events.qsize() == 2)
    await server.push(b"".join(frame("Event: Tick", f"N: {n}") for n in range(20)))
    await wait_for(lambda: client.counters.events_dropped == 6)
    # Free room without going through get(): the next event must still bring the marker first.
    while not client.events.empty():
        client.events._queue.popleft()  # type: ignore[attr-defined]
    await server.push(frame("Event: Tick", "N: next"))
    assert await next_item(client) == ResyncNeeded("event queue overflow", 6)
    assert await next_item(client) == {"Event": "Tick", "N": "next"}


async def test_link_markers_are_enqueued_even_when_the_queue_is_full(server: FakeAmi, start: Factory) -> None:
    client = start(event_queue_size=16)
    await client.wait_connected(2)
    await server.push(b"".join(frame("Event: Tick", f"N: {n}") for n in range(30)))
    await wait_for(lambda: client.counters.queue_overflows == 1)
    server.drop()
    await wait_for(lambda: client.generation == 2)
    items = drain(client.events)
    assert items[-2:] == [
        LinkDownMarker(1, "connection closed by Asterisk"),
        LinkUp(2, "Asterisk Call Manager/9.0.0"),
    ]
    assert not any(isinstance(i, ResyncNeeded) for i in items)  # folded into LinkUp


async def test_send_list_collects_the_list_events_only(server: FakeAmi, start: Factory) -> None:
    client = start()
    await client.wait_connected(2)
    drain(client.events)
    server.channels = [
        {"Channel": "PJSIP/trunk-00000001", "CallerIDName": "张伟", "Uniqueid": "1.1"},
        {"Channel": "PJSIP/1001-00000002", "CallerIDName": "王芳", "Uniqueid": "1.2"},
        {"Channel": "PJSIP/1002-00000003", "CallerIDName": "", "Uniqueid": "1.3"},
    ]
    server.list_interleave = frame("Event: Newstate", "Channel: PJSIP/other-1")
    response, items = await client.send_list("CoreShowChannels")
    assert response["EventList"] == "start"
    assert [i["CallerIDName"] for i in items] == ["张伟", "王芳", ""]
    assert all(i["Event"] == "CoreShowChannel" for i in items)
    others = drain(client.events)
    assert others == [{"Event": "Newstate", "Channel": "PJSIP/other-1"}] * 3


async def test_send_list_with_an_empty_list(server: FakeAmi, start: Factory) -> None:
    client = start()
    await client.wait_connected(2)
    response, items = await client.send_list("CoreShowChannels", timeout=1)
    assert response["Response"] == "Success"
    assert items == []


async def test_close_before_connecting_and_run_after_close(server: FakeAmi) -> None:
    before = asyncio.all_tasks()
    client = AmiClient(settings(server), decode_event=decode)
    await client.close()
    await client.run()  # returns at once
    with pytest.raises(LinkDown):
        await client.send("Ping")
    assert asyncio.all_tasks() - before - {asyncio.current_task()} == set()


async def test_close_interrupts_the_backoff_wait(server: FakeAmi, start: Factory) -> None:
    server.refuse_logins = True
    client = start(reconnect_min=5.0, reconnect_max=5.0)
    await server.wait_action("Login")
    await asyncio.sleep(0.05)
    async with asyncio.timeout(1):
        await client.close()  # interrupts the 5 s backoff at once


async def test_close_logs_off_and_ends_with_a_link_down_marker(server: FakeAmi, start: Factory) -> None:
    client = start(ping_interval=0.05)
    await client.wait_connected(2)
    await server.wait_action("Ping")
    await client.close()
    assert not client.connected
    assert drain(client.events)[-1] == LinkDownMarker(1, "closed by client")
    await server.wait_action("Logoff")


async def test_close_interrupts_a_login_waiting_for_the_banner() -> None:
    before = asyncio.all_tasks()
    async with FakeAmi(secret=SECRET, banner=b"") as mute:  # accepts, never says a word
        client = AmiClient(settings(mute, connect_timeout=30.0), decode_event=decode)
        task = asyncio.create_task(client.run())
        await mute.wait_until(lambda: mute.live_connections == 1)
        async with asyncio.timeout(1):
            await client.close()
        assert task.done()
    assert asyncio.all_tasks() - before - {asyncio.current_task()} == set()


async def test_oversized_frame_is_counted_and_the_link_goes_on(server: FakeAmi, start: Factory) -> None:
    client = start(max_frame_bytes=1024)
    await client.wait_connected(2)
    drain(client.events)
    await server.push(frame("Event: Huge", "Data: " + "x" * 5000) + frame("Event: Good", "N: 1"), cuts=[700])
    assert await next_item(client) == {"Event": "Good", "N": "1"}
    assert client.counters.oversized_frames == 1
    assert client.connected


async def test_list_items_arriving_after_a_timeout_are_not_taken_for_live_events(
    server: FakeAmi, start: Factory
) -> None:
    client = start()
    await client.wait_connected(2)
    drain(client.events)
    server.channels = [{"Channel": "PJSIP/1001-00000001"}, {"Channel": "PJSIP/1002-00000002"}]
    server.hold = {"CoreShowChannels"}
    with pytest.raises(TimeoutError):
        await client.send_list("CoreShowChannels", timeout=0.1)
    server.release()
    await server.push(frame("Event: Good", "N: 1"))
    assert await next_item(client) == {"Event": "Good", "N": "1"}
    assert client.counters.late_list_events == 3  # two items and the Complete event
    assert client.counters.unmatched_responses == 1
