"""The gateway's ordering and coalescing rules (``streams.delivery``), without
a socket or an event loop: time is passed in."""

from __future__ import annotations

from streams.delivery import Fired, GapFreeDelivery, LatestValueDelivery, delivery_for

GAP = 2.0
FLUSH = 0.5  # binary-exact, so the sums below are exact


def gap_free(snapshot_seq: int | None = 10) -> GapFreeDelivery:
    delivery = GapFreeDelivery(gap_timeout=GAP)
    if snapshot_seq is not None:
        assert delivery.start(snapshot_seq, now=0.0) == []
    return delivery


def latest(snapshot_seq: int | None = 10) -> LatestValueDelivery:
    delivery = LatestValueDelivery(interval=FLUSH)
    if snapshot_seq is not None:
        assert delivery.start(snapshot_seq, now=100.0) == []
    return delivery


# --- account channels: gap-free --------------------------------------------------------------


def test_the_update_after_the_snapshot_is_sent_at_once():
    delivery = gap_free()
    assert delivery.offer(11, "u11", now=1.0) == ["u11"]
    assert delivery.offer(12, "u12", now=1.0) == ["u12"]
    assert delivery.wake_at() is None


def test_updates_the_snapshot_already_reflects_are_dropped():
    delivery = gap_free()
    assert delivery.offer(9, "u9", now=1.0) == []
    assert delivery.offer(10, "u10", now=1.0) == []
    assert delivery.offer(11, "u11", now=1.0) == ["u11"]
    assert delivery.offer(11, "u11 again", now=1.0) == []


def test_an_update_ahead_of_its_turn_waits_for_the_missing_one_then_both_go_in_order():
    delivery = gap_free()
    assert delivery.offer(12, "u12", now=1.0) == []
    assert delivery.offer(13, "u13", now=1.5) == []
    assert delivery.wake_at() == 1.0 + GAP  # counted from the first update held
    assert delivery.offer(11, "u11", now=2.0) == ["u11", "u12", "u13"]
    assert delivery.wake_at() is None
    assert delivery.offer(14, "u14", now=2.0) == ["u14"]


def test_a_filled_gap_releases_only_up_to_the_next_hole():
    delivery = gap_free()
    delivery.offer(12, "u12", now=1.0)
    delivery.offer(14, "u14", now=1.0)
    assert delivery.offer(11, "u11", now=1.2) == ["u11", "u12"]
    assert delivery.wake_at() == 1.0 + GAP  # 13 is still missing: the same deadline
    assert delivery.offer(13, "u13", now=1.4) == ["u13", "u14"]
    assert delivery.wake_at() is None


def test_a_gap_never_filled_asks_for_a_fresh_snapshot_and_sends_nothing_past_it():
    delivery = gap_free()
    delivery.offer(12, "u12", now=1.0)
    assert delivery.fire(now=1.0 + GAP) == Fired(frames=[], resnapshot=True)


def test_a_timer_firing_after_the_gap_closed_asks_for_nothing():
    delivery = gap_free()
    delivery.offer(12, "u12", now=1.0)
    delivery.offer(11, "u11", now=1.1)
    assert delivery.fire(now=1.0 + GAP) == Fired()


def test_updates_before_the_snapshot_wait_for_it_and_those_it_reflects_are_dropped():
    delivery = gap_free(snapshot_seq=None)
    assert delivery.offer(10, "u10", now=1.0) == []
    assert delivery.offer(12, "u12", now=1.0) == []
    assert delivery.offer(11, "u11", now=1.0) == []
    assert delivery.start(10, now=1.1) == ["u11", "u12"]
    assert delivery.snapshot_seq == 12


# --- market channels: the latest value per flush ----------------------------------------------


def test_the_first_update_goes_at_once_and_a_burst_within_the_interval_is_coalesced_to_the_latest():
    delivery = latest()
    assert delivery.offer(11, "q11", now=100.0) == ["q11"]
    assert delivery.offer(12, "q12", now=100.1) == []
    assert delivery.offer(13, "q13", now=100.2) == []
    assert delivery.wake_at() == 100.0 + FLUSH
    assert delivery.fire(now=100.0 + FLUSH) == Fired(frames=["q13"])
    assert delivery.wake_at() is None


def test_superseded_and_snapshot_old_values_are_skipped():
    delivery = latest()
    assert delivery.offer(9, "q9", now=100.0) == []
    assert delivery.offer(15, "q15", now=100.0) == ["q15"]
    assert delivery.offer(14, "q14", now=101.0) == []  # older than what was sent
    assert delivery.snapshot_seq == 15


def test_an_update_after_a_quiet_interval_goes_at_once():
    delivery = latest()
    assert delivery.offer(11, "q11", now=100.0) == ["q11"]
    assert delivery.offer(12, "q12", now=100.0 + FLUSH) == ["q12"]
    assert delivery.wake_at() is None


def test_while_a_flush_is_pending_even_a_late_update_waits_for_it():
    delivery = latest()
    delivery.offer(11, "q11", now=100.0)
    delivery.offer(12, "q12", now=100.1)
    # Past the interval but the flush has not run yet: one frame per flush, the latest.
    assert delivery.offer(13, "q13", now=100.75) == []
    assert delivery.fire(now=100.75) == Fired(frames=["q13"])


def test_market_updates_before_the_snapshot_send_only_the_latest_newer_one_at_once():
    delivery = latest(snapshot_seq=None)
    delivery.offer(11, "q11", now=100.0)
    delivery.offer(12, "q12", now=100.0)
    assert delivery.start(10, now=100.0) == ["q11"]
    assert delivery.fire(now=100.0 + FLUSH) == Fired(frames=["q12"])


def test_the_channel_kind_chooses_the_rule():
    assert isinstance(delivery_for(latest_value=True, flush_interval=FLUSH, gap_timeout=GAP), LatestValueDelivery)
    assert isinstance(delivery_for(latest_value=False, flush_interval=FLUSH, gap_timeout=GAP), GapFreeDelivery)
