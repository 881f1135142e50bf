"""The leased feed connections' state as the accounts page reads it: a
change made by the socket thread while the state is being written is
written again at the next poll, not five seconds later."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest

from brokers.feed_connections import LeasedFeedProvider
from brokers.health import feed_state_get, feed_state_set
from marketdata.feeds.registry import PushFeed

_ids = itertools.count(900_001)


@dataclass(frozen=True)
class Member:
    account_id: int


@dataclass(frozen=True)
class Plan:
    key: str
    accounts: tuple[Member, ...]


@dataclass
class Connection:
    """A connection whose socket thread connects while its state is written:
    the write saw it disconnected, the connection is connected right after."""

    plan: Plan
    lease: Any = None
    task: Any = None
    connected: bool = False
    connects_during_write: bool = True
    feed: PushFeed = field(default_factory=lambda: PushFeed("test"))

    @property
    def label(self) -> str:
        return self.plan.key

    async def run(self) -> None:
        self.task = asyncio.current_task()
        await asyncio.sleep(3600)

    def set_plan(self, plan: Plan) -> None:
        self.plan = plan

    def signature(self) -> tuple[object, ...]:
        return (self.connected,)

    def state_write(self) -> None:
        connected = self.connected
        if self.connects_during_write:
            self.connected, self.connects_during_write = True, False
        for member in self.plan.accounts:
            feed_state_set(member.account_id, connected=connected)


class Provider(LeasedFeedProvider):
    name = source = "test-feed"
    thread_name = "test-feed"

    def __init__(self, account_id: int) -> None:
        super().__init__()
        self.lease_prefix = f"test-feed:{account_id}:"
        self.planned = [Plan(key="venue", accounts=(Member(account_id),))]

    def reload_interval(self) -> float:
        return 3600.0

    def plan(self) -> list[Any]:
        return self.planned

    def connection_for(self, plan: Any, executor: Any) -> Any:
        return Connection(plan)


@pytest.fixture
def provider():
    account_id = next(_ids)
    provider = Provider(account_id)
    yield provider, account_id
    provider.stop()


def test_a_state_change_during_the_write_is_written_at_the_next_poll(provider):
    feeds, account_id = provider
    feeds.feeds()  # plans, opens the connection, writes its first state (the change happens during it)
    connection = feeds.connections["venue"]
    assert connection.connected is True
    assert feed_state_get(account_id) == {**feed_state_get(account_id), "connected": False}
    feeds.feeds()  # well within the five-second refresh
    assert feed_state_get(account_id)["connected"] is True


def test_an_unchanged_state_is_not_written_again_before_the_refresh(provider):
    feeds, account_id = provider
    feeds.feeds()
    feeds.feeds()
    assert feed_state_get(account_id)["connected"] is True
    feed_state_set(account_id, connected=False)  # stands for another writer; ours has nothing new to say
    feeds.feeds()
    assert feed_state_get(account_id)["connected"] is False
