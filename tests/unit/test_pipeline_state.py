"""The pipeline's in-memory log: keeping the latest events of a run (the training window) off the loop."""

from __future__ import annotations

from pipeline.state import InteractionLog, RunState, users_newest_first


def _events(n: int, start: int = 0) -> list[tuple[str, str, str, float]]:
    return [(f"u{i % 7}", f"i{i % 5}", "like" if i % 3 else "dislike", float(i)) for i in range(start, start + n)]


def _decoded(log: InteractionLog) -> list[tuple[str, str, str, float]]:
    columns = log.columns()
    return [
        (columns.user_ids[u], columns.item_ids[i], "like" if a == 1 else "dislike", float(t))
        for u, i, a, t in zip(columns.users, columns.items, columns.actions, columns.timestamps, strict=True)
    ]


def _log(events: list[tuple[str, str, str, float]]) -> InteractionLog:
    log = InteractionLog()
    for event in events:
        log.append(*event)
    return log


def test_the_latest_events_of_a_snapshot_plus_what_arrived_meanwhile_are_kept_in_order() -> None:
    events = _events(100)
    live = _log(events)
    snapshot = live.columns()  # what the trimming thread works on
    arrived = [("late-user", "i1", "like", 100.0), ("u3", "new-item", "dislike", 101.0)]
    for event in arrived:
        live.append(*event)

    trimmed = InteractionLog.latest_of(snapshot, 10)
    trimmed.extend_from(live, len(snapshot.users))
    assert _decoded(trimmed) == events[-10:] + arrived


def test_ids_that_only_dropped_events_used_are_forgotten() -> None:
    events = [("gone", "old-item", "like", 0.0), *_events(20, start=1)]
    trimmed = InteractionLog.latest_of(_log(events).columns(), 20)
    assert "gone" not in trimmed.user_codes and "old-item" not in trimmed.item_codes
    assert sorted(trimmed.user_codes.values()) == list(range(len(trimmed.user_codes)))  # dense codes
    assert _decoded(trimmed) == events[1:]


def test_a_window_larger_than_the_log_keeps_everything() -> None:
    events = _events(30)
    assert _decoded(InteractionLog.latest_of(_log(events).columns(), 1000)) == events


def test_a_log_read_newest_first_is_put_back_in_order() -> None:
    events = _events(12)
    log = _log(events[::-1])
    log.reverse()
    assert _decoded(log) == events


def test_the_window_is_trimmed_in_steps_of_a_tenth() -> None:
    state = RunState(0, max_events=100)
    for event in _events(110):
        state.apply(*event)
    assert not state.log_over_window()  # 110 = the window + a tenth
    state.apply("u", "i", "like", 1.0)
    assert state.log_over_window()
    assert not RunState(0).log_over_window()  # 0: no window


def test_users_newest_first_orders_users_by_their_latest_event() -> None:
    log = _log([("a", "i", "like", 0.0), ("b", "i", "like", 1.0), ("c", "i", "like", 2.0), ("a", "j", "like", 3.0)])
    codes, ids = log.user_column()
    assert users_newest_first(codes, ids, limit=10) == ["a", "c", "b"]
    assert users_newest_first(codes, ids, limit=2) == ["a", "c"]
    assert users_newest_first(*InteractionLog().user_column(), limit=5) == []
