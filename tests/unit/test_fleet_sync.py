"""What a tick makes of Redis's replies (health/fleet_sync.py), without Redis: records read
against the server's clock, only changed records replacing remembered ones, and the window's
closed buckets remembered while the open ones are read again."""

from __future__ import annotations

from health.fleet_sync import EMPTY, FULL_READ_S, Record, StateView, WindowCache
from health.window import WindowCounts

NONE = WindowCounts(0, 0)


def test_a_record_is_read_against_the_servers_clock() -> None:
    rec = Record(open_until=10_000, half_open_until=70_000, trips=3, throttle_until=12_000)
    r = rec.reading("t", 4_000, NONE)
    assert (r.open_ms, r.half_open, r.throttle_ms, r.trips) == (6_000, True, 8_000, 3)
    later = rec.reading("t", 11_000, NONE)  # the open ran out: half-open, still throttled
    assert (later.open_ms, later.half_open, later.throttle_ms, later.trips) == (None, True, 1_000, 3)
    gone = rec.reading("t", 80_000, NONE)  # the marker too: nothing left, not even the trips
    assert (gone.open_ms, gone.half_open, gone.throttle_ms, gone.trips) == (None, False, None, 0)


def test_junk_records_read_as_nothing() -> None:
    for raw in (None, b"", b"x", b"1,2,3", "1,2,3,4,5", b"a,b,c,d"):
        assert Record.decode(raw) == EMPTY
    assert Record.decode(b"-5,7,999,0") == Record(0, 7, 64, 0)  # clamped, never negative
    assert Record.decode("1,2,3,4") == Record(1, 2, 3, 4)


def _reply(epoch: str, version: int, now_ms: int, full: int, *pairs: str) -> list[object]:
    return [epoch.encode(), version, now_ms, full, *(p.encode() for p in pairs)]


def test_the_view_keeps_what_did_not_change_and_replaces_what_did() -> None:
    view = StateView()
    assert view.args("new", 0.0) == (-1, "", "new")  # first tick: everything
    assert not view.absorb(_reply("e1", 5, 1000, 1, "a", "2000,0,1,0", "b", "0,0,0,0"), 0.0)
    assert view.record("a").open_until == 2000 and view.record("zz") is EMPTY
    assert view.args("new", 1.0) == (5, "e1", "new")
    assert not view.absorb(_reply("e1", 7, 1500, 0, "b", "0,0,0,9000"), 1.0)
    assert view.record("a").open_until == 2000  # unchanged: remembered
    assert view.record("b").throttle_until == 9000
    assert view.version == 7 and view.now_ms == 1500


def test_a_full_reading_drops_records_redis_no_longer_has_and_a_new_epoch_is_reported() -> None:
    view = StateView()
    view.absorb(_reply("e1", 5, 1000, 1, "a", "2000,0,1,0"), 0.0)
    assert view.absorb(_reply("e2", 0, 1100, 1), 1.0)  # Redis came back empty
    assert view.record("a") is EMPTY and view.epoch == "e2"


def test_the_whole_state_is_read_again_every_full_read_period_and_when_forgotten() -> None:
    view = StateView()
    view.absorb(_reply("e1", 5, 1000, 1), 0.0)
    assert view.args("n", FULL_READ_S - 0.1)[0] == 5
    assert view.args("n", FULL_READ_S)[0] == -1
    view.absorb(_reply("e1", 5, 1000, 1), FULL_READ_S)
    view.forget()
    assert view.args("n", FULL_READ_S + 1)[0] == -1


def test_the_window_reads_the_open_buckets_and_remembers_the_closed_ones() -> None:
    cache = WindowCache()
    epochs = [10, 11, 12, 13]
    assert cache.to_read(epochs) == epochs  # nothing seen yet
    for e in epochs:
        cache.absorb(e, {b"t|s": b"2", b"t|f": b"1", b"u|s": b"5"})
    assert cache.counts("t", epochs) == WindowCounts(8, 4)
    assert cache.to_read(epochs) == [12, 13]  # the two still being written
    moved = [11, 12, 13, 14]
    assert cache.to_read(moved) == [13, 14]  # 10 fell out of the window, 14 is new
    cache.absorb(14, {"t|f": "3", "junk": "1", "t|x": "1", "t|s": "NaN"})
    assert cache.counts("t", moved) == WindowCounts(6, 6)
    assert cache.counts("nobody", moved) == WindowCounts(0, 0)
    cache.clear()
    assert cache.to_read(moved) == moved


def test_a_target_id_with_a_bar_keeps_its_name() -> None:
    cache = WindowCache()
    cache.absorb(1, {b"a|b@p|s": b"4"})
    assert cache.counts("a|b@p", [1]) == WindowCounts(4, 0)
