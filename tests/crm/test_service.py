"""Customers, services, users and call log queries, on SQLite and a real PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from crm import service
from crm.db import SessionMaker
from crm.model import CallLog, User
from cti.auth import Role

from .helpers import T0

CN = "CN"


def _customer(name: str, *numbers: str, **fields: object) -> service.NewCustomer:
    phones = tuple(service.NewPhone(n, f"label{i}") for i, n in enumerate(numbers))
    return service.NewCustomer(name=name, phones=phones, **fields)  # type: ignore[arg-type]


async def _create(sm: SessionMaker, name: str, *numbers: str) -> service.CustomerRecord:
    return await service.create_customer(sm, _customer(name, *numbers), default_region=CN)


async def _call(
    sm: SessionMaker,
    linkedid: str,
    *,
    ani_raw: str,
    ani_e164: str | None,
    started: datetime,
    customer_id: int | None = None,
    caller_name: str = "",
) -> None:
    async with sm() as session, session.begin():
        session.add(
            CallLog(
                pbx="pbx1", linkedid=linkedid, direction="inbound", ani_raw=ani_raw, ani_e164=ani_e164,
                caller_name=caller_name, dnis="8001", customer_id=customer_id, started_at=started,
                phase="ended", created_at=started, updated_at=started,
            )
        )  # fmt: skip


@pytest.mark.parametrize(
    "name",
    [
        "张伟",
        "欧阳娜娜",
        "Alice Smith",
        "Zoë O'Brien-Łukasz",
        "محمد",
        "Robert'); DROP TABLE customers;--",
        "<b>x</b>",
    ],
)
async def test_customer_names_in_any_script_round_trip(sessionmaker: SessionMaker, name: str) -> None:
    created = await service.create_customer(
        sessionmaker, _customer(name, "13800138000", language="zh-CN", tier="vip"), default_region=CN
    )
    fetched = await service.get_customer(sessionmaker, created.id)
    assert fetched.name == name
    assert fetched.tier == "vip"
    assert fetched.language == "zh-CN"
    assert [p.e164 for p in fetched.phones] == ["+8613800138000"]
    assert fetched.phones[0].raw == "13800138000"


async def test_customer_fields_and_phones_are_normalised(sessionmaker: SessionMaker) -> None:
    created = await service.create_customer(
        sessionmaker,
        service.NewCustomer(
            name="  李娜 ",
            tier="Gold",
            value="42000.5",
            notes="喜欢电话联系",
            phones=(service.NewPhone("(139) 1234-5678", "mobile"), service.NewPhone("+1 201 555 0123", "us")),
        ),
        default_region=CN,
        now=T0,
    )
    assert created.name == "李娜"
    assert created.tier == "gold"
    assert created.value == Decimal("42000.50")
    assert created.created_at == T0
    assert [(p.e164, p.label) for p in created.phones] == [
        ("+8613912345678", "mobile"),
        ("+12015550123", "us"),
    ]
    again = await service.get_customer(sessionmaker, created.id)
    assert again.value == Decimal("42000.50")
    assert again.created_at == T0


@pytest.mark.parametrize("bad", ["12", "anonymous", "+999 1234", "'; DROP TABLE x;--", "<script>", ""])
async def test_invalid_phone_is_rejected_naming_the_number(sessionmaker: SessionMaker, bad: str) -> None:
    with pytest.raises(service.InvalidPhone) as info:
        await service.create_customer(sessionmaker, _customer("王芳", "13800138000", bad), default_region=CN)
    assert info.value.loc == ("phones", 1, "number")
    assert repr(bad) in str(info.value)
    assert await service.list_customers(sessionmaker, default_region=CN) == []


async def test_the_same_number_twice_is_rejected(sessionmaker: SessionMaker) -> None:
    with pytest.raises(service.InvalidInput, match="given twice"):
        await service.create_customer(
            sessionmaker, _customer("王芳", "13800138000", "+86 138 0013 8000"), default_region=CN
        )


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "   "), ("name", "x" * 201), ("tier", "VIP!"), ("language", "zh_CN"), ("value", "lots")],
)
async def test_invalid_customer_fields_are_rejected(
    sessionmaker: SessionMaker, field: str, value: str
) -> None:
    fields: dict[str, object] = {"name": "王芳", field: value}
    with pytest.raises(service.InvalidInput) as info:
        await service.create_customer(sessionmaker, service.NewCustomer(**fields), default_region=CN)  # type: ignore[arg-type]
    assert info.value.loc == (field,)


async def test_add_phone_and_conflict(sessionmaker: SessionMaker) -> None:
    customer = await _create(sessionmaker, "张伟", "13800138000")
    phone = await service.add_phone(sessionmaker, customer.id, "021 6123 4567", "office", default_region=CN)
    assert phone.e164 == "+862161234567"
    with pytest.raises(service.Conflict):
        await service.add_phone(sessionmaker, customer.id, "+862161234567", default_region=CN)
    with pytest.raises(service.NotFound):
        await service.add_phone(sessionmaker, customer.id + 99, "+862161234567", default_region=CN)
    with pytest.raises(service.InvalidPhone):
        await service.add_phone(sessionmaker, customer.id, "1001", default_region=CN)
    assert len((await service.get_customer(sessionmaker, customer.id)).phones) == 2


async def test_list_customers_searches_names_and_numbers(sessionmaker: SessionMaker) -> None:
    zhang = await _create(sessionmaker, "张伟", "13800138000")
    alice = await _create(sessionmaker, "Alice Smith", "+12015550123")
    percent = await _create(sessionmaker, "100% Tea_Shop", "13912345678")

    async def ids(q: str | None) -> list[int]:
        return [c.id for c in await service.list_customers(sessionmaker, q=q, default_region=CN)]

    assert await ids(None) == [zhang.id, alice.id, percent.id]
    assert await ids("张") == [zhang.id]
    assert await ids("alice") == [alice.id]
    assert await ids("138 0013 8000") == [zhang.id]
    assert await ids("+1 (201) 555-0123") == [alice.id]
    assert await ids("5550") == [alice.id]
    assert await ids("%") == [percent.id]  # LIKE wildcards in the query are literal
    assert await ids("_") == [percent.id]
    assert await ids("nobody") == []


async def test_interactions_are_the_customers_calls_newest_first(sessionmaker: SessionMaker) -> None:
    zhang = await _create(sessionmaker, "张伟", "13800138000")
    other = await _create(sessionmaker, "李娜", "13912345678")
    for i in range(3):
        await _call(
            sessionmaker, f"z{i}", ani_raw="13800138000", ani_e164="+8613800138000",
            started=T0 + timedelta(minutes=i), customer_id=zhang.id,
        )  # fmt: skip
    await _call(
        sessionmaker, "o1", ani_raw="13912345678", ani_e164="+8613912345678", started=T0, customer_id=other.id
    )
    detail = await service.get_customer_with_interactions(sessionmaker, zhang.id)
    assert detail.customer.name == "张伟"
    assert [c.linkedid for c in detail.interactions] == ["z2", "z1", "z0"]
    latest = await service.get_customer_with_interactions(sessionmaker, zhang.id, limit=1)
    assert [c.linkedid for c in latest.interactions] == ["z2"]
    with pytest.raises(service.NotFound):
        await service.get_customer_with_interactions(sessionmaker, 424242)


async def test_calls_before_the_customer_existed_join_their_record(sessionmaker: SessionMaker) -> None:
    await _call(sessionmaker, "early", ani_raw="013800138000", ani_e164="+8613800138000", started=T0)
    await _call(sessionmaker, "stranger", ani_raw="13912345678", ani_e164="+8613912345678", started=T0)
    zhang = await _create(sessionmaker, "张伟", "13800138000")
    detail = await service.get_customer_with_interactions(sessionmaker, zhang.id)
    assert [c.linkedid for c in detail.interactions] == ["early"]
    await service.add_phone(sessionmaker, zhang.id, "13912345678", default_region=CN)
    detail = await service.get_customer_with_interactions(sessionmaker, zhang.id)
    assert {c.linkedid for c in detail.interactions} == {"early", "stranger"}


async def test_list_calls_filters(sessionmaker: SessionMaker) -> None:
    zhang = await _create(sessionmaker, "张伟", "13800138000")
    await _call(
        sessionmaker,
        "a",
        ani_raw="+8613800138000",
        ani_e164="+8613800138000",
        started=T0,
        customer_id=zhang.id,
    )
    await _call(
        sessionmaker, "b", ani_raw="008613800138000", ani_e164="+8613800138000",
        started=T0 + timedelta(hours=1), customer_id=zhang.id,
    )  # fmt: skip
    await _call(sessionmaker, "c", ani_raw="anonymous", ani_e164=None, started=T0 + timedelta(hours=2))
    await _call(sessionmaker, "d", ani_raw="1001", ani_e164=None, started=T0 + timedelta(hours=3))

    async def linkedids(**filters: object) -> list[str]:
        calls = await service.list_calls(sessionmaker, default_region=CN, **filters)  # type: ignore[arg-type]
        return [c.linkedid for c in calls]

    assert await linkedids() == ["d", "c", "b", "a"]
    assert await linkedids(customer_id=zhang.id) == ["b", "a"]
    assert await linkedids(ani="138-0013-8000") == ["b", "a"]  # normalised: matches every stored form
    assert await linkedids(ani="008613800138000") == ["b", "a"]
    assert await linkedids(ani="anonymous") == ["c"]  # not a number: matches as received
    assert await linkedids(ani="1001") == ["d"]
    assert await linkedids(since=T0 + timedelta(hours=1)) == ["d", "c", "b"]
    assert await linkedids(since=T0 + timedelta(hours=1), customer_id=zhang.id) == ["b"]
    assert await linkedids(limit=2) == ["d", "c"]
    with pytest.raises(service.InvalidInput):
        await linkedids(limit=1001)
    with pytest.raises(service.InvalidInput):
        await linkedids(since=datetime(2026, 1, 1))


async def test_services_create_update_and_conflict(sessionmaker: SessionMaker) -> None:
    support = await service.create_service(
        sessionmaker,
        service.NewService(
            "8001",
            "support",
            "zh-CN",
            ("support", "mandarin"),
            {"mon": [["09:00", "18:00"]]},
            "Asia/Shanghai",
        ),
    )
    assert support.required_skills == ("support", "mandarin")
    assert support.business_hours == {"mon": [["09:00", "18:00"]]}
    with pytest.raises(service.Conflict):
        await service.create_service(sessionmaker, service.NewService("8001", "other"))
    with pytest.raises(service.InvalidInput):
        await service.create_service(sessionmaker, service.NewService("80a1", "bad dnis"))
    with pytest.raises(service.InvalidInput):
        await service.create_service(
            sessionmaker, service.NewService("8003", "bad tz", time_zone="Mars/Base")
        )
    updated = await service.update_service(
        sessionmaker, support.id, name="售后支持", required_skills=["support"]
    )
    assert (updated.name, updated.required_skills, updated.language) == ("售后支持", ("support",), "zh-CN")
    cleared = await service.update_service(sessionmaker, support.id, business_hours=None, language=None)
    assert (cleared.business_hours, cleared.language) == (None, None)
    with pytest.raises(service.NotFound):
        await service.update_service(sessionmaker, 999, name="x")
    assert [s.dnis for s in await service.list_services(sessionmaker)] == ["8001"]


async def test_users_have_argon2_hashes_and_authenticate(sessionmaker: SessionMaker) -> None:
    user = await service.add_user(sessionmaker, "wangfang", "s3cret-密码", Role.AGENT, display_name="王芳")
    assert user.role is Role.AGENT
    async with sessionmaker() as session:
        stored = (await session.scalars(sa.select(User.password_hash))).one()
    assert stored.startswith("$argon2id$")
    assert "s3cret" not in stored

    principal = await service.authenticate(sessionmaker, "wangfang", "s3cret-密码")
    assert principal is not None
    assert (principal.user_id, principal.username, principal.role) == (user.id, "wangfang", Role.AGENT)
    assert await service.authenticate(sessionmaker, "wangfang", "wrong password") is None
    assert await service.authenticate(sessionmaker, "nobody", "s3cret-密码") is None

    async with sessionmaker() as session, session.begin():
        await session.execute(sa.update(User).values(active=False))
    assert await service.authenticate(sessionmaker, "wangfang", "s3cret-密码") is None


async def test_add_user_validates_and_refuses_duplicates(sessionmaker: SessionMaker) -> None:
    await service.add_user(sessionmaker, "admin", "long enough", "admin")
    with pytest.raises(service.Conflict):
        await service.add_user(sessionmaker, "admin", "long enough", "agent")
    with pytest.raises(service.InvalidInput, match="password"):
        await service.add_user(sessionmaker, "short", "1234", "agent")
    with pytest.raises(service.InvalidInput, match="role"):
        await service.add_user(sessionmaker, "boss", "long enough", "owner")
    with pytest.raises(service.InvalidInput, match="username"):
        await service.add_user(sessionmaker, "two words", "long enough", "agent")


async def test_seed_demo_data_is_idempotent(sessionmaker: SessionMaker) -> None:
    passwords = {Role.AGENT: "agent-pass-1", Role.SUPERVISOR: "super-pass-1", Role.ADMIN: "admin-pass-1"}
    first = await service.seed_demo_data(sessionmaker, passwords=passwords)
    assert (first.customers, first.services, first.users) == (6, 2, 3)
    second = await service.seed_demo_data(sessionmaker, passwords=passwords)
    assert (second.customers, second.services, second.users) == (0, 0, 0)
    counts = await service.count_rows(sessionmaker)
    assert counts["customers"] == 6
    assert counts["services"] == 2
    assert counts["users"] == 3
    names = {c.name for c in await service.list_customers(sessionmaker, default_region="US")}
    assert {"张伟", "李娜", "Alice Smith"} <= names
    services = {s.dnis: s for s in await service.list_services(sessionmaker)}
    assert (services["8001"].name, services["8001"].language) == ("support", "zh-CN")
    assert (services["8002"].name, services["8002"].language) == ("sales", "en")
    supervisor = await service.authenticate(sessionmaker, "supervisor", "super-pass-1")
    assert supervisor is not None
    assert supervisor.role is Role.SUPERVISOR
