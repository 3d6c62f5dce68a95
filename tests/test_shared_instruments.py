"""The weak registry behind the shared instruments: live members only, bounded, in order."""

from __future__ import annotations

import gc

from amqadf_agent.monitoring._instruments import _Registry


class Member:
    pass


def test_members_are_the_live_objects_added_once() -> None:
    registry: _Registry[Member] = _Registry()
    a, b = Member(), Member()
    registry.add(a)
    registry.add(b)
    registry.add(a)  # again: still one
    assert registry.members() == [a, b]
    del a
    gc.collect()
    assert registry.members() == [b]


def test_dead_references_do_not_pile_up_without_collections() -> None:
    # GIVEN 10 000 short-lived members and no collection (members() never called) to prune them
    registry: _Registry[Member] = _Registry()
    keep = Member()
    registry.add(keep)
    for _ in range(10_000):
        registry.add(Member())  # dies at once
    # THEN the references held stay bounded by the live ones, and the live one is still reported
    assert len(registry._refs) < 50
    assert registry.members() == [keep]
