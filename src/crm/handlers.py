"""The call log writer: one row per call in ``call_logs``, kept up to date from the bus.

It consumes ``CallChange`` (whole snapshots; the bus coalesces them per call) and
``LiveCallsResynced`` from its own subscription and upserts rows keyed by (pbx, linkedid).

Guarantees:

* exactly one row per call, whatever the number, order or duplication of snapshots, and with
  several writers racing (the unique key plus ``INSERT ... ON CONFLICT DO UPDATE`` on both SQLite
  and PostgreSQL);
* a stale snapshot never overwrites a newer state: a row whose call has ended (``ended_at`` set) is
  never reopened by a snapshot without ``ended_at``, and a row in phase ``ended`` never moves back.
  Values that only ever become known (answer and connect times, agent, classification, hangup
  cause) are kept when a later snapshot lacks them;
* nothing is lost while the database is unavailable: pending work stays in memory, coalesced per
  call (latest state wins under the rule above), in arrival order, and is retried with exponential
  backoff. With a ``spool_path``, every failed write, and every call state received while writes
  fail, saves the pending call states to that file (atomically replaced, fsynced), and a writer
  that stops with work pending leaves it there, so a platform killed or stopped during an outage
  writes those calls when it next starts. Only a row the database refuses as such (a constraint or
  data error, not an outage) is dropped, after being retried alone, and logged.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any, Final, cast

from sqlalchemy import Table, and_, func, not_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError

from crm.db import SessionMaker
from crm.model import CallLog
from cti.bus import CALL_STATE_MESSAGES, Bus, Subscription, subscribe_to_calls
from cti.codec import snapshot_from_dict, snapshot_to_dict
from cti.model import CallChange, CallKey, CallPhase, CallSnapshot, ChangeKind, LiveCallsResynced
from cti.phone import normalize

log = logging.getLogger(__name__)

MESSAGE_TYPES: Final = CALL_STATE_MESSAGES

# Fields that only ever become known during a call: a snapshot lacking one does not erase it.
_STICKY: Final = (
    "ani_e164",
    "service_id",
    "customer_id",
    "new_contact",
    "customer_match",
    "answered_at",
    "connected_at",
    "agent",
    "hangup_cause",
    "hangup_cause_txt",
    "end_reason",
    "ivr_path",
    "ivr_inputs",
)
_KEY_COLUMNS: Final = ("pbx", "linkedid")
_ENDED: Final = CallPhase.ENDED.value
_TABLE: Final = cast(Table, CallLog.__table__)


def subscribe(bus: Bus, name: str = "crm.call_log", maxsize: int = 100_000) -> Subscription:
    """The subscription ``CallLogWriter`` expects: call changes coalesced per call, resyncs in order."""
    return subscribe_to_calls(bus, name, maxsize=maxsize)


def supersedes(current: CallSnapshot, incoming: CallSnapshot) -> bool:
    """Whether ``incoming`` may replace ``current`` for the same call (the SQL guard says the same)."""
    if current.ended_at is not None and incoming.ended_at is None:
        return False
    return not (current.phase is CallPhase.ENDED and incoming.phase is not CallPhase.ENDED)


def merge(current: CallSnapshot | None, incoming: CallSnapshot) -> CallSnapshot:
    """The state to keep when ``incoming`` arrives while ``current`` is pending."""
    if current is None:
        return incoming
    if not supersedes(current, incoming):
        return current
    return replace(
        incoming,
        answered_at=incoming.answered_at or current.answered_at,
        connected_at=incoming.connected_at or current.connected_at,
        agent=incoming.agent or current.agent,
        classification=incoming.classification or current.classification,
        hangup_cause=incoming.hangup_cause if incoming.hangup_cause is not None else current.hangup_cause,
        hangup_cause_txt=incoming.hangup_cause_txt or current.hangup_cause_txt,
        end_reason=incoming.end_reason or current.end_reason,
        ivr=incoming.ivr or current.ivr,
        routing=incoming.routing or current.routing,
    )


def _clean(text: str | None) -> str | None:
    # PostgreSQL refuses NUL in text; a caller name must not cost us the call log.
    return None if text is None else text.replace("\x00", "\ufffd")


def row_values(snapshot: CallSnapshot, *, default_region: str | None, now: datetime) -> dict[str, Any]:
    """The ``call_logs`` columns a snapshot determines. Without a classification the ANI is still
    normalised when a default region is known."""
    c = snapshot.classification
    if c is not None:
        ani_e164 = c.ani_e164
    elif default_region:
        ani_e164 = normalize(snapshot.ani, default_region).e164
    else:
        ani_e164 = None
    return {
        "pbx": snapshot.key.pbx,
        "linkedid": snapshot.key.linkedid,
        "direction": snapshot.direction.value,
        "ani_raw": _clean(snapshot.ani),
        "ani_e164": ani_e164,
        "caller_name": _clean(snapshot.caller_name),
        "dnis": _clean(snapshot.dnis),
        "service_id": c.service_id if c else None,
        "customer_id": c.customer_id if c else None,
        "new_contact": c.new_contact if c else None,
        "customer_match": c.customer_match if c else None,
        "started_at": snapshot.started_at,
        "answered_at": snapshot.answered_at,
        "connected_at": snapshot.connected_at,
        "ended_at": snapshot.ended_at,
        "wait_seconds": snapshot.wait_seconds,
        "talk_seconds": snapshot.talk_seconds,
        "hangup_cause": snapshot.hangup_cause,
        "hangup_cause_txt": _clean(snapshot.hangup_cause_txt),
        "end_reason": snapshot.end_reason.value if snapshot.end_reason else None,
        "phase": snapshot.phase.value,
        "agent": _clean(snapshot.agent),
        "ivr_path": list(snapshot.ivr.path) if snapshot.ivr else None,
        "ivr_inputs": dict(snapshot.ivr.inputs) if snapshot.ivr else None,
        "created_at": now,
        "updated_at": now,
    }


def _upsert(dialect: str, rows: Sequence[dict[str, Any]]) -> Any:
    """The upsert for rows with ``rows[0]``'s columns, without values: executed with the rows as
    parameters, so the statement is the same object every time and SQLAlchemy compiles it once
    (built with the values inside, it was compiled again for every write, on the event loop)."""
    return _upsert_statement(dialect, tuple(rows[0]))


@functools.lru_cache(maxsize=16)
def _upsert_statement(dialect: str, columns: tuple[str, ...]) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(_TABLE)
    table, new = _TABLE.c, stmt.excluded
    assignments: dict[str, Any] = {}
    for name in columns:
        if name in _KEY_COLUMNS or name == "created_at":
            continue
        assignments[name] = func.coalesce(new[name], table[name]) if name in _STICKY else new[name]
    # The stored row is further along than the incoming one: the SQL twin of ``supersedes``.
    reopened = and_(table.ended_at.is_not(None), new.ended_at.is_(None))
    backwards = and_(table.phase == _ENDED, new.phase != _ENDED)
    return stmt.on_conflict_do_update(
        index_elements=list(_KEY_COLUMNS), set_=assignments, where=not_(or_(reopened, backwards))
    )


def _permanent(exc: BaseException) -> bool:
    """A refusal of this data (retrying the same row cannot help), as opposed to an outage."""
    return isinstance(exc, (IntegrityError, DataError))


class CallLogWriter:
    """Writes the call log from a bus subscription (see the module docstring for the guarantees).

    Start it as a task owned by the composition root (``tg.create_task(writer.run())``). ``run``
    returns when the subscription is closed and everything pending has been written; cancelling it
    abandons what is still pending (logged).
    """

    def __init__(
        self,
        sessionmaker: SessionMaker,
        subscription: Subscription,
        *,
        retry_min: float = 0.2,
        retry_max: float = 5.0,
        default_region: str | None = None,
        batch_size: int = 200,
        spool_path: Path | None = None,
    ) -> None:
        if not 0 < retry_min <= retry_max:
            raise ValueError("need 0 < retry_min <= retry_max")
        self._sessionmaker = sessionmaker
        self._sub = subscription
        self._retry_min = retry_min
        self._retry_max = retry_max
        self._region = default_region
        self._batch_size = max(1, batch_size)
        self._spool = spool_path
        self._pending: OrderedDict[Hashable, CallSnapshot | LiveCallsResynced] = OrderedDict()
        self._seq = count()
        self._progress = asyncio.Condition()
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self.last_error: str | None = None

    def pending(self) -> int:
        """Calls and resyncs received but not yet written (for health reports)."""
        return len(self._pending)

    async def flush(self, timeout: float) -> None:
        """Wait until everything offered to the subscription so far is written; ``TimeoutError`` else."""
        async with asyncio.timeout(timeout), self._progress:
            await self._progress.wait_for(lambda: not self._pending and self._sub.pending() == 0)

    async def run(self) -> None:
        """Write call logs until the subscription is closed and nothing is pending."""
        delay = self._retry_min
        closed = False
        failing = False
        self._load_spool()
        try:
            while True:
                if not self._pending:
                    self._clear_spool()
                    if closed:
                        return
                    try:
                        self._accept(await self._sub.get())
                    except StopAsyncIteration:
                        closed = True
                        continue
                self._drain()
                try:
                    await self._write_pending()
                except Exception as exc:
                    self.failures += 1
                    failing = True
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self._save_spool()
                    log.warning(
                        "call log write failed, %d pending, retrying in %.1fs: %s",
                        len(self._pending),
                        delay,
                        _one_line(exc),
                    )
                    closed = await self._wait_accepting(delay, closed)
                    delay = min(delay * 2, self._retry_max)
                    continue
                if failing:
                    log.info("call log writes recovered")
                    failing = False
                    self.last_error = None
                delay = self._retry_min
                async with self._progress:
                    self._progress.notify_all()
        finally:
            if self._pending:
                if self._save_spool():
                    log.error(
                        "call log writer stopped with %d pending writes, kept in %s",
                        len(self._pending),
                        self._spool,
                    )
                else:
                    log.error("call log writer stopped with %d pending writes abandoned", len(self._pending))

    def _spooled(self) -> list[dict[str, Any]]:
        return [snapshot_to_dict(item) for item in self._pending.values() if isinstance(item, CallSnapshot)]

    def _save_spool(self) -> bool:
        """Keep the pending call states on disk; True when they are safely there."""
        if self._spool is None:
            return False
        try:
            self._spool.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._spool.with_suffix(".tmp")
            with tmp.open("w", encoding="utf-8") as fh:
                json.dump({"calls": self._spooled()}, fh, ensure_ascii=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            tmp.replace(self._spool)
        except OSError as exc:
            log.error("could not keep pending call logs in %s: %s", self._spool, exc)
            return False
        return True

    def _load_spool(self) -> None:
        if self._spool is None or not self._spool.exists():
            return
        try:
            calls = json.loads(self._spool.read_text(encoding="utf-8"))["calls"]
            snapshots = [snapshot_from_dict(c) for c in calls]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            bad = self._spool.with_suffix(".unreadable")
            log.error("call log spool %s unreadable (%s); kept as %s", self._spool, exc, bad)
            self._spool.replace(bad)
            return
        for snapshot in snapshots:
            current = self._pending.pop(snapshot.key, None)
            assert current is None or isinstance(current, CallSnapshot)
            self._pending[snapshot.key] = merge(current, snapshot)
        log.info("%d call logs from the spool %s will be written", len(snapshots), self._spool)

    def _clear_spool(self) -> None:
        if self._spool is not None and self._spool.exists():
            self._spool.unlink(missing_ok=True)

    def _accept(self, message: object) -> None:
        if isinstance(message, CallChange):
            snapshot = message.call
            if message.kind is ChangeKind.CLOSED and snapshot.phase is not CallPhase.ENDED:
                snapshot = replace(snapshot, phase=CallPhase.ENDED)
            current = self._pending.pop(snapshot.key, None)
            assert current is None or isinstance(current, CallSnapshot)
            # Re-inserted at the end: this state is newer than any resync queued meanwhile.
            self._pending[snapshot.key] = merge(current, snapshot)
        elif isinstance(message, LiveCallsResynced):
            self._pending[("resync", next(self._seq))] = message
        else:
            log.debug("call log writer ignores %s", type(message).__name__)

    def _drain(self) -> None:
        if self._sub.overflowed:
            self._sub.overflowed = False
            log.error(
                "call log subscription overflowed: %d messages lost before the writer saw them",
                self._sub.dropped,
            )
        while (message := self._sub.get_nowait()) is not None:
            self._accept(message)

    async def _wait_accepting(self, delay: float, closed: bool) -> bool:
        """Sleep ``delay`` while still taking messages in, so the bounded mailbox never overflows
        during an outage. Returns whether the subscription is now closed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while not closed and (remaining := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(remaining):
                    message = await self._sub.get()
            except TimeoutError:
                return closed
            except StopAsyncIteration:
                closed = True
                break
            self._accept(message)
            self._drain()
            # During an outage every new call state goes to disk at once, not at the next retry.
            self._save_spool()
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        return closed

    async def _write_pending(self) -> None:
        """Write everything pending in order; raises on an outage, leaving the rest pending."""
        batch: list[CallKey] = []
        for key, item in list(self._pending.items()):
            if isinstance(item, LiveCallsResynced):
                await self._write_snapshots(batch)
                batch = []
                await self._close_not_live(item)
                del self._pending[key]
                continue
            assert isinstance(key, CallKey)
            batch.append(key)
            if len(batch) >= self._batch_size:
                await self._write_snapshots(batch)
                batch = []
        await self._write_snapshots(batch)

    async def _write_snapshots(self, keys: list[CallKey]) -> None:
        if not keys:
            return
        snapshots = [item for key in keys if isinstance(item := self._pending[key], CallSnapshot)]
        try:
            await self._upsert(snapshots)
        except Exception as exc:
            if not _permanent(exc):
                raise
            await self._write_one_by_one(keys)
            return
        for key in keys:
            del self._pending[key]
        self.written += len(keys)

    async def _write_one_by_one(self, keys: list[CallKey]) -> None:
        for key in keys:
            snapshot = self._pending[key]
            assert isinstance(snapshot, CallSnapshot)
            try:
                await self._upsert([snapshot])
            except Exception as exc:
                if not _permanent(exc):
                    raise
                await self._write_or_drop(key, snapshot, exc)
                continue
            del self._pending[key]
            self.written += 1

    async def _write_or_drop(self, key: CallKey, snapshot: CallSnapshot, first: BaseException) -> None:
        # A classification may name a customer or service deleted since: keep the call, drop the links.
        if snapshot.classification is not None:
            unlinked = replace(
                snapshot, classification=replace(snapshot.classification, customer_id=None, service_id=None)
            )
            try:
                await self._upsert([unlinked])
            except Exception as exc:
                if not _permanent(exc):
                    raise
            else:
                log.warning("call log %s written without customer/service links: %s", key, _one_line(first))
                del self._pending[key]
                self.written += 1
                return
        log.error("call log %s refused by the database and dropped: %s", key, _one_line(first))
        del self._pending[key]
        self.dropped += 1

    async def _upsert(self, snapshots: Sequence[CallSnapshot]) -> None:
        now = datetime.now(UTC)
        rows = [row_values(s, default_region=self._region, now=now) for s in snapshots]
        async with self._sessionmaker() as session, session.begin():
            await session.execute(_upsert(session.get_bind().dialect.name, rows), rows)

    async def _close_not_live(self, resync: LiveCallsResynced) -> None:
        """Close this PBX's open rows whose calls are not live: they ended while nobody could see."""
        live = {key.linkedid for key in resync.live if key.pbx == resync.pbx}
        now = datetime.now(UTC)
        async with self._sessionmaker() as session, session.begin():
            open_rows = await session.execute(
                select(CallLog.id, CallLog.linkedid).where(
                    CallLog.pbx == resync.pbx, CallLog.ended_at.is_(None)
                )
            )
            gone = [row_id for row_id, linkedid in open_rows if linkedid not in live]
            for start in range(0, len(gone), 500):
                await session.execute(
                    update(CallLog)
                    .where(CallLog.id.in_(gone[start : start + 500]), CallLog.ended_at.is_(None))
                    .values(ended_at=resync.at, end_reason=resync.reason.value, phase=_ENDED, updated_at=now)
                )
        if gone:
            log.info(
                "closed %d call logs of %s not live at resync (%s)",
                len(gone),
                resync.pbx,
                resync.reason.value,
            )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
