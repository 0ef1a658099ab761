"""The read-ahead cache of customer cards (pure): bounded, expiring, and never keeping a card read
before the customer last changed."""

from __future__ import annotations

from screenpop.cards import CardCache

CARD = {"id": 1, "name": "张伟"}


def test_a_stored_card_is_served_until_it_expires() -> None:
    cache = CardCache(capacity=10, ttl_seconds=60)
    assert cache.get(1, 0.0) is None
    assert cache.store(cache.begin(1, 0.0), CARD, 0.2)
    assert cache.get(1, 59.0) == CARD
    assert cache.get(1, 60.5) is None
    assert len(cache) == 0


def test_the_least_recently_used_card_goes_first() -> None:
    cache = CardCache(capacity=2, ttl_seconds=60)
    for customer in (1, 2):
        cache.store(cache.begin(customer, 0.0), {"id": customer}, 0.0)
    assert cache.get(1, 1.0) is not None  # 2 is now the least recently used
    cache.store(cache.begin(3, 1.0), {"id": 3}, 1.0)
    assert cache.get(2, 1.0) is None
    assert cache.get(1, 1.0) == {"id": 1} and cache.get(3, 1.0) == {"id": 3}
    assert len(cache) == 2


def test_a_read_begun_before_the_customer_changed_is_not_kept() -> None:
    cache = CardCache(capacity=10, ttl_seconds=60)
    stale = cache.begin(1, 1.0)
    other = cache.begin(2, 1.0)
    cache.invalidate(1, 1.0)  # at the same instant, but after the read began
    fresh = cache.begin(1, 1.0)
    assert not cache.current(stale, 1.1) and not cache.store(stale, CARD, 1.1)
    assert cache.get(1, 1.1) is None
    assert cache.store(other, {"id": 2}, 1.1)  # another customer's read is not affected
    assert cache.store(fresh, CARD, 1.2) and cache.get(1, 1.2) == CARD


def test_a_read_slower_than_the_ttl_or_without_a_card_is_not_kept() -> None:
    cache = CardCache(capacity=10, ttl_seconds=60)
    assert not cache.store(cache.begin(1, 1.0), CARD, 70.0)
    assert not cache.store(cache.begin(2, 1.0), None, 1.5)  # no such customer
    assert len(cache) == 0


def test_invalidating_drops_the_card_and_old_invalidations_are_forgotten() -> None:
    cache = CardCache(capacity=10, ttl_seconds=60)
    cache.store(cache.begin(1, 0.0), CARD, 0.0)
    cache.invalidate(1, 5.0)
    assert cache.get(1, 5.0) is None
    cache.invalidate(3, 100.0)  # more than the ttl later: customer 1's invalidation is forgotten
    assert list(cache._invalidated) == [3]
