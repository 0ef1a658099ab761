"""Customer cards read ahead while a caller waits, so the first screen-pop can carry the whole card.

Pure bookkeeping (the reads themselves are the service's), on a monotonic clock in seconds: a
bounded cache by customer id (the least recently used dropped first), each card good for
``ttl_seconds`` from the moment its read began. A read is begun with ``begin``; one begun before the
customer's last ``invalidate`` is not stored, so a card read while the customer was being changed
never outlives the change; nor is a read that took longer than ``ttl_seconds``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Read:
    """A read of a customer's card: begun at ``at`` (seconds), in order ``seq`` among begins and
    invalidations."""

    customer_id: int
    seq: int
    at: float


@dataclass
class CardCache:
    capacity: int = 1000
    ttl_seconds: float = 300.0
    _cards: OrderedDict[int, tuple[float, dict[str, Any]]] = field(default_factory=OrderedDict)
    #: customer → (order, time) of their last invalidation, oldest first
    _invalidated: OrderedDict[int, tuple[int, float]] = field(default_factory=OrderedDict)
    _seq: int = 0

    def get(self, customer_id: int, now: float) -> dict[str, Any] | None:
        """The cached card, or ``None`` when there is none or it has expired."""
        entry = self._cards.get(customer_id)
        if entry is None:
            return None
        read_at, card = entry
        if now - read_at > self.ttl_seconds:
            del self._cards[customer_id]
            return None
        self._cards.move_to_end(customer_id)
        return card

    def begin(self, customer_id: int, now: float) -> Read:
        """Before reading a customer's card: the read to hand to ``current`` and ``store``."""
        self._seq += 1
        return Read(customer_id, self._seq, now)

    def current(self, read: Read, now: float) -> bool:
        """Whether ``read`` still gives the customer's current values (and is not too old)."""
        last = self._invalidated.get(read.customer_id)
        return (last is None or last[0] < read.seq) and now - read.at <= self.ttl_seconds

    def store(self, read: Read, card: dict[str, Any] | None, now: float) -> bool:
        """Keep ``card`` (what ``read`` gave) if it is still current; ``None`` (no card) is not kept."""
        if card is None or not self.current(read, now):
            return False
        self._cards[read.customer_id] = (read.at, card)
        self._cards.move_to_end(read.customer_id)
        while len(self._cards) > self.capacity:
            self._cards.popitem(last=False)
        return True

    def invalidate(self, customer_id: int, now: float) -> None:
        """The customer changed: drop their card and refuse the reads begun before now."""
        self._seq += 1
        self._cards.pop(customer_id, None)
        self._invalidated.pop(customer_id, None)
        self._invalidated[customer_id] = (self._seq, now)
        # Invalidations only matter to reads in flight, and reads older than the ttl are refused
        # anyway: forget those older than that (they are in time order).
        while self._invalidated:
            oldest, (_, at) = next(iter(self._invalidated.items()))
            if now - at <= self.ttl_seconds:
                break
            del self._invalidated[oldest]

    def __len__(self) -> int:
        return len(self._cards)
