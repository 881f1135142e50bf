"""What a subscription sends, and when: plain state machines, no sockets.

The gateway consumer owns one ``Delivery`` per subscription. It hands it every
update the channel layer brings (``offer``), the snapshot's seq once the
snapshot is built (``start``), and sends the frames they return in order.
When ``wake_at`` names a time, the consumer calls ``fire`` then (and re-reads
``wake_at`` after every call). Time is passed in (``time.monotonic()``), so
the rules are tested without an event loop.

- Account channels (``GapFreeDelivery``): the first update after a snapshot is
  ``snapshot.seq + 1`` and there are no gaps. Two transactions of one account
  may commit in one order and publish in the other, so an update ahead of its
  turn is held up to the gap timeout for the missing one; if that never comes
  (it was lost), ``fire`` asks for a fresh snapshot instead of leaving a hole.
- Market channels (``LatestValueDelivery``): the latest value, at most one
  frame per flush interval; superseded values are skipped.

Before ``start`` every offered update is buffered (the snapshot is being built;
those it already reflects are dropped by seq once it is known).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Fired:
    """What a timer going off asks for: frames to send now, and whether the
    subscription must start over with a fresh snapshot."""

    frames: list[str] = field(default_factory=list)
    resnapshot: bool = False


class Delivery(Protocol):
    snapshot_seq: int | None

    def start(self, seq: int, now: float) -> list[str]:
        """The snapshot reflecting ``seq`` was sent: the buffered updates that follow it."""
        ...

    def offer(self, seq: int, frame: str, now: float) -> list[str]:
        """An update arrived: the frames to send now (maybe none)."""
        ...

    def wake_at(self) -> float | None:
        """When ``fire`` must be called, or None when nothing waits."""
        ...

    def fire(self, now: float) -> Fired:
        """The time ``wake_at`` named has come."""
        ...


class _Buffering:
    """Updates offered before the snapshot's seq is known wait in arrival order."""

    snapshot_seq: int | None

    def __init__(self) -> None:
        self.snapshot_seq = None
        self.buffered: list[tuple[int, str]] = []

    def start(self, seq: int, now: float) -> list[str]:
        self.snapshot_seq = seq
        buffered, self.buffered = self.buffered, []
        frames: list[str] = []
        for event_seq, frame in buffered:
            frames.extend(self.offer(event_seq, frame, now))
        return frames

    def offer(self, seq: int, frame: str, now: float) -> list[str]:
        if self.snapshot_seq is None:
            self.buffered.append((seq, frame))
            return []
        if seq <= self.snapshot_seq:
            return []  # already reflected in the snapshot (or superseded)
        return self._accept(seq, frame, now)

    def _accept(self, seq: int, frame: str, now: float) -> list[str]:
        raise NotImplementedError


class GapFreeDelivery(_Buffering):
    """Account channels: every seq once, in order, or a fresh snapshot."""

    def __init__(self, *, gap_timeout: float) -> None:
        super().__init__()
        self.gap_timeout = gap_timeout
        self.held: dict[int, str] = {}  # ahead of their turn, by seq
        self.holding_since: float | None = None

    def _accept(self, seq: int, frame: str, now: float) -> list[str]:
        assert self.snapshot_seq is not None
        if seq != self.snapshot_seq + 1:
            self.held[seq] = frame
            if self.holding_since is None:
                self.holding_since = now
            return []
        self.snapshot_seq = seq
        frames = [frame]
        while self.snapshot_seq + 1 in self.held:
            self.snapshot_seq += 1
            frames.append(self.held.pop(self.snapshot_seq))
        self.held = {s: f for s, f in self.held.items() if s > self.snapshot_seq}
        if not self.held:
            self.holding_since = None
        return frames

    def wake_at(self) -> float | None:
        if self.holding_since is None:
            return None
        return self.holding_since + self.gap_timeout

    def fire(self, now: float) -> Fired:
        # The missing update did not come in time: it was lost.
        return Fired(resnapshot=bool(self.held))


class LatestValueDelivery(_Buffering):
    """Market channels: at most one frame per ``interval``, always the latest."""

    def __init__(self, *, interval: float) -> None:
        super().__init__()
        self.interval = interval
        self.pending: str | None = None  # the latest value awaiting the next flush
        self.last_sent: float | None = None

    def _accept(self, seq: int, frame: str, now: float) -> list[str]:
        self.snapshot_seq = seq
        if self.pending is None and (self.last_sent is None or now - self.last_sent >= self.interval):
            self.last_sent = now
            return [frame]
        self.pending = frame
        return []

    def wake_at(self) -> float | None:
        if self.pending is None or self.last_sent is None:
            return None
        return self.last_sent + self.interval

    def fire(self, now: float) -> Fired:
        frame, self.pending = self.pending, None
        if frame is None:
            return Fired()
        self.last_sent = now
        return Fired(frames=[frame])


def delivery_for(*, latest_value: bool, flush_interval: float, gap_timeout: float) -> Delivery:
    if latest_value:
        return LatestValueDelivery(interval=flush_interval)
    return GapFreeDelivery(gap_timeout=gap_timeout)
