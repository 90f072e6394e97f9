"""Redis key layout (recsys_core.keys) and the immutable catalog view (recsys_core.catalog)."""

from __future__ import annotations

from fnmatch import fnmatchcase

import numpy as np

from recsys_core.catalog import CatalogView
from recsys_core.keys import GlobalKeys, RunKeys

USER = "user-42@x"


def _run_key_values(run: RunKeys) -> list[str]:
    fixed = [
        run.catalog_ids,
        run.catalog_index,
        run.catalog_genres,
        run.catalog_titles,
        run.catalog_version,
        run.events,
        run.seen_messages,
        run.item_likes,
        run.item_dislikes,
        run.item_impressions,
        run.counters,
        run.bandit_snapshot,
        run.bandit_version,
        run.model_current,
        run.model_versions,
        run.model_counter,
        run.recs_log,
        run.pipeline_status,
    ]
    per_version = [run.model_blob(3), run.model_meta(3), run.model_user_factors(3), run.model_blob(4)]
    per_call = [run.store_replies("call-1"), run.store_replies("call-2")]
    per_user = [run.user_shown(USER), run.user_feedback(USER), run.user_history(USER), run.user_sources(USER)]
    per_user.append(run.user_ab_tally(USER))
    return fixed + per_version + per_call + per_user


def test_for_generation_base() -> None:
    assert GlobalKeys("recsys").for_generation(7).base == "recsys:g7"
    assert GlobalKeys("recsys").for_generation(7) == RunKeys("recsys:g7")


def test_global_keys() -> None:
    keys = GlobalKeys("p")
    assert keys.generation == "p:generation"
    assert keys.generation_pattern(3) == "p:g3:*"
    globals_ = [keys.generation, keys.pipeline_generation, keys.pipeline_heartbeat, keys.retrain_requests]
    assert len(set(globals_)) == len(globals_)
    # Global keys survive a cleanup: no generation pattern may match them.
    for key in globals_:
        assert not fnmatchcase(key, keys.generation_pattern(0))


def test_run_keys_are_distinct_and_inside_their_generation() -> None:
    keys = GlobalKeys("p")
    run = keys.for_generation(1)
    values = _run_key_values(run)
    assert len(set(values)) == len(values)
    for value in values:
        assert value.startswith("p:g1:")
        assert fnmatchcase(value, keys.generation_pattern(1))
        # Generation 1's pattern must not sweep generation 10's keys and vice versa.
        assert not fnmatchcase(value, keys.generation_pattern(10))


def test_generation_namespaces_differ() -> None:
    keys = GlobalKeys("p")
    one, two = _run_key_values(keys.for_generation(1)), _run_key_values(keys.for_generation(2))
    assert not set(one) & set(two)
    assert keys.for_generation(1).catalog_ids != keys.for_generation(2).catalog_ids


def test_user_keys_contain_user_id() -> None:
    run = GlobalKeys("p").for_generation(5)
    assert run.user_shown(USER) == f"p:g5:user:{USER}:shown"
    for key in (run.user_shown(USER), run.user_feedback(USER), run.user_history(USER), run.user_sources(USER)):
        assert USER in key
    assert USER in run.user_ab_tally(USER)
    assert run.user_shown("a") != run.user_shown("b")


def test_model_keys_contain_version() -> None:
    run = GlobalKeys("p").for_generation(0)
    assert run.model_blob(12) == "p:g0:model:12:blob"
    assert run.model_meta(12) == "p:g0:model:12:meta"
    # The Lua scripts build these three names from the run base and the version (READ_USER, PUBLISH_MODEL).
    assert run.model_user_factors(12) == "p:g0:model:12:users"


# --- CatalogView -------------------------------------------------------------------------------------------


def _catalog() -> CatalogView:
    return CatalogView.build(
        4, ["a", "b", "c"], {"a": ["Drama", "Comedy"], "c": ["Drama"], "not-in-catalog": ["Horror"]}
    )


def test_build_genre_matrix() -> None:
    catalog = _catalog()
    assert catalog.version == 4
    assert len(catalog) == 3
    assert catalog.item_ids == ("a", "b", "c")
    # Sorted names; genres of ids outside the catalog do not appear.
    assert catalog.genre_names == ("Comedy", "Drama")
    assert catalog.genre_matrix.dtype == bool
    np.testing.assert_array_equal(catalog.genre_matrix, [[True, True], [False, False], [False, True]])
    assert catalog.genres_of(0) == ("Comedy", "Drama")
    assert catalog.genres_of(1) == ()
    assert catalog.genres_of(2) == ("Drama",)
    assert catalog.index == {"a": 0, "b": 1, "c": 2}


def test_indices_of_keeps_order_and_drops_unknown() -> None:
    indices = _catalog().indices_of(["c", "unknown", "a"])
    assert indices.dtype == np.int64
    assert indices.tolist() == [2, 0]
    assert _catalog().indices_of([]).tolist() == []
    assert _catalog().indices_of(i for i in ["b"]).tolist() == [1]


def test_mask_of() -> None:
    np.testing.assert_array_equal(_catalog().mask_of(["b", "nope"]), [False, True, False])
    np.testing.assert_array_equal(_catalog().mask_of([]), [False, False, False])


def test_empty_catalog() -> None:
    empty = CatalogView.empty()
    assert len(empty) == 0
    assert empty.indices_of(["a"]).size == 0
    assert empty.mask_of(["a"]).shape == (0,)
    built = CatalogView.build(0, [], {})
    assert built.genre_matrix.shape == (0, 0)
