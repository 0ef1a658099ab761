"""ANI/DNIS classification against the customer record, on SQLite and a real PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from crm import db, service
from crm.db import SessionMaker
from crm.model import CallLog
from cti.model import CallClassification
from cti.ports import CallClassifier

from .helpers import T0


@dataclass(frozen=True)
class Expected:
    match: str
    customer: str | None
    service: str | None
    language: str | None
    e164: str | None


async def _seed(sm: SessionMaker) -> dict[str, int]:
    ids: dict[str, int] = {}
    for name, language, numbers in [
        ("陈静", "zh-CN", ["+86 20 8765 4321"]),  # created first: the lower id on the shared line
        ("张伟", "zh-CN", ["+86 138 0013 8000"]),
        ("Alice Smith", "en", ["+1 201-555-0123"]),
        ("陈明", None, ["020 8765 4321", "13700001111"]),
    ]:
        record = await service.create_customer(
            sm,
            service.NewCustomer(name, language=language, phones=[service.NewPhone(n) for n in numbers]),
            default_region="CN",
        )
        ids[name] = record.id
    await service.create_service(sm, service.NewService("8001", "support", "zh-CN", ("support", "mandarin")))
    await service.create_service(sm, service.NewService("8002", "sales", "en", ("sales",)))
    return ids


INVALID = "none:invalid_number"

CASES = [
    # ani, dnis, expected
    ("+8613800138000", "8001", Expected("unique", "张伟", "support", "zh-CN", "+8613800138000")),
    ("008613800138000", "8002", Expected("unique", "张伟", "sales", "zh-CN", "+8613800138000")),
    ("138-0013-8000", "8001", Expected("unique", "张伟", "support", "zh-CN", "+8613800138000")),
    ("sip:+12015550123@trunk", "8001", Expected("unique", "Alice Smith", "support", "en", "+12015550123")),
    ("13700001111", "8002", Expected("unique", "陈明", "sales", "en", "+8613700001111")),  # no own language
    ("+862087654321", "8001", Expected("shared:lowest_id", "陈静", "support", "zh-CN", "+862087654321")),
    ("+8613912345678", "8001", Expected("none:unknown_number", None, "support", "zh-CN", "+8613912345678")),
    ("+8613912345678", "9999", Expected("none:unknown_number", None, None, None, "+8613912345678")),
    ("anonymous", "8001", Expected(INVALID, None, "support", "zh-CN", None)),
    ("<unknown>", "8001", Expected(INVALID, None, "support", "zh-CN", None)),
    ("", "8002", Expected(INVALID, None, "sales", "en", None)),
    ("1001", "8002", Expected(INVALID, None, "sales", "en", None)),
    ("'; DROP TABLE customers;--", "8001", Expected(INVALID, None, "support", "zh-CN", None)),
    ("<script>alert(1)</script>", "8001", Expected(INVALID, None, "support", "zh-CN", None)),
    ("+8613800138000", "+8001", Expected("unique", "张伟", "support", "zh-CN", "+8613800138000")),
    ("+8613800138000", "", Expected("unique", "张伟", None, "zh-CN", "+8613800138000")),
    (
        "+8613800138000",
        "'; DROP TABLE services;--",
        Expected("unique", "张伟", None, "zh-CN", "+8613800138000"),
    ),
    ("x" * 10_000, "8" * 10_000, Expected(INVALID, None, None, None, None)),
]


async def test_classify_table(sessionmaker: SessionMaker) -> None:
    ids = await _seed(sessionmaker)
    classifier: CallClassifier = service.Classifier(sessionmaker, "CN")
    for ani, dnis, expected in CASES:
        got = await classifier.classify(ani, dnis)
        assert isinstance(got, CallClassification)
        context = f"classify({ani[:40]!r}, {dnis[:40]!r})"
        assert got.customer_match == expected.match, context
        assert got.customer_name == expected.customer, context
        assert got.customer_id == (ids[expected.customer] if expected.customer else None), context
        assert got.new_contact is (expected.customer is None), context
        assert got.service_name == expected.service, context
        assert (got.service_id is None) is (expected.service is None), context
        assert got.language == expected.language, context
        assert got.ani_e164 == expected.e164, context
    support = await classifier.classify("+8613800138000", "8001")
    assert support.required_skills == ("support", "mandarin")
    assert support.customer_tier == "standard"
    assert (await classifier.classify("+8613800138000", "9999")).required_skills == ()


async def test_shared_number_prefers_the_customer_with_the_most_recent_call(
    sessionmaker: SessionMaker,
) -> None:
    ids = await _seed(sessionmaker)
    classifier = service.Classifier(sessionmaker, "CN")
    shared = "+862087654321"

    async def log_call(linkedid: str, customer: str, minutes: int, ani_e164: str = shared) -> None:
        async with sessionmaker() as session, session.begin():
            stamp = T0 + timedelta(minutes=minutes)
            session.add(
                CallLog(
                    pbx="pbx1", linkedid=linkedid, direction="inbound", ani_raw=ani_e164, ani_e164=ani_e164,
                    caller_name="", dnis="8001", customer_id=ids[customer], started_at=stamp, phase="ended",
                    created_at=stamp, updated_at=stamp,
                )
            )  # fmt: skip

    # A more recent call by 陈明 from another number does not count: the rule is per number.
    await log_call("m-mobile", "陈明", 50, ani_e164="+8613700001111")
    assert (await classifier.classify(shared, "8001")).customer_name == "陈静"

    await log_call("m1", "陈明", 10)
    got = await classifier.classify(shared, "8001")
    assert (got.customer_match, got.customer_name) == ("shared:most_recent", "陈明")

    await log_call("j1", "陈静", 20)
    got = await classifier.classify(shared, "8001")
    assert (got.customer_match, got.customer_name) == ("shared:most_recent", "陈静")

    # The same number reached in its national form resolves the same way.
    assert (await classifier.classify("020-8765-4321", "8001")).customer_name == "陈静"


async def test_classify_with_a_us_default_region(sessionmaker: SessionMaker) -> None:
    await _seed(sessionmaker)
    classifier = service.Classifier(sessionmaker, "US")
    assert (await classifier.classify("(201) 555-0123", "8002")).customer_name == "Alice Smith"
    assert (await classifier.classify("011 86 138 0013 8000", "8002")).customer_name == "张伟"
    assert (await classifier.classify("008613800138000", "8002")).customer_name == "张伟"
    assert (await classifier.classify("13800138000", "8002")).customer_match == "none:invalid_number"


async def test_classify_raises_when_the_lookup_cannot_run(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite+aiosqlite:///{tmp_path}/never-migrated.sqlite3")
    try:
        classifier = service.Classifier(db.make_sessionmaker(engine), "CN")
        with pytest.raises(Exception, match="no such table"):
            await classifier.classify("+8613800138000", "8001")
    finally:
        await engine.dispose()
